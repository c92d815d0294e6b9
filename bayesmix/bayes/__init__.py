"""Fully Bayesian fits: the joint (brms-style) program sampled with NUTS -- by default
the generic stan/glmm_joint.stan, compiled once for every formula (bayesmix.bayes.generic) --
its posterior under lme4's names, ArviZ export and sampler diagnostics."""
from __future__ import annotations

from typing import Iterable

from ..errors import BayesmixError
from .diagnostics import Diagnostics, SamplingWarning, diagnose, warn_diagnostics
from .fit import PosteriorFit, PosteriorSummary
from .generic import GenericPosteriorFit, fit_generic
from .laplace import LaplaceFit, fit_laplace
from .sampling import fit_nuts, sample_posterior
from .idata import group_layouts, named_draws, response_name, to_inference_data

_JOINT = ("nuts", "joint")


def generic_programs() -> dict[str, str]:
    """Every generic (compiled-once) Stan program, name -> self-contained code, exactly as
    the fits compile them (`bayesmix.engine.compile_model(code, name)`): the ML programs
    ``lmer`` and ``glmer``, the gaussian marginal posterior ``lmm_marginal`` and the joint
    posterior of every family ``glmm_joint`` and the distributional models' ``dist_ml``
    and ``dist_nuts``. Precompile these and no fit compiles."""
    from ..glmerfit import glmer_code
    from ..ml import lmer_code
    from .generic import GENERIC_NAME, generic_code
    from .marginal import marginal_code
    from ..dist.ml import dist_ml_code
    from ..dist.nuts import dist_nuts_code
    return {"lmer": lmer_code(), "glmer": glmer_code(), "lmm_marginal": marginal_code(),
            GENERIC_NAME: generic_code(), "dist_ml": dist_ml_code(),
            "dist_nuts": dist_nuts_code()}


def stan_code_for(design, priors: Iterable = (), method: str = "nuts") -> str:
    """The Stan program a Bayesian method shows: "nuts" / "joint" the readable per-formula
    joint program (annotated with the formula and names; sampling runs the generic
    stan/glmm_joint.stan with the same log density, `fit.stan_code` is what ran),
    "generic" the generic joint program annotated for this design, "marginal" the
    marginal program."""
    if method.lower() in _JOINT:
        from ..stancode import joint_stancode
        return joint_stancode(design, tuple(priors))
    if method.lower() == "generic":
        from .generic import generic_program
        return generic_program(design, tuple(priors)).annotated
    if method.lower() == "marginal":
        from .marginal import marginal_stancode, marginal_unsupported
        _check_marginal(marginal_unsupported(design, tuple(priors)))
        return marginal_stancode(design)
    raise BayesmixError(f"no Bayesian program for method {method!r} here; "
                        f"choose one of {', '.join(_JOINT)}, generic, marginal")


def _check_marginal(why) -> None:
    if why is not None and not why.slower_only:
        raise BayesmixError(f"no marginal program for this model: {why}")


def stan_data_for(design, priors: Iterable = (), method: str = "nuts",
                  prior_only: bool = False) -> dict:
    """The data of the program `stan_code_for` returns."""
    if method.lower() in _JOINT:
        from ..stancode import joint_stan_data
        return joint_stan_data(design, tuple(priors), prior_only=prior_only)
    if method.lower() == "generic":
        from .generic import generic_stan_data
        return generic_stan_data(design, tuple(priors), prior_only=prior_only)
    if method.lower() == "marginal":
        from .marginal import marginal_stan_data, marginal_unsupported
        _check_marginal(marginal_unsupported(design, tuple(priors)))
        return marginal_stan_data(design, tuple(priors), prior_only=prior_only)
    raise BayesmixError(f"no Bayesian program for method {method!r} here; "
                        f"choose one of {', '.join(_JOINT)}, generic, marginal")


__all__ = ["Diagnostics", "GenericPosteriorFit", "LaplaceFit", "PosteriorFit",
           "PosteriorSummary", "SamplingWarning", "diagnose", "fit_generic", "fit_laplace",
           "fit_nuts", "generic_programs", "group_layouts", "named_draws", "response_name",
           "sample_posterior",
           "stan_code_for", "stan_data_for", "to_inference_data", "warn_diagnostics"]
