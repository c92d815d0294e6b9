"""Maximum likelihood / REML for linear mixed models through Stan's optimizer.

The target is lme4's profiled deviance (random effects integrated out,
beta and sigma profiled), a function of theta only, computed by the one
generic program `stan/lmer.stan`: every gaussian formula shares one
compiled binary. Estimates at the optimum come from `bayesmix.lmm`."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .design import Design
from .engine import compile_model, stan_file
from .lmm import (deviance_from_stan_data, lmm_estimates, lmm_stan_data,
                  lmm_stan_inits, lmm_suffstats, normalize_theta, theta_moment_start)
from .lmm.theta import column_signs as _column_signs  # noqa: F401  (tests' name)
from .optimizer import (GRADIENT_TOL, OPTIMIZER_SETTINGS, check_convergence,  # noqa: F401
                        deviance_gradient, one_blas_thread, optimizer_settings, run_timings,
                        stan_gradient)
from .registry import register_restorer

LMER_PROGRAM = "lmer.stan"


def lmer_code() -> str:
    return stan_file(LMER_PROGRAM)


def lmer_data(design: Design, reml: bool) -> tuple[dict, object]:
    y = _response(design)
    ss = lmm_suffstats(design.X, y, design.terms)
    return lmm_stan_data(design.X, y, design.terms, reml, ss=ss, as_lists=False), ss


def fit_lmer(design: Design, reml: bool = True, engine: str = "auto",
             seed: int = 1, output_dir: str | None = None):
    """lmer: optimise the profiled deviance with Stan, then build the fit.

    The fit records where its time went in ``fit.timings`` (seconds): ``suffstats`` (cross
    products and the Stan data), ``compile`` (zero when cached), ``transfer`` (writing the data
    and the driver reading it), ``stan_setup`` (the program's checks and transformed data),
    ``stan`` (the optimizer), ``postprocess`` (estimates at the optimum) and ``total``."""
    if design.weights is not None:
        raise NotImplementedError("prior weights are not yet supported for lmer fits")
    t0 = time.perf_counter()
    with one_blas_thread():
        data, ss = lmer_data(design, reml)
    t1 = time.perf_counter()
    model = compile_model(lmer_code(), "lmer", engine)
    t2 = time.perf_counter()
    with one_blas_thread():
        inits = {"theta": theta_moment_start(design.X, _response(design),
                                             design.terms).tolist()}
    run = model.optimize(data, inits=inits, seed=seed, output_dir=output_dir,
                         accept_line_search_failure=True,
                         **optimizer_settings(data["N"]))
    t3 = time.perf_counter()
    fit = lmer_result(design, reml, run, data, ss=ss, inits=inits)
    t4 = time.perf_counter()
    return replace(fit, timings=dict(
        suffstats=t1 - t0, compile=t2 - t1, postprocess=t4 - t3, total=t4 - t0,
        **run_timings(run, t3 - t2)))


def lmer_result(design: Design, reml: bool, run, data: dict, ss=None, inits=None):
    """The fit at the optimum a Stan run found (also used to restore exports); inits: the
    run's starting values (default lme4's, theta = 1)."""
    from .results.mixed import MixedFit

    with one_blas_thread():
        y = _response(design)
        if ss is None:
            ss = lmm_suffstats(design.X, y, design.terms)
        opt = run.optimum()
        theta_raw = np.array([opt[f"theta[{i + 1}]"] for i in range(data["n_theta"])])
        theta = normalize_theta(theta_raw, design.terms)
        grad = deviance_gradient(run, theta_raw, list(ss.p_term))
        if grad is None:  # no gradient from Stan (CmdStan log_prob failed, old export): differences
            grad = _deviance_gradient(theta, data)
        converged = check_convergence(run.return_code, grad)
        est = lmm_estimates(theta, design.X, y, design.terms, reml, ss=ss)
        if design.offset is not None:
            est = replace(est, fitted=est.fitted + design.offset)
    return MixedFit(design=design, estimates=est, reml=reml, run=run, gradient=grad,
                    converged=converged, stan_data=data, objective_stan=-2 * opt["lp__"],
                    stan_code=lmer_code(),
                    inits=inits if inits is not None else lmm_stan_inits(design.terms))


def _response(design: Design) -> np.ndarray:
    # an offset in a gaussian identity model simply shifts the response
    return design.y if design.offset is None else design.y - design.offset


def _deviance_gradient(theta: np.ndarray, data: dict) -> np.ndarray:
    """Central-difference gradient of the deviance at theta (lme4's convergence check)."""
    h = 1e-5
    grad = np.empty_like(theta)
    for i in range(len(theta)):
        e = np.zeros_like(theta)
        e[i] = h
        grad[i] = (deviance_from_stan_data(theta + e, data)
                   - deviance_from_stan_data(theta - e, data)) / (2 * h)
    return grad


def _restore(design: Design, meta: dict, run, stan_data: dict, inits=None, **_):
    return lmer_result(design, meta["reml"], run, stan_data, inits=inits)


register_restorer("lmer", _restore)  # bayesmix.load / rerun of an lmer bundle
