"""The front door: one model object, fitted by maximum likelihood or by NUTS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .bayes import stan_code_for, stan_data_for
from .bayes.laplace import fit_laplace
from .bayes.sampling import sample_posterior
from .design import Design, build_design
from .design.dist import DistDesign, build_dist_design, needs_dist_design
from .errors import BayesmixError
from .families import get_family
from .formula import DistributionalFormula
from .glmerfit import fit_glmer, glmer_code, glmer_data
from .glmfit import fit_glm
from .ml import fit_lmer, lmer_code, lmer_data
from .priors import prior_summary

ML_METHODS = ("reml", "ml")
BAYES_METHODS = ("nuts", "joint", "generic", "marginal")
CLOSED_FORM = ("models without random effects are fitted in closed form (IRLS), not by a "
               "Stan program; use method='nuts'")


@dataclass(frozen=True)
class Route:
    """Where one method of one model goes: the fitting function (ML routes only; Bayesian
    fits go through sample()/laplace()), and the Stan program and data it runs (None for
    the closed-form lm/glm)."""
    name: str                                  # "glm", "lmer", "glmer" or "bayes"
    fit: Callable[..., Any] | None
    code: Callable[[], str] | None
    data: Callable[[], dict] | None


class Model:
    """A multilevel model: an lme4 formula, a DataFrame and a family.

    The design (X, grouping indices, validation) is built at construction,
    before anything compiles, so bad input fails fast with a clear error."""

    def __init__(self, formula: str | DistributionalFormula, data: pd.DataFrame,
                 family: str = "gaussian", link: str | None = None,
                 weights: str | np.ndarray | None = None, priors: Sequence[Any] = (),
                 engine: str = "auto", transforms: dict[str, Any] | None = None):
        # transforms: your own functions the formula may call, {"logit": f}; a
        # formula can call nothing else beyond the documented set (docs/formulas.md).
        # formula: lme4's formula, or bf(...) with formulas for distributional parameters
        self.family = get_family(family, link)
        self.design: Design | DistDesign
        if needs_dist_design(formula, self.family):
            self.design = build_dist_design(formula, data, self.family, transforms=transforms,
                                            weights=weights)
        else:
            if isinstance(formula, DistributionalFormula):
                formula = formula.formula  # bf() without parameter formulas
            self.design = build_design(formula, data, family=self.family, weights=weights,
                                       transforms=transforms)
        self.priors = tuple(priors)
        self.engine = engine

    @property
    def formula(self) -> str:
        if self.is_distributional:
            return str(self.design.formula)
        return self.design.formula.text

    @property
    def is_distributional(self) -> bool:
        """True for the families beyond lme4 and bf() parameter formulas (bayesmix.dist)."""
        return isinstance(self.design, DistDesign)

    @property
    def is_lmm(self) -> bool:
        return not self.is_distributional and self.family.supports("lmer")  # gaussian identity

    def _ml_method(self, method: str | None) -> str:
        if method is None:
            return "reml" if self.is_lmm else "ml"
        method = method.lower()
        if method not in ML_METHODS:
            raise BayesmixError(f"unknown method {method!r} for fit(); choose one of "
                                f"{', '.join(ML_METHODS)} (use sample() for NUTS)")
        if method == "reml" and self.is_distributional:
            raise BayesmixError("REML is not defined for distributional models; use "
                                "method='ml' (the Laplace approximation, as glmmTMB)")
        if method == "reml" and not self.is_lmm:
            raise BayesmixError("REML is defined for gaussian identity-link models only; "
                                "use method='ml'")
        return method

    # -- the one dispatch ------------------------------------------------------
    def route(self, method: str | None = None) -> Route:
        """The method modules a method name leads to for this model (fit, stan_code and
        stan_data all ask here). None: REML for gaussian mixed models, else ML."""
        if self.is_distributional:
            return self._dist_route(method)
        if method is not None and method.lower() in BAYES_METHODS:
            key = method.lower()
            return Route("bayes", None, lambda: stan_code_for(self.design, self.priors, key),
                         lambda: stan_data_for(self.design, self.priors, key))
        if method is not None and method.lower() not in ML_METHODS:
            raise BayesmixError(f"unknown method {method!r}; choose one of "
                                f"{', '.join(ML_METHODS + BAYES_METHODS)}")
        reml = self._ml_method(method) == "reml"
        d = self.design
        if not d.terms:
            return Route("glm", lambda **kw: fit_glm(d, **kw), None, None)
        if self.is_lmm:
            return Route("lmer", lambda **kw: fit_lmer(d, reml=reml, **kw), lmer_code,
                         lambda: lmer_data(d, reml=reml)[0])
        return Route("glmer", lambda **kw: fit_glmer(d, **kw), lambda: glmer_code(d),
                     lambda: glmer_data(d))

    def _dist_route(self, method: str | None) -> Route:
        """Distributional models: Laplace ML by stan/dist_ml.stan, NUTS by stan/dist_nuts.stan."""
        from .dist import ml, nuts
        d = self.design
        key = (method or "ml").lower()
        if key in ("nuts", "joint", "generic"):
            return Route("dist_nuts", None, nuts.dist_nuts_code,
                         lambda: nuts.dist_nuts_data(d, self.priors))
        if key == "marginal":
            raise BayesmixError("the marginal program fits gaussian identity-link models "
                                "without distributional formulas; use method='nuts'")
        if key not in ML_METHODS:
            raise BayesmixError(f"unknown method {method!r}; choose one of "
                                f"{', '.join(ML_METHODS + BAYES_METHODS)}")
        self._ml_method(key)
        return Route("dist_ml", lambda **kw: ml.fit_dist_ml(d, **kw), ml.dist_ml_code,
                     lambda: ml.dist_ml_data(d))

    # -- maximum likelihood --------------------------------------------------
    def fit(self, method: str | None = None, **kwargs: Any):
        """Maximum likelihood (lme4's lmer/glmer; lm/glm without random terms).

        method: "reml" (default for gaussian mixed models) or "ml"."""
        self._ml_method(method)  # fit() takes ML methods only (sample() is NUTS)
        route = self.route(method)
        if route.name != "glm":
            kwargs.setdefault("engine", self.engine)  # fit(engine=...) overrides the model's
        return route.fit(**kwargs)

    # -- Bayesian ------------------------------------------------------------
    def sample(self, program: str = "auto", prior_draws: bool = False, **kwargs: Any):
        """Fully Bayesian fit with Stan's NUTS; see bayesmix.bayes.fit_nuts.

        program: "auto" (default) samples gaussian identity-link mixed models with the
        marginal program (random effects integrated out, then drawn exactly; much faster,
        same priors, same result and InferenceData) and every other model with the joint
        brms-style parameterisation, run by the generic joint program (compiled once for
        every formula, family and prior). "joint" forces the joint parameterisation,
        "generic" its generic program, "generated" the readable per-formula program
        (`stan_code("nuts")`; compiles once per formula structure), "marginal" the
        marginal one. "auto" falls back to the joint program (with an info log message)
        for prior weights, centered= or very many crossed levels; see bayesmix.bayes.
        Progress: a bar where a person watches; show_progress=True/False overrides.
        prior_draws=True: `to_arviz()` also holds a ``prior`` group, exact draws from the
        declared priors (drawn in numpy when asked for; docs/results.md)."""
        kwargs.setdefault("engine", self.engine)
        if self.is_distributional:
            if program.lower() not in ("auto", "joint", "generic", "nuts"):
                raise BayesmixError(f"program={program!r} is not available for "
                                    "distributional models: they run stan/dist_nuts.stan "
                                    "(program='auto')")
            from .dist.nuts import fit_dist_nuts
            fit = fit_dist_nuts(self.design, self.priors, **kwargs)
            fit.include_prior = bool(prior_draws)
            return fit
        fit = sample_posterior(self.design, self.priors, program=program, **kwargs)
        fit.include_prior = bool(prior_draws)
        return fit

    def laplace(self, draws: int = 1000, seed: int | None = None, **kwargs: Any):
        """The Laplace approximation of the joint posterior (same priors as sample()):
        Stan's optimize with jacobian=True finds the posterior mode on the unconstrained
        scale, then Stan's laplace method draws from the normal there. Runs the generic
        joint program (no per-formula compile). Returns a `bayesmix.bayes.LaplaceFit`,
        with the accessors of a sample() fit; see bayesmix.bayes.laplace.fit_laplace."""
        if self.is_distributional:
            raise BayesmixError("laplace() is not available for distributional models yet; "
                                "use fit() (maximum likelihood) or sample() (NUTS)")
        kwargs.setdefault("engine", self.engine)
        return fit_laplace(self.design, self.priors, draws=draws, seed=seed, **kwargs)

    def prior_summary(self) -> pd.DataFrame:
        if self.is_distributional:
            from .dist.nuts import dist_prior_summary
            return dist_prior_summary(self.design, self.priors)
        return prior_summary(self.design, self.priors)

    # -- the generated program -------------------------------------------------
    def stan_code(self, method: str = "nuts") -> str:
        """The Stan program a method runs (self-contained, includes inlined)."""
        route = self.route(method)
        if route.code is None:
            raise BayesmixError(CLOSED_FORM)
        return route.code()

    def stan_data(self, method: str = "nuts") -> dict:
        """The data of the program `stan_code(method)` returns."""
        route = self.route(method)
        if route.data is None:
            raise BayesmixError(CLOSED_FORM)
        return route.data()

    def __repr__(self) -> str:
        return f"Model({self.formula!r}, family={self.family})\n" + str(self.design)

    def _repr_html_(self) -> str:
        import html
        return f"<pre style='font-size: 0.85em'>{html.escape(repr(self))}</pre>"


def lmer(formula: str, data: pd.DataFrame, REML: bool = True, **kwargs: Any):
    """lme4's lmer: a gaussian mixed model fitted by REML (default) or ML."""
    return Model(formula, data, **kwargs).fit(method="reml" if REML else "ml")


def glmer(formula: str, data: pd.DataFrame, family: str = "binomial",
          link: str | None = None, **kwargs: Any):
    """lme4's glmer (nAGQ = 1): Laplace maximum likelihood."""
    return Model(formula, data, family=family, link=link, **kwargs).fit(method="ml")


def lm(formula: str, data: pd.DataFrame, **kwargs: Any):
    """R's lm: ordinary least squares through the same front door."""
    model = Model(formula, data, family="gaussian", **kwargs)
    return model.fit(method="ml", **({} if model.design.terms else {"fitter": "lm"}))


def glm(formula: str, data: pd.DataFrame, family: str = "gaussian",
        link: str | None = None, **kwargs: Any):
    """R's glm: maximum likelihood by IRLS."""
    model = Model(formula, data, family=family, link=link, **kwargs)
    return model.fit(method="ml", **({} if model.design.terms else {"fitter": "glm"}))
