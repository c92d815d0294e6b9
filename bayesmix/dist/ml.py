"""Distributional models by Laplace maximum likelihood (glmmTMB's estimator; ordinal::clmm's
for cumulative models), through Stan's optimizer and the one generic program
stan/dist_ml.stan (family, links, every predictor's fixed and group-level terms arrive as
data: `bayesmix.design.dist.dist_stan_data` plus Newton's controls).

Parameters (the program's and `DistMLFit`'s): beta, every predictor's fixed effects side by
side (mu first, then the family's dpars in FamilySpec.dpars order, each on its link scale);
cutpoints (cumulative: K - 1 ordered); theta, each group-level term's lower Cholesky factor
T_k of its covariance (b_j = T_k u_j, u ~ N(0, I)), column-major lower triangle (lme4's
order), unconstrained: the likelihood is unchanged when a column of T_k changes sign, and the
reported SDs and correlations come from T_k T_k'. The program maximises the Laplace log
likelihood with jacobian = False, so its optimum is the ML estimate and lp__ is logLik.

The Wald standard errors invert the Hessian of the Laplace log likelihood at the optimum
(glmmTMB inverts the same one, by automatic differentiation): the bundled driver differences
Stan's gradient there (2k gradients); for CmdStan runs, central differences of the numpy
mirror's values stand in. The same approximation in numpy (`bayesmix.dist.laplace`) gives the
starting values and the conditional modes at the inits (where the program's Newton
iterations start) and at the optimum.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from ..design.dist import DistDesign, dist_stan_data
from ..engine import compile_model, resolve_engine, stan_file
from ..errors import BayesmixError, user_stacklevel
from ..optimizer import (OPTIMIZER_SETTINGS, one_blas_thread, run_timings, stan_gradient,
                         stan_hessian)
from ..results.glm import coefmat_text
from .laplace import DistProblem, fixed_only_loglik, laplace, link_value, theta_size

DIST_ML_PROGRAM = "dist_ml.stan"
NEWTON_STEPS = 100      # at most, per evaluation of the program's Laplace likelihood
NEWTON_TOL = 1e-8       # relative Newton step that ends them (one exact step follows)
HESSIAN_STEP = 1e-4     # central differences of the Laplace log likelihood (lme4's deriv12)
GRADIENT_TOL = 1e-3     # converged when max |d logLik / d parameter| at the optimum is below

# glmmTMB's labels of the sub-models' coefficient tables
_TABLE_LABELS = {"mu": "Conditional model", "zi": "Zero-inflation model",
                 "hu": "Zero-inflation model (hurdle)", "sigma": "Dispersion model (log sigma)",
                 "phi": "Dispersion model (log phi)", "shape": "Dispersion model (log shape)",
                 "nu": "Degrees of freedom model (log(nu - 1))", "disc": "Discrimination model"}


def dist_ml_code(design: DistDesign | None = None) -> str:
    """The generic program (the same for every distributional model)."""
    return stan_file(DIST_ML_PROGRAM)


# ---------------------------------------------------------------------------------------------
# starting values
# ---------------------------------------------------------------------------------------------


def _intercept_starts(prob: DistProblem) -> dict[str, float]:
    """Natural-scale starting values of each predictor's intercept, from moments of y."""
    y = prob.y
    name = prob.family.name
    with np.errstate(all="ignore"):
        m, v = float(np.mean(y)), float(np.var(y))
        out: dict[str, float] = {}
        if name in ("gaussian", "student"):
            out["mu"] = float(np.median(y)) if name == "student" else m
            out["sigma"] = float(np.std(y)) if name == "gaussian" else float(
                1.4826 * np.median(np.abs(y - np.median(y))))
            out["nu"] = 5.0
        elif name == "lognormal":
            ly = np.log(y)
            out["mu"], out["sigma"] = float(np.mean(ly)), float(np.std(ly))
        elif name == "beta":
            out["mu"] = m
            out["phi"] = max(m * (1 - m) / v - 1.0, 1.0)
        elif name == "beta_binomial":
            p = float(np.sum(y) / np.sum(prob.trials))
            out["mu"], out["phi"] = min(max(p, 0.02), 0.98), 10.0
        elif name in ("negbinomial", "Gamma"):
            out["mu"] = max(m, 1e-3)
            out["shape"] = (m * m / (v - m) if v > m else 10.0) if name == "negbinomial" \
                else m * m / max(v, 1e-12)
        elif name.startswith(("zero_inflated", "hurdle")):
            p0 = float(np.mean(y == 0))
            pos = y[y > 0]
            mp = float(np.mean(pos)) if len(pos) else 1.0
            out["mu"] = max(mp - 0.5 if name.startswith("hurdle") else m / 0.8, 0.1)
            out["zi"] = 0.2
            out["hu"] = min(max(p0, 0.02), 0.98)
            out["shape"] = 1.0
        for k, val in list(out.items()):
            if not np.isfinite(val) or val <= 0 and k != "mu":
                out[k] = 1.0
    return out


def _cut_starts(prob: DistProblem) -> np.ndarray:
    K = prob.n_cut + 1
    cum = np.cumsum(np.bincount(prob.y.astype(int), minlength=K + 1)[1:])[:-1] / prob.n
    cum = np.clip(cum, 0.02, 0.98)
    q = special.logit(cum) if prob.family.link == "logit" else stats.norm.ppf(cum)
    return np.maximum.accumulate(q + 1e-3 * np.arange(len(q)))


def start_values(prob: DistProblem) -> np.ndarray:
    """x = [beta, cutpoints, theta]: intercepts from moments of y, refined by the ML fit
    without random effects (scipy's L-BFGS, analytic gradient); theta = identity (SD 1)
    scaled to the linear predictor's spread."""
    nat = _intercept_starts(prob)
    beta = []
    for p, X in zip(prob.design.predictors, prob.Xs):
        b = np.zeros(X.shape[1])
        if p.has_intercept and p.dpar in nat:
            b[0] = link_value(p.link, nat[p.dpar])
        beta.append(b)
    x_fixed = np.concatenate(beta + [_cut_starts(prob) if prob.n_cut else np.zeros(0)])

    def negll(x):
        val, grad = fixed_only_loglik(prob, x)
        if not np.isfinite(val):
            return 1e300, np.zeros_like(x)
        return -val, -grad

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = optimize.minimize(negll, x_fixed, jac=True, method="L-BFGS-B",
                                options={"maxiter": 500})
    if np.isfinite(res.fun) and res.fun < negll(x_fixed)[0]:
        x_fixed = res.x
    if prob.n_cut:  # keep them ordered
        kb = prob.k_beta
        c = x_fixed[kb:]
        x_fixed[kb:] = np.maximum.accumulate(c + 1e-6 * np.arange(len(c)))
    theta = []  # SD 0.5, no correlation (0 is a stationary point: start away from it)
    for t in prob.terms:
        T = np.eye(t.p) * 0.5
        theta.append(np.concatenate([T[j:, j] for j in range(t.p)])
                     if theta_size(t) > t.p else np.diag(T))
    return np.concatenate([x_fixed] + theta)


# ---------------------------------------------------------------------------------------------
# Stan data, inits, the fit
# ---------------------------------------------------------------------------------------------


def _x_to_inits(prob: DistProblem, x) -> dict:
    betas, cut, theta = prob.split(x)
    return {"beta": np.concatenate(betas).tolist(), "theta": np.asarray(theta).tolist(),
            "cutpoints": np.asarray(cut).tolist()}


def _inits_to_x(prob: DistProblem, inits: dict) -> np.ndarray:
    try:
        beta = np.asarray(inits["beta"], float).reshape(-1)
        theta = np.asarray(inits.get("theta", []), float).reshape(-1)
        cut = np.asarray(inits.get("cutpoints", []), float).reshape(-1)
    except (TypeError, ValueError, AttributeError) as exc:
        raise BayesmixError(f"inits must be a dict of numbers: {exc}") from None
    if (len(beta), len(cut), len(theta)) != (prob.k_beta, prob.n_cut, prob.n_theta):
        raise BayesmixError(f"inits need beta ({prob.k_beta}), cutpoints ({prob.n_cut}) and "
                            f"theta ({prob.n_theta}) values; got {len(beta)}, {len(cut)}, "
                            f"{len(theta)}")
    x = np.concatenate([beta, cut, theta])
    if not np.all(np.isfinite(x)):
        raise BayesmixError("inits must be finite")
    if prob.n_cut and np.any(np.diff(cut) <= 0):
        raise BayesmixError("inits: the cutpoints must be strictly increasing")
    return x


def _start_modes(prob: DistProblem, x) -> np.ndarray:
    """The conditional modes at the starting values (where the program's Newton starts);
    fails before Stan runs when the Laplace likelihood is not finite there."""
    try:
        fit = laplace(prob, x)
        value, u = fit.loglik, fit.u
    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
        value, u = np.nan, None
    if not np.isfinite(value):
        raise BayesmixError(
            f"the distributional ML fit cannot start: the Laplace likelihood is not finite at "
            f"the starting values (family {prob.family}); with a non-default link the "
            "parameters may leave their range for some rows: use the default links or pass "
            "inits={'beta': ..., 'theta': ..., 'cutpoints': ...}")
    return u


def dist_ml_data(design: DistDesign, inits: dict | None = None) -> dict:
    """Data of stan/dist_ml.stan: the common data plus Q and Newton's controls, starting at
    the conditional modes at the inits (default: `start_values`)."""
    prob = DistProblem.from_design(design)
    x0 = start_values(prob) if inits is None else _inits_to_x(prob, inits)
    return _stan_data(prob, _start_modes(prob, x0))


def _stan_data(prob: DistProblem, u_start) -> dict:
    data = dist_stan_data(prob.design)
    data.update(Q=prob.q, max_newton=NEWTON_STEPS, newton_tol=NEWTON_TOL,
                u_start=np.asarray(u_start, float))
    return data


def fit_dist_ml(design: DistDesign, engine: str = "auto", seed: int = 1,
                output_dir: str | None = None, inits: dict | None = None,
                hessian: bool = True) -> "DistMLFit":
    """Laplace maximum likelihood of a distributional model (glmmTMB's estimator).

    inits: optional {"beta", "theta", "cutpoints"} in the program's parametrisation (default:
    `start_values`). hessian=False skips the standard errors (NaN)."""
    if not isinstance(design, DistDesign):
        raise BayesmixError(f"fit_dist_ml needs a DistDesign (bayesmix.design.dist."
                            f"build_dist_design), not {type(design).__name__}")
    resolve_engine(engine)  # an unknown engine fails before any work
    t0 = time.perf_counter()
    prob = DistProblem.from_design(design)
    with one_blas_thread():  # small numpy steps: threads cost more than they give
        x0 = start_values(prob) if inits is None else _inits_to_x(prob, inits)
        init_dict = _x_to_inits(prob, x0)
        data = _stan_data(prob, _start_modes(prob, x0))
    code = dist_ml_code()
    tc = time.perf_counter()
    model = compile_model(code, "dist_ml", engine)
    t1 = time.perf_counter()
    run = model.optimize(data, inits=init_dict, seed=seed, output_dir=output_dir,
                         accept_line_search_failure=True, hessian=hessian,
                         **OPTIMIZER_SETTINGS)
    t2 = time.perf_counter()
    with one_blas_thread():
        fit = dist_ml_result(design, run, data, inits=init_dict, stan_code=code, prob=prob,
                             hessian=hessian)
    t3 = time.perf_counter()
    fit.timing.update(setup=tc - t0, compile=t1 - tc, optimize=run.elapsed,
                      optimize_wall=t2 - t1, postprocess=t3 - t2, total=t3 - t0,
                      **run_timings(run, t2 - t1))
    return fit


def _fd_hessian(f, x, h):
    """Central-difference Hessian of f at x (f's value at x once, 2k + 2k(k-1) more)."""
    k = len(x)
    f0 = f(x)
    H = np.empty((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h
        H[i, i] = (f(x + e) - 2 * f0 + f(x - e)) / h ** 2
        for j in range(i):
            ej = np.zeros(k)
            ej[j] = h
            H[i, j] = H[j, i] = (f(x + e + ej) - f(x + e - ej) - f(x - e + ej)
                                 + f(x - e - ej)) / (4 * h ** 2)
    return H


def _hessian_in_x(prob: DistProblem, hess_u: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Stan's Hessian in its unconstrained parameters (beta, theta, cutpoints as the first
    and then log differences) turned into x = (beta, cutpoints, theta). With c = c(y),
    H_x = J^-T H_y J^-1 (J = dc/dy); the term with the gradient vanishes at the optimum."""
    kb, nc, nt = prob.k_beta, prob.n_cut, prob.n_theta
    order = np.r_[np.arange(kb), kb + nt + np.arange(nc), kb + np.arange(nt)]
    h = hess_u[np.ix_(order, order)]
    if nc:
        jac = np.eye(len(order))
        dy = np.r_[1.0, np.diff(cut)]  # dc_k/dy_j = exp(y_j) = c_j - c_(j-1) for j >= 2
        jac[kb:kb + nc, kb:kb + nc] = np.tril(np.ones((nc, nc))) * dy[None, :]
        jinv = np.linalg.inv(jac)
        h = jinv.T @ h @ jinv
    return (h + h.T) / 2


def dist_ml_result(design: DistDesign, run, stan_data: dict, inits: dict | None = None,
                   stan_code: str = "", prob: DistProblem | None = None,
                   hessian: bool = True, warn: bool = True) -> "DistMLFit":
    """The DistMLFit of an optimize run of dist_ml.stan."""
    prob = DistProblem.from_design(design) if prob is None else prob
    opt = run.optimum()
    beta = np.array([opt[f"beta[{i + 1}]"] for i in range(prob.k_beta)])
    theta = np.array([opt[f"theta[{i + 1}]"] for i in range(prob.n_theta)])
    cut = np.array([opt[f"cutpoints[{i + 1}]"] for i in range(prob.n_cut)])
    x = np.concatenate([beta, cut, theta])
    at = laplace(prob, x, u0=stan_data.get("u_start"))
    # Stan's gradient of logLik at the optimum in its unconstrained parameters (beta, theta,
    # cutpoints: the first, then log differences), as either engine reports it
    grad = stan_gradient(run)
    n_par = prob.n_params
    vcov = np.full((n_par, n_par), np.nan)
    hess = None
    hess_u = stan_hessian(run) if hessian else None
    if hess_u is not None and hess_u.shape == (n_par, n_par):
        hess = _hessian_in_x(prob, hess_u, cut)  # the bundled driver's, from Stan's gradients
    elif hessian and n_par:  # CmdStan runs: central differences of the numpy mirror
        def f(z):
            if prob.n_cut and np.any(np.diff(z[prob.k_beta:prob.k_beta + prob.n_cut]) <= 0):
                return np.nan
            return laplace(prob, z, u0=at.u).loglik
        with np.errstate(all="ignore"):
            hess = _fd_hessian(f, x, HESSIAN_STEP)
    if hess is not None:
        try:
            vcov = np.linalg.inv(-hess)
            vcov = (vcov + vcov.T) / 2
        except np.linalg.LinAlgError:
            pass
        if not np.all(np.isfinite(vcov)) or np.any(np.diag(vcov) <= 0):
            if warn:
                warnings.warn("the Hessian of the Laplace log likelihood is not negative "
                              "definite at the optimum: standard errors are NaN (glmmTMB: "
                              "non-positive-definite Hessian)", stacklevel=user_stacklevel())
    if grad is None or len(grad) != n_par:
        with np.errstate(all="ignore"):  # no gradient from Stan: central differences
            grad = np.array([(laplace(prob, x + e, u0=at.u).loglik
                              - laplace(prob, x - e, u0=at.u).loglik) / 2e-6
                             for e in np.eye(n_par) * 1e-6]) if n_par else np.zeros(0)
    max_grad = float(np.max(np.abs(grad), initial=0.0))
    converged = bool(np.isfinite(at.loglik) and (run.return_code == 0 or max_grad < GRADIENT_TOL))
    if warn and not converged:
        warnings.warn(f"Model failed to converge: Stan's optimizer returned code "
                      f"{run.return_code} with max |gradient| = {max_grad:.3g} of the log "
                      "likelihood", stacklevel=user_stacklevel())
    return DistMLFit(design=design, problem=prob, x=x, vcov=vcov, laplace=at, run=run,
                     converged=converged, max_grad=max_grad, gradient=np.asarray(grad),
                     hessian=hess, stan_data=stan_data, inits=inits,
                     objective_stan=float(opt["lp__"]), stan_code=stan_code, timing={})


# ---------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------


def _ztable(est, se, names) -> pd.DataFrame:
    est, se = np.asarray(est, float), np.asarray(se, float)
    with np.errstate(all="ignore"):
        z = est / se
    return pd.DataFrame({"Estimate": est, "Std. Error": se, "z value": z,
                         "Pr(>|z|)": 2 * stats.norm.sf(np.abs(z))}, index=list(names))


@dataclass(frozen=True, eq=False)
class DistMLFit:
    """A distributional model fitted by Laplace maximum likelihood (glmmTMB's estimator).

    x = [beta (predictor blocks: mu, then the dpars), cutpoints, theta] at the optimum;
    vcov its Wald covariance (inverse of minus the Hessian of logLik in x)."""

    design: DistDesign
    problem: Any                 # bayesmix.dist.laplace.DistProblem
    x: np.ndarray
    vcov: np.ndarray
    laplace: Any                 # bayesmix.dist.laplace.DistLaplace at the optimum
    run: Any                     # RunResult of Stan's optimizer
    converged: bool
    max_grad: float              # max |d logLik / d parameter| at the optimum (Stan's gradient)
    gradient: np.ndarray = field(repr=False)
    hessian: np.ndarray | None = field(repr=False)
    stan_data: dict = field(repr=False)
    inits: dict | None = field(repr=False, default=None)
    objective_stan: float = float("nan")   # lp__ (= logLik)
    stan_code: str = field(default="", repr=False)
    timing: dict = field(default_factory=dict)

    kind = "dist_ml"
    method = "Laplace"

    # -- reproducible bundles (bayesmix.bundle; restored by _restore_bundle below) --
    def export(self, path: str) -> str:
        """Write a reproducible Stan bundle (see bayesmix.bundle.export)."""
        from ..registry import EXPORT, operation
        return operation(EXPORT)(self, path)

    def export_meta(self) -> dict:
        # Stan's gradient (and Hessian) at the optimum: CSV outputs do not hold them (the
        # driver prints them)
        meta = {"hessian": self.hessian is not None,
                "gradient": np.asarray(self.gradient, float).tolist()}
        stan_hess = stan_hessian(self.run)
        if stan_hess is not None:
            meta["stan_hessian"] = stan_hess.tolist()
        return meta

    # -- counts and fit statistics -------------------------------------------
    @property
    def family(self):
        return self.design.family

    @property
    def timings(self) -> dict:
        return self.timing

    def nobs(self) -> int:
        return self.design.n

    def df(self) -> int:
        """Parameters counted by AIC/BIC: fixed effects of every predictor, cutpoints and
        covariance parameters."""
        return int(self.problem.n_params)

    def loglik(self) -> float:
        """The Laplace approximation of the log likelihood at the optimum (glmmTMB's logLik)."""
        return float(self.laplace.loglik)

    def aic(self) -> float:
        return -2 * self.loglik() + 2 * self.df()

    def bic(self) -> float:
        return -2 * self.loglik() + np.log(self.nobs()) * self.df()

    def deviance(self) -> float:
        return -2 * self.loglik()

    # -- parameters ------------------------------------------------------------
    @property
    def dpars(self) -> tuple[str, ...]:
        return tuple(p.dpar for p in self.design.predictors)

    def _block(self, dpar: str) -> slice:
        pos = 0
        for p in self.design.predictors:
            k = p.X.shape[1]
            if p.dpar == dpar:
                return slice(pos, pos + k)
            pos += k
        raise KeyError(f"no distributional parameter {dpar!r}; this model has "
                       f"{', '.join(self.dpars)}")

    @property
    def se(self) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.sqrt(np.diag(self.vcov))

    def fixef(self, dpar: str = "mu") -> pd.Series:
        """Fixed effects of one predictor (link scale), named as R names its columns."""
        sl = self._block(dpar)
        return pd.Series(self.x[sl], index=list(self.design.predictor(dpar).X_names),
                         name=dpar, dtype=float)

    def coef_table(self, dpar: str = "mu") -> pd.DataFrame:
        """Estimate, Std. Error, z value, Pr(>|z|) of one predictor's fixed effects."""
        sl = self._block(dpar)
        return _ztable(self.x[sl], self.se[sl], self.design.predictor(dpar).X_names)

    def coef_tables(self) -> dict[str, pd.DataFrame]:
        """Every predictor's table under glmmTMB's label ("Conditional model", ...), then
        the cutpoints ("Threshold coefficients", clmm's label) of cumulative models."""
        out = {_TABLE_LABELS.get(p.dpar, p.dpar): self.coef_table(p.dpar)
               for p in self.design.predictors if p.X.shape[1]}
        if self.problem.n_cut:
            kb = self.problem.k_beta
            sl = slice(kb, kb + self.problem.n_cut)
            out["Threshold coefficients"] = _ztable(self.x[sl], self.se[sl], self._cut_names())
        return out

    def _cut_names(self) -> list[str]:
        c = self.design.categories
        return [f"{a}|{b}" for a, b in zip(c[:-1], c[1:])]

    def cutpoints(self) -> pd.Series | None:
        """Cumulative models' thresholds (P(y <= k) = F(c_k - eta)), named "1|2", ...;
        None otherwise."""
        if not self.problem.n_cut:
            return None
        kb = self.problem.k_beta
        return pd.Series(self.x[kb:kb + self.problem.n_cut], index=self._cut_names(),
                         name="cutpoints")

    @property
    def theta(self) -> np.ndarray:
        return self.x[self.problem.k_beta + self.problem.n_cut:]

    def _factors(self):
        return self.problem.factors(self.theta)

    def varcorr(self) -> dict[str, dict[str, dict]]:
        """{dpar: {group: {"names", "sd", "sd_se", "cor"}}}: each term's SDs and
        correlations (from T_k T_k'); sd_se by the delta method from theta's Wald covariance
        (sd_j = |row j of T_k|: d sd_j / d T_jm = T_jm / sd_j)."""
        out: dict[str, dict[str, dict]] = {}
        start = self.problem.k_beta + self.problem.n_cut
        for t, T, d in zip(self.design.terms, self._factors(), self.problem.term_lp):
            S = T @ T.T
            sd = np.sqrt(np.diag(S))
            with np.errstate(all="ignore"):
                cor = S / np.outer(sd, sd)
            np.fill_diagonal(cor, 1.0)
            k = theta_size(t)
            # theta's entries of this term, as T's (row, column) positions
            pos = ([(j, j) for j in range(t.p)] if k == t.p else
                   [(i, j) for j in range(t.p) for i in range(j, t.p)])
            Jac = np.zeros((t.p, k))
            for m, (i, j) in enumerate(pos):
                with np.errstate(all="ignore"):
                    Jac[i, m] = T[i, j] / sd[i]
            V = self.vcov[start:start + k, start:start + k]
            with np.errstate(invalid="ignore"):
                sd_se = np.sqrt(np.diag(Jac @ V @ Jac.T))
            start += k
            names = list(t.coef_names)
            out.setdefault(self.dpars[d], {})[t.group] = {
                "names": names, "sd": pd.Series(sd, index=names),
                "sd_se": pd.Series(sd_se, index=names),
                "cor": pd.DataFrame(cor, index=names, columns=names)}
        return out

    def confint(self, method: str = "Wald", level: float = 0.95, parm=None) -> pd.DataFrame:
        """Wald intervals like glmmTMB's confint(fit, method = "wald"): rows "<dpar>.<column>"
        for every predictor's fixed effects (glmmTMB's "cond.", "zi.", "disp." become our dpar
        names "mu.", "zi.", "sigma.", "shape.", ...; link scale), "cut.<a|b>" for cumulative
        thresholds, and "<dpar>.Std.Dev.<coef>|<group>" for every SD: Wald on log(SD) (the
        delta-method SE of SD divided by SD, glmmTMB's theta scale), then exponentiated.
        Correlations get no interval. Columns "2.5 %", "97.5 %", "Estimate".
        method="profile" is refused (not implemented for distributional models)."""
        if str(method).lower() != "wald":
            raise BayesmixError(
                f"confint(method={method!r}) is not available for distributional ML fits: "
                "only method='Wald' (profile likelihood intervals are not implemented)")
        if not 0 < level < 1:
            raise BayesmixError(f"level must be in (0, 1), got {level!r}")
        z = stats.norm.ppf(0.5 + level / 2)
        names, est, lo, hi = [], [], [], []
        for p in self.design.predictors:
            sl = self._block(p.dpar)
            for nm, b, s in zip(p.X_names, self.x[sl], self.se[sl]):
                names.append(f"{p.dpar}.{nm}")
                est.append(b)
                lo.append(b - z * s)
                hi.append(b + z * s)
        if self.problem.n_cut:
            kb = self.problem.k_beta
            for i, nm in enumerate(self._cut_names()):
                b, s = self.x[kb + i], self.se[kb + i]
                names.append(f"cut.{nm}")
                est.append(b)
                lo.append(b - z * s)
                hi.append(b + z * s)
        for dpar, groups in self.varcorr().items():
            for g, v in groups.items():
                for nm in v["names"]:
                    sd, s = float(v["sd"][nm]), float(v["sd_se"][nm])
                    with np.errstate(all="ignore"):
                        half = z * s / sd
                    names.append(f"{dpar}.Std.Dev.{nm}|{g}")
                    est.append(sd)
                    lo.append(sd * np.exp(-half))
                    hi.append(sd * np.exp(half))
        a = 50 * (1 - level)
        table = pd.DataFrame({f"{a:g} %": lo, f"{100 - a:g} %": hi, "Estimate": est},
                             index=names)
        if parm is not None:
            keep = [parm] if isinstance(parm, str) else list(parm)
            missing = [k for k in keep if k not in table.index]
            if missing:
                raise BayesmixError(f"unknown parameter(s) {missing}; choose from "
                                    f"{list(table.index)}")
            table = table.loc[keep]
        return table

    def ranef(self) -> dict[str, dict[str, pd.DataFrame]]:
        """Conditional modes b = T_k u* per predictor and group (levels x coefficients; two
        terms of one group in one predictor, e.g. (1 | g) + (0 + x | g), side by side)."""
        out: dict[str, dict[str, pd.DataFrame]] = {}
        for t, b, d in zip(self.design.terms, self._ranef_arrays(), self.problem.term_lp):
            table = pd.DataFrame(b, index=list(t.levels), columns=list(t.coef_names))
            groups = out.setdefault(self.dpars[d], {})
            groups[t.group] = (table if t.group not in groups
                               else pd.concat([groups[t.group], table], axis=1))
        return out

    def coef(self) -> dict[str, dict[str, pd.DataFrame]]:
        """glmmTMB's / lme4's coef(): per predictor and group, each level's coefficients, the
        fixed effects plus the level's conditional modes (a coefficient with a group-level
        part only is its mode)."""
        out: dict[str, dict[str, pd.DataFrame]] = {}
        for dpar, groups in self.ranef().items():
            fe = self.fixef(dpar)
            for group, re in groups.items():
                table = pd.DataFrame(np.tile(fe.to_numpy(), (len(re), 1)), index=re.index,
                                     columns=list(fe.index))
                for c in re.columns:
                    table[c] = (table[c] if c in table else 0.0) + re[c].to_numpy()
                out.setdefault(dpar, {})[group] = table
        return out

    def _ranef_arrays(self) -> list[np.ndarray]:
        out, q0 = [], 0
        u = self.laplace.u
        for t, T in zip(self.design.terms, self._factors()):
            uk = u[q0:q0 + t.p * t.n_levels].reshape(t.n_levels, t.p)
            out.append(uk @ T.T)
            q0 += t.p * t.n_levels
        return out

    def aux(self) -> dict[str, float]:
        """The family's constant parameters (predictors with an intercept only, no
        group-level terms) on their natural scale: sigma, nu, phi, shape, zi, hu."""
        from ..families import dpar_linkinv
        out = {}
        for p in self.design.predictors[1:]:
            if p.X_names == ("(Intercept)",) and not p.terms:
                out[p.dpar] = float(dpar_linkinv(p.link, self.fixef(p.dpar).iloc[0]))
        return out

    # -- predictions (bayesmix.dist.predict, one draw S = 1) -----------------------
    def params(self):
        """The estimates as bayesmix.dist.predict.DistParams with one draw (S = 1)."""
        from .predict import DistParams
        beta = {p.dpar: self.fixef(p.dpar).to_numpy()[None, :] for p in self.design.predictors}
        ranef = tuple(b[None, :, :] for b in self._ranef_arrays())
        cut = self.cutpoints()
        return DistParams(beta=beta, ranef=ranef,
                          cutpoints=None if cut is None else cut.to_numpy()[None, :])

    def linpred(self, newdata: pd.DataFrame | None = None, **kw) -> dict[str, np.ndarray]:
        """Linear predictors per dpar (n,) at the estimates and conditional modes."""
        from . import predict
        return {k: v[0] for k, v in predict.linpred(self.design, self.params(), newdata,
                                                    **kw).items()}

    def dpars_natural(self, newdata: pd.DataFrame | None = None, **kw) -> dict[str, np.ndarray]:
        """Every distributional parameter on its natural scale (n,)."""
        from . import predict
        return {k: v[0] for k, v in predict.dpars(self.design, self.params(), newdata,
                                                  **kw).items()}

    def epred(self, newdata: pd.DataFrame | None = None, **kw) -> np.ndarray:
        """Expected response (n,) (cumulative: the expected category number)."""
        from . import predict
        return predict.epred(self.design, self.params(), newdata, **kw)[0]

    def predict(self, newdata: pd.DataFrame | None = None, type: str = "response",
                **kw) -> np.ndarray:
        """type="response" (expected y, default) or "link" (mu's linear predictor)."""
        if type == "link":
            return self.linpred(newdata, **kw)["mu"]
        if type != "response":
            raise ValueError(f"unknown prediction type {type!r}; choose one of: response, link")
        return self.epred(newdata, **kw)

    def fitted(self) -> np.ndarray:
        return self.epred()

    def log_lik(self) -> np.ndarray:
        """Pointwise log density of the data (n,) given the conditional modes."""
        from . import predict
        return predict.log_lik(self.design, self.params())[0]

    def simulate(self, nsim: int = 1, seed: int | None = None) -> np.ndarray:
        """Responses (nsim x n) at the estimates and conditional modes."""
        from . import predict
        rng = np.random.default_rng(seed)
        return np.vstack([predict.simulate(self.design, self.params(), rng)
                          for _ in range(nsim)])

    # -- printing ----------------------------------------------------------------
    def _formula_lines(self) -> list[str]:
        lines = [f"Formula:          {self.design.formula.formula.strip()}"]
        for p in self.design.predictors[1:]:
            if p.modelled:
                lines.append(f"{(p.dpar + ':'):<18}~{p.formula.rstrip()}")
        return lines

    def summary(self) -> "DistMLSummary":
        return DistMLSummary(self)

    def __repr__(self) -> str:
        return (f"<DistMLFit Laplace {self.family}: "
                f"{self.design.formula.formula.strip()}; logLik {self.loglik():.4f}>")

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


class DistMLSummary:
    """glmmTMB's summary() layout (clmm's thresholds for cumulative models)."""

    def __init__(self, fit: DistMLFit):
        self.fit = fit

    def __str__(self) -> str:
        f = self.fit
        lines = [f" Family: {f.family.name}  ( {f.family.link} )", *f._formula_lines(), "",
                 "Laplace maximum likelihood (Stan L-BFGS)", ""]
        tab = pd.DataFrame({"AIC": [f.aic()], "BIC": [f.bic()], "logLik": [f.loglik()],
                            "deviance": [f.deviance()], "df.resid": [f.nobs() - f.df()]})
        lines.append(tab.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
        vc = f.varcorr()
        if vc:
            lines.append("")
            lines.append("Random effects:")
            rows = []
            for dpar, groups in vc.items():
                for grp, v in groups.items():
                    for j, nm in enumerate(v["names"]):
                        cors = " ".join(f"{v['cor'].iloc[j, m]:.2f}" for m in range(j))
                        rows.append((_TABLE_LABELS.get(dpar, dpar) if dpar != "mu" else
                                     "Conditional model", grp if j == 0 else "", nm,
                                     v["sd"].iloc[j], cors))
            for label in dict.fromkeys(r[0] for r in rows):
                lines.append(f"\n{label}:")
                lines.append(f" {'Groups':<8} {'Name':<12} {'Std.Dev.':>9} Corr")
                lines += [f" {g:<8} {n:<12} {sd:9.4f} {c}".rstrip()
                          for lab, g, n, sd, c in rows if lab == label]
            lines.append(f"Number of obs: {f.nobs()}, groups: " + ", ".join(
                f"{t.group}, {t.n_levels}" for t in dict(
                    (t.group, t) for t in f.design.terms).values()))
        aux = f.aux()
        if aux:
            lines.append("")
            lines += [f"{k} parameter: {v:.4g}" for k, v in aux.items()]
        for label, table in f.coef_tables().items():
            lines += ["", f"{label}:", coefmat_text(table)]  # R's printCoefmat, as glmmTMB
        if not f.converged:
            lines += ["", f"Model failed to converge: max |gradient| {f.max_grad:.3g}"]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from ..results.format import html_pre
        return html_pre(str(self))


def _restore_bundle(design: DistDesign, meta: dict, run, stan_data: dict,
                    inits: dict | None = None, **_) -> DistMLFit:
    """bayesmix.load / rerun of a "dist_ml" bundle: the fit from its optimize CSV (no
    refitting). A loaded run has no console, so Stan's gradient and Hessian at the optimum
    come from run.json (the export recorded them); a rerun's own console has its own."""
    import dataclasses
    grad = meta.get("gradient")
    if not run.console and grad is not None:
        lines = ["optimum_gradient = " + ",".join(repr(float(g)) for g in grad)]
        if meta.get("stan_hessian") is not None:
            lines.append("optimum_hessian = " + ",".join(
                repr(float(h)) for h in np.ravel(meta["stan_hessian"])))
        run = dataclasses.replace(run, console="\n".join(lines))
    return dist_ml_result(design, run, stan_data, inits=inits, stan_code=dist_ml_code(),
                          hessian=bool(meta.get("hessian", True)))


from ..registry import register_restorer  # noqa: E402  (below the result class it restores)

register_restorer("dist_ml", _restore_bundle)


__all__ = ["DIST_ML_PROGRAM", "DistMLFit", "dist_ml_code", "dist_ml_data", "fit_dist_ml",
           "start_values"]
