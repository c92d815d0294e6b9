"""Maximum likelihood / REML for linear mixed models through Stan's optimizer.

The target is lme4's profiled deviance (random effects integrated out,
beta and sigma profiled), a function of theta only, computed by the one
generic program `stan/lmer.stan`: every gaussian formula shares one
compiled binary. Estimates at the optimum come from `bayesmix.lmm`."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

from .design import Design
from .engine import compile_model, stan_file
from .lmm import (deviance_from_stan_data, lmm_estimates, lmm_stan_data,
                  lmm_stan_inits, lmm_suffstats, normalize_theta)

LMER_PROGRAM = "lmer.stan"
# Stan's L-BFGS stops on a relative gradient below tol_rel_grad * machine eps;
# 1e3 (default 1e7) reaches lme4's precision on every reference case.
OPTIMIZER_SETTINGS = dict(algorithm="lbfgs", jacobian=False, iter=10000,
                          tol_rel_grad=1e3, tol_rel_obj=1e2, tol_obj=1e-12)
GRADIENT_TOL = 2e-3  # lme4's check.conv.grad tolerance on the deviance scale


def lmer_code() -> str:
    return stan_file(LMER_PROGRAM)


def lmer_data(design: Design, reml: bool) -> tuple[dict, object]:
    y = _response(design)
    ss = lmm_suffstats(design.X, y, design.terms)
    return lmm_stan_data(design.X, y, design.terms, reml, ss=ss), ss


def fit_lmer(design: Design, reml: bool = True, engine: str = "auto",
             seed: int = 1, output_dir: str | None = None):
    """lmer: optimise the profiled deviance with Stan, then build the fit."""
    if design.weights is not None:
        raise NotImplementedError("prior weights are not yet supported for lmer fits")
    data, _ = lmer_data(design, reml)
    model = compile_model(lmer_code(), "lmer", engine)
    run = model.optimize(data, inits=lmm_stan_inits(design.terms), seed=seed,
                         output_dir=output_dir, accept_line_search_failure=True,
                         **OPTIMIZER_SETTINGS)
    return lmer_result(design, reml, run, data)


def lmer_result(design: Design, reml: bool, run, data: dict):
    """The fit at the optimum a Stan run found (also used to restore exports)."""
    from .results.mixed import MixedFit

    y = _response(design)
    ss = lmm_suffstats(design.X, y, design.terms)
    opt = run.optimum()
    theta = np.array([opt[f"theta[{i + 1}]"] for i in range(data["n_theta"])])
    theta = normalize_theta(theta, design.terms)
    grad = _deviance_gradient(theta, data)
    converged = run.return_code == 0 or np.max(np.abs(grad)) < GRADIENT_TOL
    if not converged:
        warnings.warn(f"Model failed to converge: Stan's optimizer returned code "
                      f"{run.return_code} with max|grad| = {np.max(np.abs(grad)):.3g} "
                      "on the deviance scale", stacklevel=3)
    est = lmm_estimates(theta, design.X, y, design.terms, reml, ss=ss)
    if design.offset is not None:
        est = replace(est, fitted=est.fitted + design.offset)
    return MixedFit(design=design, estimates=est, reml=reml, run=run, gradient=grad,
                    converged=converged, stan_data=data, objective_stan=-2 * opt["lp__"],
                    stan_code=lmer_code(), inits=lmm_stan_inits(design.terms))


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
