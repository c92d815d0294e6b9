"""Fully Bayesian fits: run NUTS on the joint program and read the posterior
under lme4's names (fixef, ranef, coef, varcorr, sigma, summary, to_arviz)."""

from __future__ import annotations

import html
import logging
import math
import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import BayesmixError
from ..plots import PlotMixin
from ..priors import Prior, prior_summary, slope_names
from ..registry import EXPORT, operation
from ..stancode import JointProgram, joint_program
from .diagnostics import Diagnostics, diagnose, warn_diagnostics
from .idata import NamedDraws, named_draws, to_inference_data

METRICS = ("diag_e", "dense_e")


def sample_program(fit_class, design, priors, program, data, *, inits, engine: str,
                   diagnostics: bool, **sampler: Any):
    """The steps every NUTS method shares: compile `program` (cached), sample `data`,
    wrap the run in `fit_class` and warn about what the diagnostics find."""
    from ..engine import compile_model
    start = time.perf_counter()
    model = compile_model(program.code, program.name, engine)
    compile_seconds = time.perf_counter() - start
    run = model.sample(data, inits=inits, **sampler)
    fit = fit_class(design, priors, run, program, data, compile_seconds=compile_seconds,
                    inits=inits)
    if diagnostics:
        warn_diagnostics(fit.diagnostics())
    return fit


# ---------------------------------------------------------------- helpers


def check_sampler_args(chains: int, iter_warmup: int, iter_sampling: int, thin: int,
                       adapt_delta: float, metric: str) -> None:
    """Fail before compiling on arguments NUTS cannot take."""
    if chains < 1 or iter_sampling < 1 or iter_warmup < 0 or thin < 1:
        raise BayesmixError("chains, iter_sampling and thin must be >= 1, iter_warmup >= 0")
    if not 0 < adapt_delta < 1:
        raise BayesmixError(f"adapt_delta must be in (0, 1), got {adapt_delta}")
    if metric not in METRICS:
        raise BayesmixError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def _label(name: str) -> str:
    """brms-style label: (Intercept) -> Intercept."""
    return "Intercept" if name == "(Intercept)" else name


def _qcols(probs: Sequence[float]) -> list[str]:
    return [f"Q{100 * p:g}" for p in probs]


def _summarise(arr: np.ndarray, probs: Sequence[float], robust: bool = False) -> list[float]:
    flat = np.asarray(arr, dtype=float).reshape(-1)
    if robust:
        center = float(np.median(flat))
        spread = float(1.4826 * np.median(np.abs(flat - center)))
    else:
        center, spread = float(flat.mean()), float(flat.std(ddof=1)) if flat.size > 1 else 0.0
    return [center, spread] + [float(q) for q in np.quantile(flat, probs)]


def _convergence(arr: np.ndarray) -> tuple[float, float, float]:
    """(R-hat, bulk ESS, tail ESS) of one scalar's (chain, draw) array."""
    import arviz as az
    a = np.asarray(arr, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return (float(az.rhat(a)), float(az.ess(a, method="bulk")),
                    float(az.ess(a, method="tail")))
        except Exception:
            return (np.nan, np.nan, np.nan)


def _decimals(values: np.ndarray, base: int = 2) -> int:
    vals = np.abs(np.asarray(values, dtype=float))
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if vals.size == 0:
        return base
    need = 1 - math.floor(math.log10(vals.min()))  # two significant digits of the smallest
    return int(min(max(base, need), 6))


def _table_text(df: pd.DataFrame) -> str:
    if df.empty:
        return "(none)"
    num = ["Estimate", "Est.Error"] + [c for c in df.columns if "CI" in c]
    dec = _decimals(df[["Estimate", "Est.Error"]].to_numpy())
    out = pd.DataFrame(index=df.index)
    for c in df.columns:
        v = df[c]
        if c in num:
            out[c] = [f"{x:.{dec}f}" for x in v]
        elif c == "Rhat":
            out[c] = [f"{x:.2f}" if np.isfinite(x) else "NA" for x in v]
        else:
            out[c] = [f"{x:.0f}" if np.isfinite(x) else "NA" for x in v]
    return out.to_string()


# ---------------------------------------------------------------- result


class PosteriorFit(PlotMixin):
    """A NUTS fit of the joint program: the design, the priors, the Stan run,
    the program and its data, and lme4-named accessors of the posterior."""

    kind = "nuts"
    program_kind = "generated"  # the per-formula program (generic / marginal: subclasses)
    fallback = None             # why the generated program ran (generic.Fallback), if it did

    def __init__(self, design, priors: Sequence[Prior], run, program: JointProgram,
                 stan_data: dict, compile_seconds: float = float("nan"),
                 inits: dict | None = None):
        self.design = design
        self.priors = tuple(priors)
        self.run = run
        self.program = program
        self.stan_data = stan_data
        self.compile_seconds = compile_seconds
        self.inits = inits

    # -- reproducible bundles (bayesmix.export) ------------------------------
    def export(self, path: str) -> str:
        """Write a reproducible Stan bundle (see bayesmix.export)."""
        return operation(EXPORT)(self, path)

    def export_meta(self) -> dict:
        centered = [t.group for t, shape in zip(self.design.terms,
                                                 self.program.structure.terms) if shape.centered]
        return {"priors": [p.to_dict() for p in self.priors], "centered": centered,
                "inits": self.inits}

    @classmethod
    def from_export(cls, design, meta: dict, run, stan_data: dict) -> "PosteriorFit":
        from ..priors import prior
        priors = tuple(prior(**p) for p in meta["priors"])
        program = joint_program(design, priors, centered=meta["centered"])
        return cls(design, priors, run, program, stan_data, inits=meta["inits"])

    # -- raw access ----------------------------------------------------------
    @property
    def stan_code(self) -> str:
        """The program, headed by the formula and the Stan <-> lme4 names."""
        return self.program.annotated

    @property
    def prior_only(self) -> bool:
        return bool(self.stan_data.get("prior_only", 0))

    @cached_property
    def cmdstan_fit(self):
        """The run as cmdstanpy's CmdStanMCMC."""
        from cmdstanpy.utils import get_logger
        log = get_logger()  # creates cmdstanpy's handler first, so our level sticks
        level = log.level
        log.setLevel(logging.ERROR)  # its convergence notes: ours come from diagnostics()
        try:
            return self.run.fit()
        finally:
            log.setLevel(level)

    @property
    def chains(self) -> int:
        return int(self.cmdstan_fit.chains)

    @property
    def ndraws(self) -> int:
        """Post-warmup draws per chain."""
        return int(self.cmdstan_fit.num_draws_sampling)

    def draws(self, name: str) -> np.ndarray:
        """A Stan variable's draws as ``(chain, draw, *shape)``."""
        cf = self.cmdstan_fit
        try:
            a = np.asarray(cf.stan_variable(name))
        except ValueError:
            if name == "b":  # a size-0 vector (no slopes) is not in Stan's CSV
                return np.zeros((self.chains, self.ndraws, len(slope_names(self.design))))
            raise BayesmixError(f"no Stan variable {name!r} in this fit") from None
        return a.reshape((self.chains, a.shape[0] // self.chains) + a.shape[1:])

    def named_draws(self) -> NamedDraws:
        return self._named

    @cached_property
    def _named(self) -> NamedDraws:
        return named_draws(self.design, self.draws)

    @cached_property
    def _idata(self):
        return to_inference_data(self)

    include_prior = False  # Model.sample(prior_draws=True) sets it: to_arviz adds `prior`

    def to_arviz(self, prior: bool | None = None):
        """arviz.InferenceData: one readable variable per fixed effect, sd, correlation and
        family parameter, random effects with their factor's levels as a coordinate
        (docs/results.md, bayesmix.bayes.idata). prior=True adds a ``prior`` group of exact
        draws from the declared priors (`prior_draws`); by default it is there when the fit
        was asked for it (``model.sample(prior_draws=True)``)."""
        if not (self.include_prior if prior is None else prior):
            return self._idata
        draws = self.prior_draws()
        predictive = None
        if self.stan_data.get("save_y_rep", 0):  # as large as y_rep: only when that is kept
            from .priordraws import prior_predictive
            seed = int(self.run.args.get("seed", 0) or 0) + 2
            predictive = prior_predictive(self.design, draws, seed)
        return to_inference_data(self, prior=draws, prior_predictive=predictive)

    def prior_draws(self, seed: int | None = None) -> NamedDraws:
        """Exact draws from the declared priors (numpy, no sampler), as many as the fit
        has, under `named_draws`'s names; seeded from the run's seed unless given."""
        from .priordraws import prior_named_draws
        if seed is None:
            seed = int(self.run.args.get("seed", 0) or 0) + 1
        return prior_named_draws(self.design, self.priors, self.chains, self.ndraws, seed)

    def diagnostics(self) -> Diagnostics:
        """Divergences, R-hat, bulk/tail ESS, tree depth and E-BFMI of the run."""
        return self._diagnostics

    @cached_property
    def _diagnostics(self) -> Diagnostics:
        a = self.run.args
        return diagnose(self.to_arviz(), max_treedepth=int(a.get("max_depth", 10)),
                        adapt_delta=float(a.get("adapt_delta", 0.8)),
                        sampling_seconds=float(self.run.elapsed))

    def prior_summary(self) -> pd.DataFrame:
        return prior_summary(self.design, self.priors)

    def loo(self, **kwargs):
        """PSIS-LOO (arviz.loo) from the pointwise log-likelihood."""
        import arviz as az
        return az.loo(self.to_arviz(), **kwargs)

    # -- lme4-named accessors --------------------------------------------------
    def nobs(self) -> int:
        return self.design.n

    def ngrps(self) -> dict[str, int]:
        return {lay.group: len(lay.levels) for lay in self._named.layouts}

    def fixef(self, probs: Sequence[float] = (0.025, 0.975), robust: bool = False
              ) -> pd.DataFrame:
        """Population-level effects: Estimate (posterior mean; median if robust),
        Est.Error (sd; MAD if robust) and quantiles, indexed by lme4's names."""
        b = self._named.posterior["b"]
        rows = [_summarise(b[..., j], probs, robust) for j in range(b.shape[-1])]
        return pd.DataFrame(rows, index=list(self.design.X_names),
                            columns=["Estimate", "Est.Error", *_qcols(probs)])

    def confint(self, level: float = 0.95) -> pd.DataFrame:
        """Central posterior intervals of the fixed effects (the Bayesian confint)."""
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        table = self.fixef(probs=(lo, hi))
        return table.iloc[:, 2:]

    def ranef_draws(self, group: str):
        """Draws of one group's effects: xarray DataArray (chain, draw, level, coef)."""
        import xarray as xr
        lay = next(lay for lay in self._named.layouts if lay.group == self._check_group(group))
        r = self._named.posterior[f"r_{group}"]
        return xr.DataArray(r, dims=("chain", "draw", lay.level_dim, lay.coef_dim),
                            coords={"chain": np.arange(r.shape[0]),
                                    "draw": np.arange(r.shape[1]),
                                    lay.level_dim: list(lay.levels),
                                    lay.coef_dim: list(lay.coefs)}, name=f"r_{group}")

    def _check_group(self, group: str) -> str:
        groups = [lay.group for lay in self._named.layouts]
        if group not in groups:
            raise BayesmixError(f"no grouping factor {group!r}; the model has: "
                                f"{', '.join(map(repr, groups)) or '(none)'}")
        return group

    @staticmethod
    def _stat(arr: np.ndarray, stat: str | float) -> np.ndarray:
        flat = arr.reshape((-1,) + arr.shape[2:])
        if stat == "mean":
            return flat.mean(axis=0)
        if stat == "median":
            return np.median(flat, axis=0)
        if stat == "sd":
            return flat.std(axis=0, ddof=1)
        if isinstance(stat, (int, float)) and 0 <= stat <= 1:
            return np.quantile(flat, float(stat), axis=0)
        raise BayesmixError(f"stat must be 'mean', 'median', 'sd' or a probability, "
                            f"not {stat!r}")

    def ranef(self, stat: str | float = "mean") -> dict[str, pd.DataFrame]:
        """Group-level effects per grouping factor: levels x coefficients.

        stat: 'mean' (default), 'median', 'sd' or a probability (e.g. 0.025) for
        a posterior quantile. Draws: ranef_draws(group)."""
        out = {}
        for lay in self._named.layouts:
            r = self._named.posterior[f"r_{lay.group}"]
            out[lay.group] = pd.DataFrame(self._stat(r, stat), index=list(lay.levels),
                                          columns=list(lay.coefs))
        return out

    def coef(self, stat: str | float = "mean") -> dict[str, pd.DataFrame]:
        """Per group: fixed plus random effects for every level (lme4's coef()),
        summarised over draws with `stat` as in ranef()."""
        b = self._named.posterior["b"]
        names = list(self.design.X_names)
        out = {}
        for lay in self._named.layouts:
            r = self._named.posterior[f"r_{lay.group}"]
            cols = names + [c for c in lay.coefs if c not in names]
            total = np.zeros(r.shape[:3] + (len(cols),))
            total[..., :len(names)] = b[:, :, None, :]
            for m, c in enumerate(lay.coefs):
                if c in cols:
                    total[..., cols.index(c)] += r[..., m]
            out[lay.group] = pd.DataFrame(self._stat(total, stat), index=list(lay.levels),
                                          columns=cols)
        return out

    def sigma(self) -> float:
        """Posterior mean of the residual sd (gaussian); Gamma: of sqrt(1 / shape)
        (lme4's sigma); 1 for binomial, bernoulli, poisson and negbinomial."""
        post = self._named.posterior
        if "sigma" in post:
            return float(post["sigma"].mean())
        if "shape" in post:
            return float(np.sqrt(1.0 / post["shape"]).mean())
        return 1.0

    def varcorr(self, prob: float = 0.95) -> pd.DataFrame:
        """As R's as.data.frame(VarCorr(fit)): grp, var1, var2, vcov, sdcor as
        posterior means (of the variance/covariance and of the sd/correlation),
        lower / upper = the central `prob` interval of sdcor."""
        lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
        rows = []
        seen: dict[str, int] = {}
        for k, t in enumerate(self.design.terms, 1):
            n = seen.get(t.group, 0)
            grp = t.group if n == 0 else f"{t.group}.{n}"
            seen[t.group] = n + 1
            sd = self.draws(f"sd_{k}").reshape(-1, t.p)
            for m, c in enumerate(t.coef_names):
                s = sd[:, m]
                rows.append((grp, c, None, float((s ** 2).mean()), float(s.mean()),
                             float(np.quantile(s, lo)), float(np.quantile(s, hi))))
            if t.correlated and t.p > 1:
                cor = self.draws(f"Cor_{k}").reshape(-1, t.p, t.p)
                for j in range(t.p):
                    for i in range(j + 1, t.p):
                        c = cor[:, i, j]
                        cov = c * sd[:, i] * sd[:, j]
                        rows.append((grp, t.coef_names[j], t.coef_names[i], float(cov.mean()),
                                     float(c.mean()), float(np.quantile(c, lo)),
                                     float(np.quantile(c, hi))))
        post = self._named.posterior
        if "sigma" in post:
            s = post["sigma"].reshape(-1)
            rows.append(("Residual", None, None, float((s ** 2).mean()), float(s.mean()),
                         float(np.quantile(s, lo)), float(np.quantile(s, hi))))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor",
                                           "lower", "upper"])

    # -- predictions (bayesmix.bayes.predict) ---------------------------------
    def linpred(self, newdata: pd.DataFrame | None = None, re_form: Any = None,
                allow_new_levels: bool = False, sample_new_levels: Any = "gaussian",
                seed: int | None = None, ndraws: int | None = None, summary: bool = False,
                probs: Sequence[float] = (0.025, 0.975)):
        """Draws (n_draws, n_rows) of the linear predictor (link scale); a DataFrame
        of mean, sd and quantiles per row if summary. See bayesmix.bayes.predict."""
        from .predict import linpred_draws, maybe_summary
        d = linpred_draws(self, newdata, re_form, allow_new_levels, sample_new_levels, seed,
                          ndraws)
        return maybe_summary(self, d, newdata, summary, probs)

    def epred(self, newdata: pd.DataFrame | None = None, re_form: Any = None,
              allow_new_levels: bool = False, sample_new_levels: Any = "gaussian",
              seed: int | None = None, ndraws: int | None = None, trials: Any = None,
              summary: bool = False, probs: Sequence[float] = (0.025, 0.975)):
        """Draws of the expected response (binomial: the probability, or trials * p
        when trials is given). See bayesmix.bayes.predict."""
        from .predict import epred_draws, maybe_summary
        d = epred_draws(self, newdata, re_form, allow_new_levels, sample_new_levels, seed,
                        ndraws, trials)
        return maybe_summary(self, d, newdata, summary, probs)

    def predict(self, newdata: pd.DataFrame | None = None, re_form: Any = None,
                allow_new_levels: bool = False, sample_new_levels: Any = "gaussian",
                seed: int | None = None, ndraws: int | None = None, trials: Any = None,
                summary: bool = False, probs: Sequence[float] = (0.025, 0.975)):
        """Posterior predictive draws (observation noise added, seeded).
        See bayesmix.bayes.predict."""
        from .predict import maybe_summary, predict_draws
        d = predict_draws(self, newdata, re_form, allow_new_levels, sample_new_levels, seed,
                          ndraws, trials)
        return maybe_summary(self, d, newdata, summary, probs)

    def predictive_interval(self, prob: float = 0.9, newdata: pd.DataFrame | None = None,
                            **kwargs) -> pd.DataFrame:
        """Central intervals of the posterior predictive draws, one row per data row."""
        from .predict import predictive_interval
        return predictive_interval(self, prob, newdata, **kwargs)

    # -- printed summary -------------------------------------------------------
    convergence = True  # R-hat / ESS columns (MCMC); False for independent draws (laplace)
    inference_label = "Stan NUTS"

    def summary_lines(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """The summary's (draws/method header lines, footer lines, warnings) for this fit
        kind: here NUTS's draws, sampler settings, R-hat / ESS note and diagnostics."""
        a = self.run.args
        warmup, nsamp, thin = a.get("num_warmup"), a.get("num_samples"), a.get("thin", 1)
        draws = (
            f"  Draws: {self.chains} chains, each with iter = {warmup + nsamp}; "
            f"warmup = {warmup}; thin = {thin};",
            f"         total post-warmup draws = {self.chains * self.ndraws}",
            f"Sampler: NUTS, {self.run.engine.name} Stan {self.run.engine.stan_version}, "
            f"adapt_delta = {a.get('adapt_delta')}, seed = {a.get('seed')}, "
            f"{self.run.elapsed:.1f} s"
            + ("  [PRIOR ONLY: no likelihood]" if self.prior_only else ""),
        )
        footer = ("Draws were sampled using NUTS. Bulk_ESS and Tail_ESS are effective "
                  "sample sizes; Rhat is the",
                  "potential scale reduction factor on split chains (at convergence, "
                  "Rhat = 1).")
        return draws, footer, tuple(self.diagnostics().problems)

    def summary(self, prob: float = 0.95) -> "PosteriorSummary":
        return PosteriorSummary.of(self, prob)

    def __repr__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


@dataclass(frozen=True)
class PosteriorSummary:
    """brms-like summary: header, group-level, population-level and family parameters."""

    header: tuple[str, ...]
    random: dict                      # group label -> DataFrame
    fixed: pd.DataFrame
    family_pars: pd.DataFrame
    notes: tuple[str, ...]
    footer: tuple[str, ...] = ()

    @classmethod
    def of(cls, fit: PosteriorFit, prob: float = 0.95) -> "PosteriorSummary":
        lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
        pct = f"{100 * prob:g}"
        conv = fit.convergence
        cols = ["Estimate", "Est.Error", f"l-{pct}% CI", f"u-{pct}% CI"] + (
            ["Rhat", "Bulk_ESS", "Tail_ESS"] if conv else [])

        def row(arr):
            m, s, ql, qh = _summarise(arr, (lo, hi))
            return [m, s, ql, qh, *(_convergence(arr) if conv else ())]

        d = fit.design
        post = fit.named_draws().posterior
        random = {}
        for lay in fit.named_draws().layouts:
            rows, index = [], []
            sd = post[f"sd_{lay.group}"]
            for m, c in enumerate(lay.coefs):
                rows.append(row(sd[..., m]))
                index.append(f"sd({_label(c)})")
            if lay.pairs:
                cor = post[f"cor_{lay.group}"]
                for p, lab in enumerate(lay.pair_labels):
                    a, b = lab.split(", ", 1)
                    rows.append(row(cor[..., p]))
                    index.append(f"cor({_label(a)},{_label(b)})")
            key = f"~{lay.group} (Number of levels: {len(lay.levels)})"
            random[key] = pd.DataFrame(rows, index=index, columns=cols)
        b = post["b"]
        fixed = pd.DataFrame([row(b[..., j]) for j in range(b.shape[-1])],
                             index=[_label(n) for n in d.X_names], columns=cols)
        fam = [p for p in ("sigma", "phi", "shape") if p in post]
        family_pars = pd.DataFrame([row(post[p]) for p in fam], index=fam, columns=cols)

        links = [f"mu = {d.family.link}"] + [f"{p} = identity" for p in fam]
        draws, footer, notes = fit.summary_lines()
        header = (
            f" Family: {d.family.name}",
            f"  Links: {'; '.join(links)}",
            f"Formula: {d.formula.text.strip()}",
            f"   Data: {d.n} observations"
            + (f" ({d.dropped_na} rows with missing values dropped)" if d.dropped_na else ""),
            *draws,
        )
        return cls(header, random, fixed, family_pars, notes, footer)

    def _sections(self):
        if self.random:
            yield "Multilevel Hyperparameters:", None
            for key, df in self.random.items():
                yield key, df
        yield "Regression Coefficients:", self.fixed
        if not self.family_pars.empty:
            yield "Further Distributional Parameters:", self.family_pars

    def __str__(self) -> str:
        lines = list(self.header) + [""]
        for title, df in self._sections():
            lines.append(title)
            if df is not None:
                lines.append(_table_text(df))
                lines.append("")
        lines.extend(self.footer)
        for n in self.notes:
            lines.append(f"Warning: {n}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        parts = [f"<pre>{html.escape(chr(10).join(self.header))}</pre>"]
        for title, df in self._sections():
            parts.append(f"<p><b>{html.escape(title)}</b></p>")
            if df is not None:
                dec = _decimals(df[["Estimate", "Est.Error"]].to_numpy()) if len(df) else 2
                fmt = {c: (lambda x, d=dec: f"{x:.{d}f}") for c in df.columns[:4]}
                if "Rhat" in df.columns:
                    fmt["Rhat"] = lambda x: f"{x:.2f}"
                    fmt["Bulk_ESS"] = fmt["Tail_ESS"] = (
                        lambda x: f"{x:.0f}" if np.isfinite(x) else "NA")
                parts.append(df.to_html(formatters=fmt, border=0))
        parts += [f"<p style='color:#b00'>Warning: {html.escape(n)}</p>" for n in self.notes]
        return "\n".join(parts)


__all__ = ["PosteriorFit", "PosteriorSummary", "check_sampler_args", "sample_program"]
