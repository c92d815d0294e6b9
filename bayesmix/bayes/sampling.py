"""The NUTS method's entry points: which program samples a design (marginal, generic joint
or the per-formula generated joint program) and how a posterior bundle is restored.

The program modules (fit.py: the shared result class and sampler step; generic.py,
marginal.py) do not import this one, so the choice is made in one place above them."""
from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

from ..priors import Prior
from ..registry import register_restorer
from ..stancode import joint_inits, joint_program, joint_stan_data
from .fit import PosteriorFit, check_sampler_args, sample_program
from .generic import FORCED, GenericPosteriorFit, choose_joint_program, fit_generic
from .marginal import (FAMILY_LINK, NO_RANDOM, MarginalPosteriorFit, choose_program,
                       fit_marginal)

logger = logging.getLogger("bayesmix")


def fit_nuts(design, priors: Iterable[Prior] = (), *, chains: int = 4,
             iter_warmup: int = 1000, iter_sampling: int = 1000, seed: int | None = None,
             adapt_delta: float = 0.8, max_treedepth: int = 10, metric: str = "diag_e",
             thin: int = 1, prior_only: bool = False, show_progress: bool | None = None,
             engine: str = "auto", inits: dict | None = None, save_log_lik: bool = True,
             save_y_rep: bool = True, centered: bool | str | Sequence[str] = False,
             output_dir: str | None = None, diagnostics: bool = True,
             program: str = "joint") -> "PosteriorFit":
    """Sample the joint posterior of a design with Stan's NUTS.

    program: "joint" (default; also "auto") runs the generic joint program
    (stan/glmm_joint.stan, compiled once for every formula) unless it cannot
    express the model, then the per-formula generated program (the fit's
    `fallback` says why, a `bayesmix.bayes.generic.Fallback` code); "generic"
    insists on the generic program; "generated" forces the per-formula one.
    Both compute the same posterior; `fit.program_kind` records which ran and
    `fit.stan_code` is that program.

    priors: `bayesmix.priors.prior(...)` objects overriding the defaults.
    prior_only: skip the likelihood (prior predictive draws in y_rep).
    save_log_lik / save_y_rep: keep the pointwise log-likelihood / posterior
    predictive draws (N values per draw each; turn off for very large N).
    centered: group-level terms are non-centred (brms's layout) unless True or
    the names of grouping factors: the centred parameterisation, best with
    metric="dense_e", is much faster when each level has a lot of data.
    inits: starting values (one dict, all chains); by default Stan's random
    inits, or a safe start for links whose mean must stay in range.
    After sampling, `diagnostics()` runs and each problem found is issued as a
    `SamplingWarning` with advice (set diagnostics=False to skip)."""
    check_sampler_args(chains, iter_warmup, iter_sampling, thin, adapt_delta, metric)
    priors = tuple(priors)
    which, fallback = choose_joint_program(design, priors, program)
    if which == "generic":
        return fit_generic(design, priors, chains=chains, iter_warmup=iter_warmup,
                           iter_sampling=iter_sampling, seed=seed, adapt_delta=adapt_delta,
                           max_treedepth=max_treedepth, metric=metric, thin=thin,
                           prior_only=prior_only, show_progress=show_progress, engine=engine,
                           inits=inits, save_log_lik=save_log_lik, save_y_rep=save_y_rep,
                           centered=centered, output_dir=output_dir, diagnostics=diagnostics)
    if fallback is not None and fallback.code != FORCED:
        logging.getLogger("bayesmix").info("sampling the generated joint program: %s",
                                           fallback)
    program = joint_program(design, priors, centered)  # validates priors before compiling
    data = joint_stan_data(design, priors, prior_only=prior_only, save_log_lik=save_log_lik,
                           save_y_rep=save_y_rep)
    if inits is None:
        inits = joint_inits(design, priors, centered)
    fit = sample_program(PosteriorFit, design, priors, program, data, inits=inits,
                         engine=engine, diagnostics=diagnostics, chains=chains,
                         iter_warmup=iter_warmup, iter_sampling=iter_sampling, seed=seed,
                         adapt_delta=adapt_delta, max_treedepth=max_treedepth, metric=metric,
                         thin=thin, show_progress=show_progress, output_dir=output_dir)
    fit.fallback = fallback
    return fit


def sample_posterior(design, priors: Iterable[Prior] = (), program: str = "auto",
                     **kwargs: Any) -> PosteriorFit:
    """NUTS with the program `program` selects: "marginal" (gaussian identity-link mixed
    models: random effects integrated out and drawn exactly; the default for them), "joint"
    (brms's layout, every family) or "auto". Under "auto" the joint program is used, with an
    info message, where the marginal one does not apply or would be slower.

    The joint layout runs on the generic joint program (stan/glmm_joint.stan, compiled once
    for every formula) unless it cannot express the model (then on the per-formula generated
    program; see bayesmix.bayes.generic for the cases): program="generic" insists on the
    generic program, program="generated" forces the per-formula one. `fit.program_kind` is
    "marginal", "generic" or "generated"."""
    priors = tuple(priors)
    program = (program or "auto").lower()
    which, why = choose_program(design, priors, program, kwargs.get("centered", False))
    if which == "marginal":
        kwargs.pop("centered", None)
        return fit_marginal(design, priors, **kwargs)
    if why is not None and why.code not in (FAMILY_LINK, NO_RANDOM):  # a gaussian mixed model
        logger.info("sampling the joint program: %s", why)
    joint = program if program in ("generic", "generated") else "joint"
    return fit_nuts(design, priors, program=joint, **kwargs)


def restore_posterior(design, meta: dict, run, stan_data: dict, **_) -> PosteriorFit:
    """A NUTS bundle's fit object, of the class of the program that ran."""
    cls = {"marginal": MarginalPosteriorFit,
           "generic": GenericPosteriorFit}.get(meta.get("program"), PosteriorFit)
    return cls.from_export(design, meta, run, stan_data)


register_restorer("nuts", restore_posterior)
