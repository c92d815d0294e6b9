"""lm and glm without random effects, with R's numbers.

Gaussian identity-link models are weighted least squares (R's lm); every
other family is fitted by iteratively reweighted least squares exactly as
R's glm.fit does it (same starting values, links with R's numerical guards,
the same convergence rule |dev - dev_old| / (|dev| + 0.1) < 1e-8 and step
halving), so coefficients, standard errors, deviances and AIC agree with R
to rounding. The result is a `bayesmix.results.glm.GlmFit`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats
from scipy.linalg import solve_triangular

from .design import Design
from .errors import BayesmixError, FamilyError

_EPS = np.finfo(float).eps
_THRESH = 30.0
_INVEPS = 1.0 / _EPS


# ---------------------------------------------------------------- links


@dataclass(frozen=True)
class Link:
    name: str
    linkfun: Callable[[np.ndarray], np.ndarray]
    linkinv: Callable[[np.ndarray], np.ndarray]
    mu_eta: Callable[[np.ndarray], np.ndarray]
    valideta: Callable[[np.ndarray], bool] = lambda eta: True


def _logit_inv(eta):
    tmp = np.where(eta < -_THRESH, _EPS, np.where(eta > _THRESH, _INVEPS, np.exp(np.clip(eta, -_THRESH, _THRESH))))
    return tmp / (1.0 + tmp)


def _logit_mu_eta(eta):
    e = np.exp(np.clip(eta, -_THRESH, _THRESH))
    return np.where((eta > _THRESH) | (eta < -_THRESH), _EPS, e / (1.0 + e) ** 2)


_PROBIT_THRESH = -stats.norm.ppf(_EPS)

LINKS: dict[str, Link] = {
    "identity": Link("identity", lambda mu: mu, lambda eta: eta, lambda eta: np.ones_like(eta)),
    "log": Link("log", np.log, lambda eta: np.maximum(np.exp(eta), _EPS),
                lambda eta: np.maximum(np.exp(eta), _EPS)),
    "inverse": Link("inverse", lambda mu: 1.0 / mu, lambda eta: 1.0 / eta,
                    lambda eta: -1.0 / eta ** 2,
                    lambda eta: bool(np.all(np.isfinite(eta)) and np.all(eta != 0))),
    "sqrt": Link("sqrt", np.sqrt, lambda eta: eta ** 2, lambda eta: 2.0 * eta,
                 lambda eta: bool(np.all(np.isfinite(eta)) and np.all(eta > 0))),
    "logit": Link("logit", lambda mu: np.log(mu / (1.0 - mu)), _logit_inv, _logit_mu_eta),
    "probit": Link("probit", stats.norm.ppf,
                   lambda eta: stats.norm.cdf(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH)),
                   lambda eta: np.maximum(stats.norm.pdf(eta), _EPS)),
    "cloglog": Link("cloglog", lambda mu: np.log(-np.log1p(-mu)),
                    lambda eta: np.clip(-np.expm1(-np.exp(eta)), _EPS, 1 - _EPS),
                    lambda eta: np.maximum(np.exp(np.minimum(eta, 700.0))
                                           * np.exp(-np.exp(np.minimum(eta, 700.0))), _EPS)),
}


# ---------------------------------------------------------------- families


def _ylogy(y, mu):
    """y * log(y / mu), 0 where y == 0 (R's y_log_y)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)


def _dev_gaussian(y, mu, wt):
    return wt * (y - mu) ** 2


def _dev_binomial(y, mu, wt):
    return 2.0 * wt * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu))


def _dev_poisson(y, mu, wt):
    return 2.0 * wt * (_ylogy(y, mu) - (y - mu))


def _dev_gamma(y, mu, wt):
    with np.errstate(divide="ignore"):
        return -2.0 * wt * (np.log(np.where(y == 0, 1.0, y / mu)) - (y - mu) / mu)


def _aic_gaussian(y, n, mu, wt, dev):
    # R's gaussian()$aic: all observations count, zero weights included
    nobs = len(y)
    with np.errstate(divide="ignore"):
        return nobs * (np.log(2 * np.pi * dev / nobs) + 1) + 2 - np.sum(np.log(wt))


def _aic_binomial(y, n, mu, wt, dev):
    m = n if np.any(n > 1) else wt
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(m > 0, wt / np.where(m > 0, m, 1.0), 0.0)
        ll = stats.binom.logpmf(np.round(m * y), np.round(m), mu)
    return -2.0 * np.sum(np.where(scale > 0, scale * ll, 0.0))


def _aic_poisson(y, n, mu, wt, dev):
    ll = stats.poisson.logpmf(y, mu)
    return -2.0 * np.sum(np.where(wt > 0, ll * wt, 0.0))


def _aic_gamma(y, n, mu, wt, dev):
    disp = dev / np.sum(wt)
    ll = stats.gamma.logpdf(y, 1.0 / disp, scale=mu * disp)
    return -2.0 * np.sum(np.where(wt > 0, ll * wt, 0.0)) + 2.0


@dataclass(frozen=True)
class GlmFamily:
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
    lk = LINKS[link]
    if name == "gaussian":
        return GlmFamily("gaussian", lk, np.ones_like, _dev_gaussian, _aic_gaussian,
                         lambda mu: True, False, True)
    if name in ("binomial", "bernoulli"):
        return GlmFamily("binomial", lk, lambda mu: mu * (1 - mu), _dev_binomial, _aic_binomial,
                         lambda mu: bool(np.all(np.isfinite(mu)) and np.all((mu > 0) & (mu < 1))),
                         True, False)
    if name == "poisson":
        return GlmFamily("poisson", lk, lambda mu: mu, _dev_poisson, _aic_poisson,
                         lambda mu: bool(np.all(np.isfinite(mu)) and np.all(mu > 0)), True, False)
    if name == "Gamma":
        return GlmFamily("Gamma", lk, lambda mu: mu ** 2, _dev_gamma, _aic_gamma,
                         lambda mu: bool(np.all(np.isfinite(mu)) and np.all(mu > 0)), False, True)
    raise FamilyError(f"family {name!r} is not supported without random effects; "
                      "choose gaussian, binomial, bernoulli, poisson or Gamma")


# ---------------------------------------------------------------- IRLS


@dataclass(frozen=True, eq=False)
class IrlsResult:
    beta: np.ndarray
    eta: np.ndarray  # linear predictor including the offset
    mu: np.ndarray
    deviance: float
    R: np.ndarray  # R factor of the last weighted least-squares QR
    working_weights: np.ndarray  # w^2 of the last iteration (0 where unused)
    working_residuals: np.ndarray  # (y - mu) / mu.eta(eta)
    iterations: int
    converged: bool
    boundary: bool


def _wls(X, z, w):
    """Weighted least squares by Householder QR: (beta, R)."""
    Q, R = np.linalg.qr(X * w[:, None], mode="reduced")
    beta = solve_triangular(R, Q.T @ (z * w), lower=False)
    return beta, R


def irls(X, y, weights, offset, fam: GlmFamily, mustart, epsilon=1e-8, maxit=25) -> IrlsResult:
    """R's glm.fit (Fisher scoring with step halving) from mustart."""
    link = fam.link
    n, p = X.shape
    eta = link.linkfun(mustart)
    mu = link.linkinv(eta)
    if not (link.valideta(eta) and fam.validmu(mu)):
        raise BayesmixError("cannot find valid starting values for the glm fit")
    devold = float(np.sum(fam.dev_resids(y, mu, weights)))
    coefold = None
    beta = np.zeros(p)
    R = np.eye(p)
    wfinal = np.zeros(n)
    conv = boundary = False
    it = 0
    for it in range(1, maxit + 1):
        mu_eta = link.mu_eta(eta)
        good = (weights > 0) & (mu_eta != 0)
        if not np.any(good):
            raise BayesmixError("no observations informative at iteration %d of the glm fit" % it)
        var = fam.variance(mu)[good]
        if np.any(~np.isfinite(var)) or np.any(var == 0):
            raise BayesmixError("zero or non-finite variance in the glm fit")
        z = (eta - offset)[good] + (y - mu)[good] / mu_eta[good]
        w = np.sqrt(weights[good] * mu_eta[good] ** 2 / var)
        start, R = _wls(X[good], z, w)
        if not np.all(np.isfinite(start)):
            raise BayesmixError(f"non-finite coefficients at iteration {it} of the glm fit")
        wfinal = np.zeros(n)
        wfinal[good] = w ** 2
        eta = X @ start + offset
        mu = link.linkinv(eta)
        dev = float(np.sum(fam.dev_resids(y, mu, weights)))
        boundary = False
        if not np.isfinite(dev):
            if coefold is None:
                raise BayesmixError("no valid set of coefficients has been found: "
                                    "please supply starting values")
            for _ in range(maxit):
                start = (start + coefold) / 2
                eta = X @ start + offset
                mu = link.linkinv(eta)
                dev = float(np.sum(fam.dev_resids(y, mu, weights)))
                if np.isfinite(dev):
                    break
            else:
                raise BayesmixError("inner loop 1; cannot correct step size")
            boundary = True
        if not (link.valideta(eta) and fam.validmu(mu)):
            if coefold is None:
                raise BayesmixError("no valid set of coefficients has been found: "
                                    "please supply starting values")
            for _ in range(maxit):
                start = (start + coefold) / 2
                eta = X @ start + offset
                mu = link.linkinv(eta)
                if link.valideta(eta) and fam.validmu(mu):
                    break
            else:
                raise BayesmixError("inner loop 2; cannot correct step size")
            boundary = True
            dev = float(np.sum(fam.dev_resids(y, mu, weights)))
        beta = start
        if abs(dev - devold) / (abs(dev) + 0.1) < epsilon:
            conv = True
            break
        devold = dev
        coefold = start
    if not conv:
        warnings.warn("glm.fit: algorithm did not converge", stacklevel=3)
    if fam.name == "binomial" and np.any((mu > 1 - 10 * _EPS) | (mu < 10 * _EPS)):
        warnings.warn("glm.fit: fitted probabilities numerically 0 or 1 occurred", stacklevel=3)
    if fam.name == "poisson" and np.any(mu < 10 * _EPS):
        warnings.warn("glm.fit: fitted rates numerically 0 occurred", stacklevel=3)
    resid = (y - mu) / link.mu_eta(eta)
    return IrlsResult(beta, eta, mu, dev, R, wfinal, resid, it, conv, boundary)


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
    if fam.name == "binomial":
        if design.formula.cbind is not None:
            n = np.asarray(design.trials, float)
            with np.errstate(invalid="ignore", divide="ignore"):
                y = np.where(n > 0, y / np.where(n > 0, n, 1.0), 0.0)
            w = w * n
            mustart = (n * y + 0.5) / (n + 1)
        else:
            y = np.where(w == 0, 0.0, y)
            mustart = (w * y + 0.5) / (w + 1)
    elif fam.name == "poisson":
        mustart = y + 0.1
    elif fam.name == "Gamma":
        mustart = y.copy()
    else:
        link = fam.link.name
        if (link == "inverse" and np.any(y == 0)) or (link == "log" and np.any(y <= 0)):
            raise BayesmixError("cannot find valid starting values for a gaussian glm with "
                                f"{link} link: the response has values <= 0")
        mustart = y.copy()
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
    res = irls(X, gd.y, gd.prior_weights, gd.offset, fam, gd.mustart, epsilon, maxit)
    intercept = bool(design.fixed_spec.intercept)

    # null deviance: intercept-only (plus offset) model, or the offset alone
    w = gd.prior_weights
    if intercept:
        if np.any(gd.offset != 0):
            null = irls(np.ones((design.n, 1)), gd.y, w, gd.offset, fam, res.mu, epsilon, maxit)
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

