"""Profile-likelihood confidence intervals for linear mixed fits (lme4's confint.merMod).

As lme4's ``profile.merMod``, the profile is of the maximum-likelihood deviance (a REML fit is
refitted by ML first, here in numpy on the profiled deviance), on the scale of the standard
deviations and correlations of the random effects (lme4's ``.sig01``... / ``sd_(Intercept)|g``)
and sigma, and of the fixed effects:

* a variance parameter held at a value: the deviance
  ``log|A| + r2 / sigma^2 + n log(2 pi sigma^2)`` (theta from the sd/cor values over sigma) is
  minimised over the other sd/cor parameters and sigma;
* a fixed effect held at ``b``: ``log|A| + n (1 + log(2 pi r2_b / n))`` with
  ``r2_b = r2 + (b - beta_j)^2 / [(R_X'R_X)^-1]_jj`` (beta_j, r2, R_X at theta) is minimised
  over theta.

The interval's ends are where the signed root ``zeta = sign(v - v_hat) sqrt(dev(v) - dev_min)``
equals the normal quantiles; they are found by secant steps on zeta (nearly linear in the
parameter) from a Wald start, to 1e-6 in zeta, rather than by lme4's spline through a grid.
A standard deviation whose profile stays inside the quantile down to 0 gets the lower limit 0,
a correlation the limit -1 or 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import BayesmixError
from ..lmm.theta import factors_of, normalize_theta, theta_of, tril_positions, varcorr
from ._core import LOG_2PI, fit_suffstats, minimize_smooth, ml_profiled, pieces

__all__ = ["profile_confint", "varpar_names", "ProfileProblem"]

ZETA_TOL = 1e-6


def varpar_names(fit) -> list[str]:
    """lme4's confint(..., oldNames = FALSE) names of the variance parameters. The grouping
    factor's own name, also for the repeated terms of ``(x || g)`` (lme4 writes
    ``sd_(Intercept)|Subject``, ``sd_Days|Subject`` there, unlike VarCorr's ``Subject.1``)."""
    out = []
    for t in fit.design.terms:
        label = t.group
        cn = list(t.coef_names)
        for i, j in zip(*tril_positions(t.p)):
            out.append(f"sd_{cn[i]}|{label}" if i == j else f"cor_{cn[i]}.{cn[j]}|{label}")
    if getattr(fit, "has_scale", True):
        out.append("sigma")
    return out


def _sd_cor_kinds(p_term) -> list[str]:
    """"sd" or "cor" per theta entry: diagonal entries profile a standard deviation."""
    return ["sd" if i == j else "cor" for p in p_term for i, j in zip(*tril_positions(p))]


class ProfileProblem:
    """The ML deviance of an lmer model in lme4's profiling parameterisation."""

    def __init__(self, fit):
        self.fit = fit
        self.ss = fit_suffstats(fit)
        self.n = self.ss.n
        self.p_term = list(self.ss.p_term)
        theta0 = np.asarray(fit.estimates.theta, float)
        if fit.reml:  # lme4 profiles the ML deviance: refit by ML (numpy, from the REML theta)
            scale = np.maximum(np.abs(theta0), 0.1)
            th, _, _ = minimize_smooth(self.dev_theta, theta0, scale=scale, gtol=1e-7)
            theta0 = self._canonical(th)
        self.theta_ml = theta0
        pc = pieces(theta0, self.ss)
        self.base = ml_profiled(pc, self.n)
        self.sigma_ml = float(np.sqrt(pc.r2 / self.n))
        self.beta_ml = pc.beta
        self.vcov_ml = self.sigma_ml ** 2 * pc.vcov_unscaled()
        self.sv_opt = self.theta_to_sv(theta0, self.sigma_ml)
        self.kind = _sd_cor_kinds(self.p_term) + ["sigma"]  # per sv entry

    # -- parameterisations ------------------------------------------------------------------
    def _canonical(self, theta):
        return normalize_theta(theta, self.p_term)

    def theta_to_sv(self, theta, sigma) -> np.ndarray:
        """theta -> (sd and correlation per theta entry, sigma); a correlation with a zero
        sd counts as 0."""
        out = []
        _, sds, cors = varcorr(factors_of(theta, self.p_term), sigma ** 2)
        for sd, cor in zip(sds, cors):
            out.extend(sd[i] if i == j else (cor[i, j] if sd[i] * sd[j] > 0 else 0.0)
                       for i, j in zip(*tril_positions(len(sd))))
        out.append(sigma)
        return np.array(out)

    def sv_to_theta(self, sv) -> np.ndarray | None:
        sigma = sv[-1]
        factors, pos = [], 0
        for p in self.p_term:
            if p == 1:
                factors.append(np.array([[sv[pos] / sigma]]))
                pos += 1
                continue
            sd = np.zeros(p)
            R = np.eye(p)
            for i, j in zip(*tril_positions(p)):
                if i == j:
                    sd[i] = sv[pos]
                else:
                    R[i, j] = R[j, i] = sv[pos]
                pos += 1
            try:
                Lc = np.linalg.cholesky(R)
            except np.linalg.LinAlgError:
                evals = np.linalg.eigvalsh(R)
                if evals.min() < -1e-10:
                    return None
                # semidefinite correlation: pivot-free LDL' through a tiny ridge
                Lc = np.linalg.cholesky(R + 1e-12 * np.eye(p))
            factors.append((sd[:, None] * Lc) / sigma)
        return theta_of(factors)

    # -- deviances ----------------------------------------------------------------------------
    def dev_theta(self, theta) -> float:
        """Profiled ML deviance at theta."""
        return ml_profiled(pieces(theta, self.ss), self.n)

    def dev_sv(self, sv) -> float:
        """ML deviance at (sd/cor, sigma) with beta profiled (lme4's devfun2)."""
        sigma = sv[-1]
        if not sigma > 0:
            return np.inf
        theta = self.sv_to_theta(sv)
        if theta is None:
            return np.inf
        pc = pieces(theta, self.ss)
        s2 = sigma * sigma
        return pc.ldL2 + pc.r2 / s2 + self.n * (LOG_2PI + np.log(s2))

    def dev_beta(self, theta, j, b) -> float:
        """ML deviance at theta with beta_j held at b (other betas and sigma profiled)."""
        pc = pieces(theta, self.ss)
        V = pc.vcov_unscaled()
        r2 = pc.r2 + (b - pc.beta[j]) ** 2 / V[j, j]
        return pc.ldL2 + self.n * (1.0 + LOG_2PI + np.log(r2 / self.n))

    # -- profiles of single parameters ---------------------------------------------------------
    def _sv_profile(self, i):
        """zeta(v) for sv entry i, warm-starting the free parameters from the closest solve."""
        free = [k for k in range(len(self.sv_opt)) if k != i]
        kinds = [self.kind[k] for k in free]
        scale = np.array([max(abs(self.sv_opt[k]), 1e-3) if self.kind[k] != "cor" else 1.0
                          for k in free])
        cache = {}  # v -> free solution

        def to_x(vals):
            # unconstrained coordinates: sd -> itself (the deviance is even in a term's sd when
            # the term has one coefficient; otherwise bounded via abs), cor -> atanh, sigma -> log
            out = []
            for v, kd, s in zip(vals, kinds, scale):
                if kd == "cor":
                    out.append(np.arctanh(np.clip(v, -1 + 1e-9, 1 - 1e-9)))
                elif kd == "sigma":
                    out.append(np.log(v))
                else:
                    out.append(v / s)
            return np.array(out)

        def from_x(x):
            out = []
            for z, kd, s in zip(x, kinds, scale):
                if kd == "cor":
                    out.append(np.tanh(z))
                elif kd == "sigma":
                    out.append(np.exp(z))
                else:
                    out.append(abs(z) * s)
            return np.array(out)

        def full(v, x):
            sv = np.empty(len(self.sv_opt))
            sv[i] = v
            sv[free] = from_x(x)
            return sv

        hinv = [None]

        def zeta(v):
            if cache:
                near = min(cache, key=lambda u: abs(u - v))
                x0 = cache[near]
            else:
                x0 = to_x(self.sv_opt[free])
            x, d, hinv[0] = minimize_smooth(lambda x: self.dev_sv(full(v, x)), x0,
                                            hess_inv0=hinv[0])
            cache[v] = x
            diff = max(d - self.base, 0.0)
            return float(np.sign(v - self.sv_opt[i]) * np.sqrt(diff))

        return zeta

    def _beta_profile(self, j):
        cache = {}
        scale = np.maximum(np.abs(self.theta_ml), 0.1)

        hinv = [None]

        def zeta(b):
            if cache:
                near = min(cache, key=lambda u: abs(u - b))
                th0 = cache[near]
            else:
                th0 = self.theta_ml
            th, d, hinv[0] = minimize_smooth(lambda th: self.dev_beta(th, j, b), th0,
                                             scale=scale, hess_inv0=hinv[0])
            cache[b] = th
            return float(np.sign(b - self.beta_ml[j]) * np.sqrt(max(d - self.base, 0.0)))

        return zeta

    # -- interval ends ---------------------------------------------------------------------------
    def _wald_se_sv(self):
        """Approximate standard errors of the sv parameters (for starting points)."""
        if hasattr(self, "_se_sv"):
            return self._se_sv
        x0 = self.sv_opt.copy()
        k = len(x0)
        h = 1e-3 * np.maximum(np.abs(x0), 1e-2)
        H = np.empty((k, k))
        np_err = np.seterr(invalid="ignore", over="ignore")
        f0 = self.dev_sv(x0)
        for a in range(k):
            for b in range(a, k):
                ea, eb = np.zeros(k), np.zeros(k)
                ea[a], eb[b] = h[a], h[b]
                if a == b:
                    H[a, a] = (self.dev_sv(x0 + ea) - 2 * f0 + self.dev_sv(x0 - ea)) / h[a] ** 2
                else:
                    H[a, b] = H[b, a] = (self.dev_sv(x0 + ea + eb) - self.dev_sv(x0 + ea - eb)
                                         - self.dev_sv(x0 - ea + eb)
                                         + self.dev_sv(x0 - ea - eb)) / (4 * h[a] * h[b])
        np.seterr(**np_err)
        try:
            cov = 2 * np.linalg.inv(H)
            se = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
        except np.linalg.LinAlgError:
            se = np.full(k, np.nan)
        fallback = np.where(np.array(self.kind) == "cor", 0.2, 0.2 * np.maximum(np.abs(x0), 1e-3))
        se = np.where(np.isfinite(se) & (se > 0), se, fallback)
        self._se_sv = se
        return se

    def solve_end(self, zeta, v0, se, target, lower=None, upper=None):
        """v with zeta(v) == target (target of the same sign as the side searched)."""
        side = np.sign(target)
        v_prev, z_prev = v0, 0.0
        v = v0 + target * se
        if lower is not None:
            v = max(v, lower)
        if upper is not None:
            v = min(v, upper)
        for _ in range(60):
            z = zeta(v)
            if abs(z - target) < ZETA_TOL:
                return v
            # at a bound and still inside: the interval reaches the bound
            at_bound = ((lower is not None and v <= lower and side < 0 and z > target)
                        or (upper is not None and v >= upper and side > 0 and z < target))
            if at_bound:
                return v
            slope = (z - z_prev) / (v - v_prev) if v != v_prev else np.nan
            if not np.isfinite(slope) or slope <= 0:  # zeta increases with v: fall back
                slope = 1.0 / se                      # to the Wald slope
            step = (target - z) / slope
            # keep steps sane: at most 3 Wald widths at once
            step = float(np.clip(step, -3 * abs(target) * se, 3 * abs(target) * se))
            v_prev, z_prev = v, z
            v = v + step
            if lower is not None and v < lower:
                v = lower
            if upper is not None and v > upper:
                v = upper
        raise BayesmixError(f"profile interval did not converge (target zeta {target:g})")

    def interval_sv(self, i, level):
        z = stats.norm.ppf(0.5 + level / 2)
        se = self._wald_se_sv()[i]
        kd = self.kind[i]
        v0 = self.sv_opt[i]
        lo_b, hi_b = {"sd": (0.0, None), "cor": (-1.0, 1.0), "sigma": (1e-12, None)}[kd]
        zeta = self._sv_profile(i)
        lo = self.solve_end(zeta, v0, se, -z, lower=lo_b, upper=hi_b)
        zeta = self._sv_profile(i)
        hi = self.solve_end(zeta, v0, se, z, lower=lo_b, upper=hi_b)
        return lo, hi

    def interval_beta(self, j, level):
        z = stats.norm.ppf(0.5 + level / 2)
        se = float(np.sqrt(self.vcov_ml[j, j]))
        v0 = float(self.beta_ml[j])
        zeta = self._beta_profile(j)
        lo = self.solve_end(zeta, v0, se, -z)
        zeta = self._beta_profile(j)
        hi = self.solve_end(zeta, v0, se, z)
        return lo, hi


class GlmmProfileProblem(ProfileProblem):
    """The Laplace deviance of a glmer fit in lme4's profiling parameterisation: the SDs and
    correlations of the random effects (no sigma) and the fixed effects, profiled jointly
    (lme4's devfun2 for GLMMs, nAGQ = 1)."""

    FAMILIES = ("binomial", "bernoulli", "poisson")

    def __init__(self, fit):
        from ..lmm.laplace import laplace
        prob = fit.problem
        if prob.family not in self.FAMILIES:
            raise BayesmixError(
                f"profile intervals for glmer fits need a family without a scale or shape "
                f"parameter (binomial, poisson), as in lme4; this fit is {prob.family}: use "
                "confint(method='Wald') or method='boot'")
        self._laplace = laplace
        self.fit, self.prob = fit, prob
        self.p_term = [t.p for t in prob.terms]
        self._u = None
        est = fit.estimates
        sv0 = self.theta_to_sv(np.asarray(est.theta, float), 1.0)[:-1]
        self.nsv = len(sv0)
        self.kind = _sd_cor_kinds(self.p_term) + ["beta"] * prob.p
        se_beta = np.asarray(est.se, float)
        self.scale = np.array([max(abs(v), 1e-2) if k == "sd" else 1.0
                               for v, k in zip(sv0, self.kind)] + list(np.maximum(se_beta, 1e-8)))
        w0 = np.concatenate([sv0, np.asarray(est.beta, float)])
        # polish the optimum in this parameterisation (the base of the signed root deviance)
        x, d, _ = minimize_smooth(lambda x: self.dev_full(self._from_x(x, range(len(w0)))),
                                  self._to_x(w0, range(len(w0))))
        self.w_opt = self._from_x(x, range(len(w0)))
        self.base = min(d, self.dev_full(w0))
        if d > self.dev_full(w0):
            self.w_opt = w0
        self.sv_opt = self.w_opt  # solve_end / _wald_se_sv work on the joint vector

    def _to_x(self, vals, idx):
        out = []
        for v, k in zip(vals, idx):
            if self.kind[k] == "cor":
                out.append(np.arctanh(np.clip(v, -1 + 1e-9, 1 - 1e-9)))
            else:
                out.append(v / self.scale[k])
        return np.array(out)

    def _from_x(self, x, idx):
        out = []
        for z, k in zip(x, idx):
            if self.kind[k] == "cor":
                out.append(np.tanh(z))
            elif self.kind[k] == "sd":
                out.append(abs(z) * self.scale[k])
            else:
                out.append(z * self.scale[k])
        return np.array(out)

    def dev_full(self, w) -> float:
        theta = self.sv_to_theta(np.append(w[:self.nsv], 1.0))
        if theta is None:
            return np.inf
        try:
            lap = self._laplace(self.prob, w[self.nsv:], theta, u0=self._u)
        except (np.linalg.LinAlgError, FloatingPointError):
            return np.inf
        if not np.isfinite(lap.loglik):
            return np.inf
        self._u = lap.u
        return float(lap.deviance)

    dev_sv = dev_full  # the Hessian for starting steps (_wald_se_sv) is in the joint vector

    def _joint_profile(self, i):
        free = [k for k in range(len(self.w_opt)) if k != i]
        cache = {}
        hinv = [None]

        def full(v, x):
            w = np.empty(len(self.w_opt))
            w[i] = v
            w[free] = self._from_x(x, free)
            return w

        def zeta(v):
            if cache:
                near = min(cache, key=lambda u: abs(u - v))
                x0 = cache[near]
            else:
                x0 = self._to_x(self.w_opt[free], free)
            x, d, hinv[0] = minimize_smooth(lambda x: self.dev_full(full(v, x)), x0,
                                            hess_inv0=hinv[0])
            cache[v] = x
            return float(np.sign(v - self.w_opt[i]) * np.sqrt(max(d - self.base, 0.0)))

        return zeta

    def interval(self, i, level):
        z = stats.norm.ppf(0.5 + level / 2)
        se = self._wald_se_sv()[i]
        kd = self.kind[i]
        lo_b, hi_b = {"sd": (0.0, None), "cor": (-1.0, 1.0), "beta": (None, None)}[kd]
        v0 = self.w_opt[i]
        lo = self.solve_end(self._joint_profile(i), v0, se, -z, lower=lo_b, upper=hi_b)
        hi = self.solve_end(self._joint_profile(i), v0, se, z, lower=lo_b, upper=hi_b)
        return lo, hi


def _check(fit):
    if getattr(fit, "kind", None) not in ("lmer", "glmer"):
        raise BayesmixError("profile confidence intervals are implemented for lmer and glmer "
                            f"fits; got {type(fit).__name__}: use method='Wald'")


def select_parm(fit, parm) -> list[str]:
    names = varpar_names(fit) + list(fit.design.X_names)
    nv = len(varpar_names(fit))
    if parm is None:
        return names
    if isinstance(parm, str):
        if parm == "theta_":
            return names[:nv]
        if parm == "beta_":
            return names[nv:]
        parm = [parm]
    out = []
    for p in parm:
        if isinstance(p, (int, np.integer)):
            out.append(names[int(p)])
        elif p in names:
            out.append(p)
        else:
            raise BayesmixError(f"unknown parameter {p!r} for confint(); choose among "
                                f"{', '.join(names)} (or 'theta_', 'beta_')")
    return out


def profile_confint(fit, level: float = 0.95, parm=None) -> pd.DataFrame:
    """lme4's confint(fit, method = "profile", oldNames = FALSE) for an lmer fit."""
    _check(fit)
    if not 0 < level < 1:
        raise BayesmixError(f"level must be between 0 and 1, got {level}")
    from ..optimizer import one_blas_thread
    rows = select_parm(fit, parm)
    vnames = varpar_names(fit)
    xnames = list(fit.design.X_names)
    lo_col, hi_col = f"{50 * (1 - level):g} %", f"{100 - 50 * (1 - level):g} %"
    with one_blas_thread():
        if fit.kind == "glmer":
            prob = GlmmProfileProblem(fit)
            allnames = vnames + xnames
            out = [prob.interval(allnames.index(name), level) for name in rows]
            return pd.DataFrame(np.array(out, dtype=float).reshape(-1, 2), index=rows,
                                columns=[lo_col, hi_col])
        prob = ProfileProblem(fit)
        out = []
        for name in rows:
            if name in vnames:
                out.append(prob.interval_sv(vnames.index(name), level))
            else:
                out.append(prob.interval_beta(xnames.index(name), level))
    return pd.DataFrame(np.array(out, dtype=float).reshape(-1, 2), index=rows,
                        columns=[lo_col, hi_col])
