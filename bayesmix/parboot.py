"""Parametric bootstrap of mixed fits (lme4's bootMer) and the parametric-bootstrap
likelihood-ratio test (pbkrtest's PBmodcomp).

Every replicate simulates a response from the fitted model with *new* random effects (lme4's
``simulate(use.u = FALSE)``: b ~ N(0, sigma^2 Lambda Lambda'), then the noise), refits the same
model to it and applies the statistic. Replicate i draws all of its randomness from the i-th
child of ``numpy.random.SeedSequence(seed).spawn(nsim)`` (its simulation and, for refits that
go through Stan, Stan's seed), so the table is bit-identical whatever executor runs it.

Refits of linear mixed models use `bayesmix.refit.LmmRefitter` (numpy and scipy, ~2-5 ms per
sleepstudy refit); ``refit="stan"`` sends every replicate through the Stan program instead
(~35 ms). glmer refits always go through the Stan program (one optimizer call per replicate,
~30-100 ms for cbpp-sized data), started from the original estimates.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats

from .errors import BayesmixError, user_stacklevel
from .lmm.theta import tril_positions
from .parallel import Portable, run_tasks, spawn_seeds, stan_seed
from .refit import LmmRefitter, default_names, simulate_lmm

__all__ = ["bootstrap", "BootstrapResult", "pb_modcomp", "PBModComp", "default_statistic",
           "norm_inter"]


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def default_statistic(fit: Any) -> pd.Series:
    """lme4's bootstrap statistic of confint(method = "boot"): SDs and correlations of every
    term (theta's order), sigma (families with a scale), then the fixed effects; named as
    confint(..., oldNames = FALSE) names them (``sd_(Intercept)|Subject``,
    ``cor_Days.(Intercept)|Subject``, ``sigma``, ``(Intercept)``, ...)."""
    if hasattr(fit, "default_statistic") and hasattr(fit, "_r"):  # a fast LmmRefit
        return pd.Series(fit.default_statistic(), index=list(fit._r.stat_names))
    est = fit.estimates
    vals = []
    for t, sd, cor in zip(fit.design.terms, est.varcorr_sd, est.varcorr_cor):
        vals.extend(sd[i] if i == j else cor[i, j] for i, j in zip(*tril_positions(t.p)))
    if getattr(fit, "has_scale", True):
        vals.append(fit.sigma())
    vals.extend(np.asarray(est.beta, float))
    return pd.Series(np.array(vals, dtype=float), index=default_names(fit))


# ---------------------------------------------------------------------------------------------
# Refitters: simulate(rng) -> y, refit(y, seed) -> fit with loglik()
# ---------------------------------------------------------------------------------------------


class _StanLmmRefitter:
    """Every replicate through the Stan program (bayesmix.ml.fit_lmer): the slow reference."""

    def __init__(self, fit: Any, reml: bool | None = None):
        from .lmm.suffstats import as_terms
        self.fit = fit
        self.reml = fit.reml if reml is None else bool(reml)
        d, est = fit.design, fit.estimates
        self._sim = (np.asarray(d.X, float), np.asarray(est.beta, float), as_terms(d.terms),
                     [np.asarray(T, float) for T in est.factors], float(fit.sigma()),
                     None if d.offset is None else np.asarray(d.offset, float))

    def simulate(self, rng):
        X, beta, terms, factors, sigma, offset = self._sim
        return simulate_lmm(X, beta, terms, factors, sigma, rng, offset)

    def refit(self, y, seed: int = 1):
        from .ml import fit_lmer
        return fit_lmer(replace(self.fit.design, y=np.asarray(y, float)), reml=self.reml,
                        seed=seed)


class _GlmmRefitter:
    """glmer replicates: the fit's own simulate(), then the Stan program from its estimates."""

    def __init__(self, fit: Any):
        self.fit = fit
        est = fit.estimates
        self.inits = {"beta": np.asarray(est.beta, float).tolist(),
                      "theta": np.asarray(est.theta, float).tolist(),
                      "log_phi": [float(np.log(est.phi))] if fit.problem.has_phi else []}

    def simulate(self, rng):
        return self.fit.simulate(1, seed=rng)[0]

    def refit(self, y, seed: int = 1):
        from .glmerfit import fit_glmer
        return fit_glmer(replace(self.fit.design, y=np.asarray(y, float)), seed=seed,
                         inits=self.inits)


def _refitter(fit: Any, refit: str, reml: bool | None = None):
    kind = getattr(fit, "kind", None)
    if kind == "lmer":
        if fit.design.weights is not None:
            raise NotImplementedError("bootstrap of weighted lmer fits is not supported")
        if refit == "fast":
            try:
                return LmmRefitter.from_fit(fit, reml=reml)
            except NotImplementedError as exc:  # too large for the dense fast path
                warnings.warn(f"{exc}; refitting through Stan instead (refit='stan')",
                              stacklevel=user_stacklevel())
                return _StanLmmRefitter(fit, reml=reml)
        if refit == "stan":
            return _StanLmmRefitter(fit, reml=reml)
        raise BayesmixError(f"unknown refit={refit!r}; choose 'fast' or 'stan'")
    if kind == "glmer" or hasattr(fit, "problem"):
        return _GlmmRefitter(fit)
    raise BayesmixError(f"bootstrap() needs an lmer or glmer fit, not {type(fit).__name__}")


def _one_replicate(refitter, child, statistic):
    """(values or None, converged, message) of one replicate, all randomness from child."""
    rng = np.random.default_rng(child)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = refitter.simulate(rng)
            fit = refitter.refit(y, seed=stan_seed(child))
            if statistic is None:
                values = (fit.default_statistic() if hasattr(fit, "_r")
                          else default_statistic(fit).to_numpy(dtype=float))
            else:
                values = _as_values(statistic(fit))
        converged = bool(getattr(fit, "converged", True))
        msgs = [str(w.message) for w in caught]
        if not converged and not msgs:
            msgs = ["the refit did not converge (max|gradient| above lme4's 2e-3)"]
        return values, converged and not msgs, "; ".join(msgs)
    except Exception as exc:  # a failed refit is recorded, as bootMer does
        return None, False, f"{type(exc).__name__}: {exc}"


def _as_values(out: Any) -> np.ndarray:
    if isinstance(out, pd.Series):
        return out.to_numpy(dtype=float)
    return np.atleast_1d(np.asarray(out, dtype=float)).ravel()


def _boot_task(shared, item):
    refitter, statistic = shared
    return _one_replicate(refitter, item, statistic)


# ---------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------


def norm_inter(t: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """boot's norm.inter: quantiles of the replicates by interpolation on the normal quantile
    scale between order statistics (what boot.ci's percentile and basic intervals use)."""
    t = np.sort(np.asarray(t, float)[np.isfinite(t)])
    R = len(t)
    if R == 0:
        return np.full(len(alpha), np.nan)
    alpha = np.asarray(alpha, float)
    rk = (R + 1) * alpha
    k = np.trunc(rk).astype(int)
    out = np.empty(len(alpha))
    for idx, (a, r, kk) in enumerate(zip(alpha, rk, k)):
        if kk == r and 1 <= kk <= R:
            out[idx] = t[kk - 1]
        elif kk <= 0:
            out[idx] = t[0]
        elif kk >= R:
            out[idx] = t[R - 1]
        else:
            z = stats.norm.ppf(a)
            z1 = stats.norm.ppf(kk / (R + 1))
            z2 = stats.norm.ppf((kk + 1) / (R + 1))
            tk, tk1 = t[kk - 1], t[kk]
            out[idx] = tk + (z - z1) / (z2 - z1) * (tk1 - tk)
    return out


@dataclass(eq=False)
class BootstrapResult:
    """Replicates of a parametric bootstrap (lme4's bootMer result).

    ``t0``: the statistic on the original fit; ``replicates``: one row per replicate (NaN for
    a refit that failed); ``converged``: per replicate, False when the refit warned or did not
    converge; ``messages``: replicate -> warning or error text; ``n_failed`` (errors, NaN rows)
    and ``n_warnings`` (refits kept with a convergence warning)."""

    t0: pd.Series
    replicates: pd.DataFrame
    converged: np.ndarray
    messages: dict
    seed: Any
    refit: str
    elapsed: float = 0.0
    executor: str = ""
    info: dict = field(default_factory=dict)

    @property
    def nsim(self) -> int:
        return len(self.replicates)

    @property
    def table(self) -> pd.DataFrame:
        return self.replicates

    @property
    def failed(self) -> np.ndarray:
        return self.replicates.isna().all(axis=1).to_numpy()

    @property
    def n_failed(self) -> int:
        return int(self.failed.sum())

    @property
    def n_warnings(self) -> int:
        return int((~self.converged & ~self.failed).sum())

    def bias(self) -> pd.Series:
        return self.replicates.mean() - self.t0

    def std_error(self) -> pd.Series:
        return self.replicates.std(ddof=1)

    def summary(self) -> pd.DataFrame:
        """boot's print: original, bias, std. error per statistic."""
        return pd.DataFrame({"original": self.t0, "bias": self.bias(),
                             "std. error": self.std_error()})

    def confint(self, level: float = 0.95, type: str = "perc") -> pd.DataFrame:
        """Bootstrap intervals per statistic, as lme4's confint(method = "boot") gives them
        (boot.ci): type "perc" (default; boot's norm.inter interpolation), "basic" or "norm";
        columns like ``2.5 %`` / ``97.5 %``."""
        if not 0 < level < 1:
            raise BayesmixError(f"level must lie in (0, 1), got {level}")
        a = np.array([(1 - level) / 2, (1 + level) / 2])
        lo, hi = f"{100 * a[0]:.3g} %", f"{100 * a[1]:.3g} %"
        rows = []
        for name in self.replicates.columns:
            t = self.replicates[name].to_numpy()
            t0 = float(self.t0[name])
            if type == "perc":
                rows.append(norm_inter(t, a))
            elif type == "basic":
                q = norm_inter(t, a[::-1])
                rows.append(2 * t0 - q)
            elif type == "norm":
                tt = t[np.isfinite(t)]
                z = stats.norm.ppf(a)
                bias = tt.mean() - t0
                rows.append(t0 - bias + z * tt.std(ddof=1))
            else:
                raise BayesmixError(f"unknown interval type {type!r}; choose 'perc', 'basic' "
                                    "or 'norm'")
        return pd.DataFrame(np.array(rows), index=list(self.replicates.columns),
                            columns=[lo, hi])

    def _head(self) -> str:
        return (f"Parametric bootstrap: {self.nsim} replicates ({self.refit} refits, "
                f"{self.executor}, {self.elapsed:.1f} s); failed refits: {self.n_failed}, "
                f"convergence warnings: {self.n_warnings}")

    def __repr__(self) -> str:
        return self._head() + "\n" + self.summary().to_string(
            float_format=lambda v: f"{v:.6g}")

    def _repr_html_(self) -> str:
        from .results.format import html_with_table
        return html_with_table(self._head(), self.summary(), lambda v: f"{v:.6g}")


# ---------------------------------------------------------------------------------------------
# bootstrap()
# ---------------------------------------------------------------------------------------------


def _executor_label(executor: Any) -> str:
    if executor is None:
        return "process pool"
    if executor in ("serial", 1):
        return "serial"
    if isinstance(executor, int):
        return f"process pool ({executor})"
    return type(executor).__name__


def bootstrap(fit: Any, nsim: int, statistic: Callable | None = None, seed: Any = None,
              executor: Any = None, refit: str = "fast", progress: bool | None = None,
              chunksize: int | None = None) -> BootstrapResult:
    """Parametric bootstrap of an lmer or glmer fit, like lme4's ``bootMer(fit, FUN, nsim,
    seed, use.u = FALSE, type = "parametric")``.

    statistic: ``statistic(refit) -> Series | array`` (default `default_statistic`: SDs and
    correlations, sigma, fixed effects under lme4's confint names). A refit of a linear mixed
    model is a light `bayesmix.refit.LmmRefit` with theta, fixef(), sigma(), loglik() and the
    full MixedFit's accessors on demand; glmer refits are GlmmFit objects.
    seed: int (or SeedSequence); replicate i uses child i of SeedSequence(seed).spawn(nsim),
    so the replicate table is identical on every executor. None draws fresh entropy.
    executor: None (a process pool over the machine's cores), "serial", a worker count, any
    concurrent.futures.Executor, or a Dask distributed.Client (see bayesmix.parallel).
    refit: "fast" (numpy profiled deviance + L-BFGS-B for lmer fits) or "stan" (Stan's
    optimizer for every replicate, much slower; glmer fits always use Stan)."""
    nsim = int(nsim)
    if nsim < 1:
        raise BayesmixError(f"nsim must be a positive integer, got {nsim}")
    t_start = time.perf_counter()
    refitter = _refitter(fit, refit)
    t0 = default_statistic(fit) if statistic is None else statistic(fit)
    if isinstance(t0, pd.Series):
        names = [str(i) for i in t0.index]
        t0 = pd.Series(t0.to_numpy(dtype=float), index=names)
    else:
        vals = _as_values(t0)
        t0 = pd.Series(vals, index=[f"t{i + 1}" for i in range(len(vals))])
    children = spawn_seeds(seed, nsim)
    stat = None if statistic is None else Portable(statistic)
    out = run_tasks(_boot_task, (refitter, stat), children, executor=executor,
                    chunksize=chunksize, progress=progress, desc="bootstrap refits")
    k = len(t0)
    table = np.full((nsim, k), np.nan)
    converged = np.zeros(nsim, dtype=bool)
    messages = {}
    for i, (values, ok, msg) in enumerate(out):
        if values is not None:
            if len(values) != k:
                messages[i] = f"statistic returned {len(values)} values, expected {k}"
                continue
            table[i] = values
        converged[i] = ok
        if msg:
            messages[i] = msg
    reps = pd.DataFrame(table, columns=list(t0.index))
    res = BootstrapResult(t0=t0, replicates=reps, converged=converged, messages=messages,
                          seed=seed, refit="stan" if kind_is_glmm(fit) else refit,
                          elapsed=time.perf_counter() - t_start,
                          executor=_executor_label(executor))
    if res.n_failed or res.n_warnings:
        warnings.warn(f"bootstrap: {res.n_failed} of {nsim} refits failed, {res.n_warnings} "
                      "gave convergence warnings (see .messages)", stacklevel=user_stacklevel())
    return res


def kind_is_glmm(fit: Any) -> bool:
    return getattr(fit, "kind", None) != "lmer"


# ---------------------------------------------------------------------------------------------
# PBmodcomp
# ---------------------------------------------------------------------------------------------


def _pb_task(shared, item):
    small, large = shared
    rng = np.random.default_rng(item)
    seed = stan_seed(item)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = small.simulate(rng)
            f0 = small.refit(y, seed=seed)
            f1 = large.refit(y, seed=seed)
            lrt = 2.0 * (f1.loglik() - f0.loglik())
        ok = bool(getattr(f0, "converged", True) and getattr(f1, "converged", True))
        msg = "; ".join(str(w.message) for w in caught)
        return float(lrt), ok and not msg, msg
    except Exception as exc:
        return float("nan"), False, f"{type(exc).__name__}: {exc}"


@dataclass(eq=False)
class PBModComp:
    """pbkrtest's PBmodcomp: the LRT with its chi-square and parametric-bootstrap p-values.

    ``p_value`` = (1 + #{LRT* >= LRT}) / (1 + n used); ``ref`` holds the LRT* of every
    replicate (NaN where a refit failed)."""

    stat: float
    df: int
    p_chisq: float
    p_value: float
    ref: np.ndarray
    converged: np.ndarray
    messages: dict
    seed: Any
    elapsed: float = 0.0

    @property
    def n_used(self) -> int:
        return int(np.isfinite(self.ref).sum())

    @property
    def n_extreme(self) -> int:
        r = self.ref[np.isfinite(self.ref)]
        return int((r >= self.stat).sum())

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"stat": [self.stat, self.stat], "df": [self.df, np.nan],
                             "p.value": [self.p_chisq, self.p_value]},
                            index=["LRT", "PBtest"])

    def _head(self) -> str:
        return (f"Bootstrap test; time: {self.elapsed:.2f} sec; samples: {len(self.ref)}; "
                f"extremes: {self.n_extreme}; used: {self.n_used}")

    def __repr__(self) -> str:
        return self._head() + "\n" + self.table().to_string(float_format=lambda v: f"{v:.6g}")

    def _repr_html_(self) -> str:
        from .results.format import html_with_table
        return html_with_table(self._head(), self.table(), lambda v: f"{v:.6g}")


def pb_modcomp(small: Any, large: Any, nsim: int = 1000, seed: Any = None,
               executor: Any = None, refit: str = "fast",
               progress: bool | None = None) -> PBModComp:
    """Parametric-bootstrap likelihood-ratio test of nested mixed fits (pbkrtest::PBmodcomp):
    simulate from the small model, refit both, p = (1 + #{LRT* >= LRT}) / (1 + N).

    Fits are compared by maximum likelihood; REML fits must be refitted by ML first (anova()
    does that). Replicate i uses child i of SeedSequence(seed).spawn(nsim)."""
    t_start = time.perf_counter()
    for f in (small, large):
        if getattr(f, "reml", False):
            raise BayesmixError("pb_modcomp compares maximum-likelihood fits; refit with "
                                "REML=False (anova(..., bootstrap=N) does this)")
    if large.df() < small.df():
        small, large = large, small
    stat = 2.0 * (large.loglik() - small.loglik())
    df = int(large.df() - small.df())
    r0, r1 = _refitter(small, refit, reml=False), _refitter(large, refit, reml=False)
    out = run_tasks(_pb_task, (r0, r1), spawn_seeds(seed, int(nsim)), executor=executor,
                    progress=progress, desc="PB refits")
    ref = np.array([o[0] for o in out])
    converged = np.array([o[1] for o in out], dtype=bool)
    messages = {i: o[2] for i, o in enumerate(out) if o[2]}
    good = ref[np.isfinite(ref)]
    p = (1.0 + float((good >= stat).sum())) / (1.0 + len(good))
    p_chisq = float(stats.chi2.sf(max(stat, 0.0), df)) if df > 0 else float("nan")
    return PBModComp(stat=float(stat), df=df, p_chisq=p_chisq, p_value=p, ref=ref,
                     converged=converged, messages=messages, seed=seed,
                     elapsed=time.perf_counter() - t_start)
