"""Stan's L-BFGS as the maximum-likelihood fits (lmer, glmer) use it, in one place: its settings,
the deviance gradient at the optimum, lme4's convergence check and warning, the split of a run's
time, and the one-BLAS-thread context of the post-processing."""

from __future__ import annotations

import contextlib
import warnings
from typing import Sequence

import numpy as np

from .errors import user_stacklevel
from .lmm.theta import column_signs

# Stan's L-BFGS stops on a relative gradient below tol_rel_grad * machine eps;
# 1e3 (default 1e7) reaches lme4's precision on every reference case.
OPTIMIZER_SETTINGS = dict(algorithm="lbfgs", jacobian=False, iter=10000,
                          tol_rel_grad=1e3, tol_rel_obj=1e2, tol_obj=1e-12)
GRADIENT_TOL = 2e-3  # lme4's check.conv.grad tolerance on the deviance scale


def optimizer_settings(n_obs: int) -> dict:
    """OPTIMIZER_SETTINGS for a fit to n_obs rows. L-BFGS's first trial step is init_alpha
    times the gradient, and the deviance's gradient is a sum over rows: with Stan's fixed 1e-3
    the first step overshoots further the more rows there are, and the first line search
    spends more evaluations backtracking (crossed 10^6 rows: 8 of 19). init_alpha = 10 / n
    keeps that step about the same size in theta at any n (Stan's 1e-3 up to 10^4 rows)."""
    return dict(OPTIMIZER_SETTINGS, init_alpha=min(1e-3, 10.0 / max(int(n_obs), 1)))


def stan_gradient(run) -> np.ndarray | None:
    """The gradient of the log density at the optimum, as the bundled driver printed it
    (unconstrained parameters, Stan's order); None when the run did not record one."""
    for line in reversed((run.console or "").splitlines()):
        if line.startswith("optimum_gradient = "):
            try:
                return np.array([float(v) for v in line.split("=", 1)[1].split(",") if v.strip()])
            except ValueError:
                return None
    return None


def stan_hessian(run) -> np.ndarray | None:
    """The Hessian of the log density at the optimum (unconstrained parameters, Stan's order)
    as the bundled driver printed it for an optimize run with hessian=True; else None."""
    for line in reversed((run.console or "").splitlines()):
        if line.startswith("optimum_hessian = "):
            try:
                vals = np.array([float(v) for v in line.split("=", 1)[1].split(",")])
            except ValueError:
                return None
            k = int(round(np.sqrt(vals.size)))
            return vals.reshape(k, k) if k * k == vals.size else None
    return None


def deviance_gradient(run, theta_raw, p_term: Sequence[int], before: int = 0,
                      size: int | None = None) -> np.ndarray | None:
    """Stan's gradient at the optimum on the deviance scale (lp = -deviance / 2) at lme4's
    representative theta: normalising theta flips the sign of whole columns of T_k, hence of
    their entries of the gradient. theta follows ``before`` other parameters; ``size``: the
    whole gradient's length (default: theta's). None when Stan gave none of that length."""
    g = stan_gradient(run)
    k = len(theta_raw)
    if g is None or len(g) != (k if size is None else size):
        return None
    g = -2.0 * g
    g[before:before + k] *= column_signs(np.asarray(theta_raw, float), p_term)
    return g


def check_convergence(return_code: int, gradient, warn: bool = True) -> bool:
    """lme4's rule: converged when Stan's optimizer returned 0 or the largest deviance
    gradient is below GRADIENT_TOL; otherwise (and when ``warn``) a warning says so."""
    grad = float(np.max(np.abs(gradient), initial=0.0))
    converged = return_code == 0 or grad < GRADIENT_TOL
    if warn and not converged:
        warnings.warn(f"Model failed to converge: Stan's optimizer returned code {return_code} "
                      f"with max|grad| = {grad:.3g} on the deviance scale",
                      stacklevel=user_stacklevel())
    return converged


def run_timings(run, wall: float) -> dict:
    """Seconds of one optimize call split as transfer (writing and reading the data),
    stan_setup (model construction: checks, transformed data) and stan (the rest of Stan)."""
    read = setup = 0.0
    for line in (run.console or "").splitlines():
        if line.startswith("data_read_seconds = "):
            read = float(line.split("=", 1)[1])
        elif line.startswith("model_setup_seconds = "):
            setup = float(line.split("=", 1)[1])
    write = max(wall - run.elapsed, 0.0)
    return dict(transfer=write + read, stan_setup=setup,
                stan=max(run.elapsed - read - setup, 0.0))


def one_blas_thread():
    """Many small dense factorizations after the optimum: a multithreaded BLAS only adds
    overhead there and stalls on a busy machine, so use one thread when threadpoolctl is
    installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")
