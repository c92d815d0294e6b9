"""Generalized linear mixed models by Laplace maximum likelihood (lme4's glmer, nAGQ = 1).

The target is the Laplace approximation of the marginal log likelihood, computed by the one
generic program `stan/glmer.stan` (family, link and random-effects structure arrive as data):
for given (beta, theta[, phi]) the conditional mode u* of log p(y | u) - ||u||^2 / 2 is found
by Newton's method inside the program, and

    log L ~= log p(y | u*) - ||u*||^2 / 2 - log|L|,   L L' = Lambda'Z'WZ Lambda + I,

with W the GLM (Fisher) weights at u*, as lme4's PIRLS uses them. Stan's L-BFGS maximises it
over beta, theta and, for the negative binomial (glmer.nb), log(phi).

This module is the method: program, data, inits, the run and the result. The same
approximation in numpy (conditional modes and variances at the optimum, the finite-difference
Hessian behind the Wald standard errors, the convergence check's deviance) is
`bayesmix.lmm.laplace`.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from .design import Design
from .engine import compile_model, stan_file
from .errors import BayesmixError
from .families import Family
from .lmm.laplace import (GLMER_LINKS, NEWTON_STEPS, NEWTON_TOL, GlmmProblem, check_glmer_family, glm_start,
                          glmm_estimates, laplace)
from .lmm.sparsity import glmm_sparsity
from .lmm.suffstats import normalize_theta, theta_start
from .optimizer import (check_convergence, deviance_gradient, one_blas_thread,
                        optimizer_settings, run_timings, stan_hessian)
from .registry import register_restorer

GLMER_PROGRAM = "glmer.stan"


# ---------------------------------------------------------------------------------------------
# Stan program, data and inits
# ---------------------------------------------------------------------------------------------


def glmer_code(design: Design | None = None) -> str:
    """The generic glmer program (the same for every family and formula); with a design,
    its family and link are checked first."""
    if design is not None:
        check_glmer_family(design.family)
    return stan_file(GLMER_PROGRAM)


def _stan_data(prob: GlmmProblem, u_start: np.ndarray) -> dict:
    terms = prob.terms
    Zr = np.column_stack([t.Z for t in terms])
    level = np.column_stack([t.index + 1 for t in terms]).astype(int)
    return {
        "N": prob.n, "P": prob.p, "n_terms": len(terms),
        "p_term": [t.p for t in terms], "l_term": [t.n_levels for t in terms],
        "n_theta": prob.n_theta, "Q": prob.q, "R": int(Zr.shape[1]),
        "X": prob.X, "offs": prob.offset, "Zr": Zr, "level": level,
        **Family(prob.family, prob.link).stan_codes("glmer"),
        "y": prob.y, "trials": prob.ntr,
        "max_newton": NEWTON_STEPS, "newton_tol": NEWTON_TOL, "u_start": u_start,
        **glmm_sparsity(prob.zl_cols, prob.q, terms[0].q, terms[0].p),
    }


def glmer_data(design: Design) -> dict:
    """Data of `stan/glmer.stan` for a design (Newton starts at the mode at lme4's start)."""
    prob = GlmmProblem.from_design(design)
    beta, phi = glm_start(prob)
    return _stan_data(prob, _start_modes(prob, _inits(prob, beta, phi)))


def _inits(prob: GlmmProblem, beta, phi) -> dict:
    init = {"beta": np.asarray(beta, float).tolist(),
            "theta": theta_start(prob.terms).tolist()}
    init["log_phi"] = [float(np.log(phi))] if prob.has_phi else []
    return init


def glmer_inits(design: Design) -> dict:
    """lme4's starting values: theta = identity, beta (and phi) from the GLM fit."""
    prob = GlmmProblem.from_design(design)
    beta, phi = glm_start(prob)
    return _inits(prob, beta, phi)


# ---------------------------------------------------------------------------------------------
# The fit
# ---------------------------------------------------------------------------------------------


def fit_glmer(design: Design, engine: str = "auto", seed: int = 1,
              output_dir: str | None = None, inits: dict | None = None):
    """glmer (nAGQ = 1): maximise the Laplace likelihood with Stan, then build the fit.

    inits: optional {"beta", "theta", "log_phi"} (default: lme4's start, theta = identity
    and beta from the GLM fit)."""
    t0 = time.perf_counter()
    prob = GlmmProblem.from_design(design)
    if inits is None:
        beta0, phi0 = glm_start(prob)
        inits = _inits(prob, beta0, phi0)
    data = _stan_data(prob, _start_modes(prob, inits))
    code = glmer_code(design)
    tc = time.perf_counter()
    model = compile_model(code, "glmer", engine)
    t1 = time.perf_counter()
    # hessian: the bundled driver differences Stan's gradient at the optimum for the Wald
    # covariance (2 k gradients, where numpy's differences took 2 k^2 Laplace fits)
    run = model.optimize(data, inits=inits, seed=seed, output_dir=output_dir,
                         accept_line_search_failure=True, hessian=True,
                         **optimizer_settings(prob.n))
    t2 = time.perf_counter()
    fit = glmer_result(design, run, data, inits=inits, stan_code=code, prob=prob)
    t3 = time.perf_counter()
    fit.timing.update({"setup_s": t1 - t0, "optimize_s": run.elapsed,
                       "optimize_wall_s": t2 - t1, "estimates_s": t3 - t2, "total_s": t3 - t0})
    # the same stages as lmer fits (fit.timings): here suffstats = problem, data and start
    fit.timing.update(suffstats=tc - t0, compile=t1 - tc, postprocess=t3 - t2, total=t3 - t0,
                      **run_timings(run, t2 - t1))
    return fit


def _start_modes(prob: GlmmProblem, inits: dict) -> np.ndarray:
    """The conditional modes u* at the starting values, where the program's Newton iterations
    start; fails before Stan runs when the Laplace likelihood is not finite there."""
    phi = float(np.exp(inits["log_phi"][0])) if prob.has_phi else 1.0
    try:
        # one BLAS thread: many small factorizations (a multithreaded BLAS stalls on them)
        with np.errstate(all="ignore"), one_blas_thread():
            start = laplace(prob, np.asarray(inits["beta"], float),
                            np.asarray(inits["theta"], float), phi)
        value, u = start.loglik, start.u
    except (np.linalg.LinAlgError, ValueError):
        value = np.nan
    if not np.isfinite(value):
        raise BayesmixError(
            f"glmer cannot start: the Laplace likelihood is not finite at the starting values "
            f"(beta from the GLM fit, theta = 1) -- with the {prob.link} link of the "
            f"{prob.family} family the means leave their range for some rows, or the "
            "conditional mode of the random effects lies on its boundary; use the default "
            f"link ({GLMER_LINKS[prob.family][0]}) or pass inits={{'beta': ..., 'theta': ...}}")
    return u


def glmer_result(design: Design, run, stan_data: dict, inits: dict | None = None,
                 stan_code: str = "", prob: GlmmProblem | None = None, warn: bool = True):
    """The GlmmFit of an optimize run of glmer.stan (also used to reload exports)."""
    from .results.glmm import GlmmFit

    prob = GlmmProblem.from_design(design) if prob is None else prob
    opt = run.optimum()
    beta = np.array([opt[f"beta[{i + 1}]"] for i in range(prob.p)])
    theta = np.array([opt[f"theta[{i + 1}]"] for i in range(prob.n_theta)])
    phi = float(np.exp(opt["log_phi[1]"])) if prob.has_phi else 1.0
    # Stan's gradient in (beta, theta[, log phi]) on the deviance scale
    stan_grad = deviance_gradient(run, theta, [t.p for t in prob.terms], before=prob.p,
                                  size=prob.p + prob.n_theta + int(prob.has_phi))
    est = glmm_estimates(prob, beta, theta, phi, gradient=stan_grad,
                         hessian=_deviance_hessian(prob, run, theta))
    converged = check_convergence(run.return_code, est.gradient, warn=warn)
    return GlmmFit(design=design, problem=prob, estimates=est, run=run, converged=converged,
                   stan_data=stan_data, inits=inits, objective_stan=float(opt["lp__"]),
                   stan_code=stan_code or glmer_code(), timing={})


def _deviance_hessian(prob: GlmmProblem, run, theta_raw: np.ndarray) -> np.ndarray | None:
    """lme4's Hessian layout from the driver's (when it printed one): the deviance in
    (theta, beta) at fixed phi, theta with lme4's column signs (normalize_theta)."""
    h = stan_hessian(run)
    k = prob.p + prob.n_theta
    if h is None or h.shape[0] != k + int(prob.has_phi) or not np.all(np.isfinite(h)):
        return None
    order = np.r_[prob.p:k, 0:prob.p]   # Stan's (beta, theta) -> (theta, beta)
    flips = np.sign(normalize_theta(theta_raw, prob.terms) * theta_raw)
    sign = np.r_[np.where(flips == 0, 1.0, flips), np.ones(prob.p)]
    return -2 * h[np.ix_(order, order)] * np.outer(sign, sign)


def _restore(design: Design, meta: dict, run, stan_data: dict, **_):
    """A loaded run has no console: Stan's gradient and Hessian at the optimum come from
    run.json (the export recorded the driver's lines); a rerun has its own."""
    lines = meta.get("optimum_lines")
    if not run.console and lines:
        run = dataclasses.replace(run, console="\n".join(lines))
    return glmer_result(design, run, stan_data)


register_restorer("glmer", _restore)  # bayesmix.load / rerun of a glmer bundle
