"""lm and glm without random effects, with R's numbers.

Gaussian identity-link models are weighted least squares (R's lm); every
other family is fitted by iteratively reweighted least squares exactly as
R's glm.fit does it (same starting values, links with R's numerical guards,
the same convergence rule |dev - dev_old| / (|dev| + 0.1) < 1e-8 and step
halving), so coefficients, standard errors, deviances and AIC agree with R
to rounding. The result is a `bayesmix.results.glm.GlmFit`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .design import Design
from .errors import BayesmixError, FamilyError
from .families import FAMILIES, LINKS, Family, Link, families_for
from .irls import irls
from .registry import register_restorer



@dataclass(frozen=True)
class GlmFamily:
    """glm's view of a `bayesmix.families.Family`: R's family()$... functions with the
    link as a `bayesmix.families.Link` (the maths live in families.py)."""
    name: str  # R's family name ("binomial" also for bernoulli)
    link: Link
    variance: Callable[[np.ndarray], np.ndarray]
    dev_resids: Callable
    aic: Callable
    validmu: Callable[[np.ndarray], bool]
    fixed_dispersion: bool  # binomial, poisson: dispersion 1, z tests
    extra_param: bool  # logLik counts the dispersion (gaussian, Gamma)


def glm_family(name: str, link: str) -> GlmFamily:
    if link not in LINKS:
        raise FamilyError(f"link {link!r} is not supported for glm fits")
    fam = Family(name, link) if name in FAMILIES else None
    if fam is None or not fam.supports("glm"):
        raise FamilyError(f"family {name!r} is not supported without random effects; "
                          f"choose {', '.join(families_for('glm'))}")
    spec = fam.spec
    return GlmFamily(spec.r_name, LINKS[link], lambda mu: spec.variance(mu), spec.dev_resids,
                     spec.aic, spec.validmu, spec.fixed_dispersion, not spec.fixed_dispersion)


# ---------------------------------------------------------------- entry point


@dataclass(frozen=True, eq=False)
class GlmData:
    """The response on R's glm scale: y a proportion for binomial, prior
    weights multiplied by the trials (as binomial()$initialize does)."""
    y: np.ndarray
    n: np.ndarray  # binomial trials (1 otherwise)
    prior_weights: np.ndarray
    offset: np.ndarray
    mustart: np.ndarray


def glm_data(design: Design, fam: GlmFamily) -> GlmData:
    nobs = design.n
    w = np.ones(nobs) if design.weights is None else np.asarray(design.weights, float)
    offset = np.zeros(nobs) if design.offset is None else np.asarray(design.offset, float)
    y = np.asarray(design.y, float)
    n = np.ones(nobs)
    start_n = w  # binomial()$initialize's n: the prior weights of a 0/1 response ...
    if fam.name == "binomial":
        if design.formula.cbind is not None:
            n = np.asarray(design.trials, float)
            with np.errstate(invalid="ignore", divide="ignore"):
                y = np.where(n > 0, y / np.where(n > 0, n, 1.0), 0.0)
            w = w * n
            start_n = n  # ... the trials of a cbind() one
        else:
            y = np.where(w == 0, 0.0, y)
    elif fam.name == "gaussian":
        link = fam.link.name
        if (link == "inverse" and np.any(y == 0)) or (link == "log" and np.any(y <= 0)):
            raise BayesmixError("cannot find valid starting values for a gaussian glm with "
                                f"{link} link: the response has values <= 0")
    mustart = design.family.spec.mustart(y, start_n)
    return GlmData(y, n, w, offset, mustart)


def fit_glm(design: Design, fitter: str | None = None, epsilon: float = 1e-8,
            maxit: int = 25, data_name: str | None = None, **kwargs):
    """R's lm (gaussian identity) or glm for a design without random effects.

    fitter: "lm" or "glm" -- how the result is labelled, printed and tested
    (summary.lm vs summary.glm, t- vs z-based confint, anova columns);
    default "lm" for gaussian identity-link models, else "glm".
    data_name: shown in the printed call (data = ...)."""
    from .results.glm import GlmFit

    for ignored in ("engine", "seed", "output_dir"):  # closed form: nothing to run
        kwargs.pop(ignored, None)
    if kwargs:
        raise BayesmixError(f"unexpected argument(s) for a model without random effects: "
                            f"{', '.join(kwargs)}")
    if design.terms:
        raise BayesmixError("fit_glm is for models without random-effects terms")
    fam = glm_family(design.family.name, design.family.link)
    is_lm = fam.name == "gaussian" and fam.link.name == "identity"
    if fitter is None:
        fitter = "lm" if is_lm else "glm"
    if fitter not in ("lm", "glm"):
        raise BayesmixError(f"fitter must be 'lm' or 'glm', not {fitter!r}")
    if fitter == "lm" and not is_lm:
        raise BayesmixError("lm is gaussian with identity link; use glm for "
                            f"{design.family}")
    gd = glm_data(design, fam)
    X = design.X
    if X.shape[1] == 0:
        raise BayesmixError("models without fixed-effect columns are not supported")
    res = irls(X, gd.y, gd.prior_weights, gd.offset, design.family, gd.mustart, epsilon, maxit)
    intercept = bool(design.fixed_spec.intercept)

    # null deviance: intercept-only (plus offset) model, or the offset alone
    w = gd.prior_weights
    if intercept:
        if np.any(gd.offset != 0):
            null = irls(np.ones((design.n, 1)), gd.y, w, gd.offset, design.family, res.mu, epsilon,
                        maxit)
            null_dev = null.deviance
        else:
            wtdmu = np.sum(w * gd.y) / np.sum(w)
            null_dev = float(np.sum(fam.dev_resids(gd.y, np.full(design.n, wtdmu), w)))
    else:
        null_dev = float(np.sum(fam.dev_resids(gd.y, fam.link.linkinv(gd.offset), w)))
    n_ok = int(np.sum(w != 0))
    rank = X.shape[1]
    aic = float(fam.aic(gd.y, gd.n, res.mu, w, res.deviance) + 2 * rank)
    return GlmFit(design=design, family=fam, fitter=fitter, data=gd, irls=res,
                  null_deviance_=null_dev, df_null=n_ok - int(intercept),
                  df_residual_=n_ok - rank, n_ok=n_ok, aic_=aic, intercept=intercept,
                  data_name=data_name)


def _restore(design: Design, meta: dict, run=None, stan_data=None, **_):
    return fit_glm(design, **meta)  # closed form: a bundle holds no Stan run to read back


register_restorer("lm", _restore)
register_restorer("glm", _restore)
