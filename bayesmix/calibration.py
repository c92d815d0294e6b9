"""Simulation-based calibration (Talts et al. 2018) of a model's Bayesian fit.

For each simulation: parameters drawn from the prior, a response simulated from them, the
posterior sampled with NUTS on the same program the model would use (the marginal program for
gaussian mixed models, the generic joint program otherwise), and for every parameter the rank
of its true value among L thinned posterior draws. When the program computes the posterior
correctly, every parameter's ranks are uniform on 0..L; a skewed, humped or U-shaped histogram
points at a wrong likelihood, prior or transform.

The prior draws and their simulated responses come from one ``prior_only`` run of the program
(Stan's NUTS on the prior alone, thinned so the draws are nearly independent). Default priors
in bayesmix scale with the data; SBC needs the *same* prior for every simulated data set, so
the priors in effect for the model's own data are frozen (written out explicitly) first. A
flat prior cannot be calibrated: give proper priors for every class.

Randomness: ``SeedSequence(seed).spawn(n_sims + 1)``: child i seeds simulation i's NUTS run,
child ``n_sims`` the prior run; ranks are identical on every executor.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .errors import BayesmixError
from .parallel import run_tasks, spawn_seeds, stan_seed

__all__ = ["sbc", "SbcResult", "rank_uniformity"]


def _frozen_priors(model) -> tuple:
    """Every prior in effect for the model's data, as explicit prior() objects."""
    from .priors import prior, prior_summary
    table = prior_summary(model.design, model.priors)
    out = []
    for r in table.itertuples(index=False):
        if str(r.prior).strip() in ("flat", "(flat)", ""):
            raise BayesmixError(f"sbc needs proper priors: class {r._1!r} {r.coef or ''} has a "
                                "flat prior; give it one with bayesmix.prior(...)")
        out.append(prior(r.prior, cls=r._1, coef=r.coef or None, group=r.group or None))
    return tuple(out)


def _flatten(design, named, which: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Scalar parameter names and their draws (S, K) from a NamedDraws, named as az.summary
    labels the InferenceData (``Intercept``, ``sd(1|g)``, ``1|g[g0]``; docs/results.md);
    `which` selects families of the internal arrays (``b``, ``sd``, ``cor``, ``r``, ``sigma``)."""
    from .bayes.idata import readable_draws
    keep = {var: arr for var, arr in named.posterior.items()
            if which is None or any(var == w or var.startswith(w + "_") for w in which)}
    rd = readable_draws(design, replace(named, posterior=keep))
    names, cols = [], []
    for var, arr in rd.variables.items():
        dims = rd.dims.get(var, [])
        a = np.asarray(arr)
        a = a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])
        if not dims:
            names.append(var)
            cols.append(a.reshape(-1, 1))
            continue
        coords = [rd.coords[d] for d in dims]
        for idx in np.ndindex(*[len(c) for c in coords]):
            label = ",".join(str(c[i]) for c, i in zip(coords, idx))
            names.append(f"{var}[{label}]")
        cols.append(a.reshape(a.shape[0], -1))
    return names, np.concatenate(cols, axis=1) if cols else np.zeros((0, 0))


def _sbc_task(shared, item):
    design, priors, kwargs, names, params = shared
    child, y, truth = item
    from .bayes.sampling import sample_posterior
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = sample_posterior(replace(design, y=np.asarray(y, float)), priors,
                                   seed=stan_seed(child), show_progress=False,
                                   diagnostics=False, save_log_lik=False, save_y_rep=False,
                                   **kwargs)
            got, draws = _flatten(design, fit.named_draws(), params)
        if got != names:
            return None, -1, f"parameter names differ from the prior run's: {got[:3]}..."
        ranks = (draws < np.asarray(truth)[None, :]).sum(axis=0)
        div = fit.cmdstan_fit.method_variables().get("divergent__")
        n_div = int(np.sum(div)) if div is not None else 0
        return ranks.astype(np.int64), n_div, "; ".join(str(w.message) for w in caught)
    except Exception as exc:
        return None, -1, f"{type(exc).__name__}: {exc}"


def rank_uniformity(ranks: pd.DataFrame, max_rank: int, bins: int | None = None) -> pd.DataFrame:
    """Chi-square test of uniform ranks on 0..max_rank per parameter (ranks grouped into
    `bins` bins, expected counts from each bin's share of rank values; default about five
    expected ranks per bin). Columns: chisq, df, p_value."""
    n = len(ranks)
    L1 = max_rank + 1
    if bins is None:
        bins = int(max(2, min(L1, n // 5)))
    edges = np.floor(np.arange(L1) * bins / L1).astype(int)  # bin of each rank value
    share = np.bincount(edges, minlength=bins) / L1
    rows = []
    for col in ranks.columns:
        r = ranks[col].dropna().to_numpy().astype(int)
        obs = np.bincount(edges[r], minlength=bins)
        exp = share * len(r)
        chisq = float(((obs - exp) ** 2 / exp).sum())
        rows.append((chisq, bins - 1, float(stats.chi2.sf(chisq, bins - 1))))
    return pd.DataFrame(rows, index=ranks.columns, columns=["chisq", "df", "p_value"])


@dataclass(eq=False)
class SbcResult:
    """Ranks of the true values (one row per simulation, one column per parameter; NaN rows
    for failed fits), the true values, per-simulation divergences and failure messages."""

    ranks: pd.DataFrame
    truth: pd.DataFrame
    max_rank: int
    divergences: np.ndarray
    messages: dict
    seed: Any
    elapsed: float = 0.0
    program: str = ""  # the program that ran: "marginal", "generic" or "generated"

    @property
    def n_sims(self) -> int:
        return len(self.ranks)

    @property
    def n_failed(self) -> int:
        return int(self.ranks.isna().all(axis=1).sum())

    def uniformity(self, bins: int | None = None) -> pd.DataFrame:
        """Per parameter: chi-square statistic, df and p-value of uniform ranks."""
        return rank_uniformity(self.ranks, self.max_rank, bins)

    def histogram(self, bins: int | None = None) -> pd.DataFrame:
        """Rank counts per bin (rows: parameters)."""
        L1 = self.max_rank + 1
        bins = bins or int(max(2, min(L1, self.n_sims // 5)))
        edges = np.floor(np.arange(L1) * bins / L1).astype(int)
        return pd.DataFrame({c: np.bincount(edges[self.ranks[c].dropna().to_numpy().astype(int)],
                                            minlength=bins) for c in self.ranks.columns}).T

    def _head(self) -> str:
        return (f"SBC: {self.n_sims} simulations ({self.program} program), ranks "
                f"0..{self.max_rank}, failed fits "
                f"{self.n_failed}, divergent transitions {int(self.divergences.clip(0).sum())}")

    def __repr__(self) -> str:
        return self._head() + "\n" + self.uniformity().to_string(
            float_format=lambda v: f"{v:.4g}")

    def _repr_html_(self) -> str:
        from .results.format import html_with_table
        return html_with_table(self._head(), self.uniformity(), lambda v: f"{v:.4g}")


def sbc(model, n_sims: int, executor: Any = None, seed: Any = None, *, n_draws: int = 19,
        thin: int = 10, chains: int = 1, iter_warmup: int = 200, prior_thin: int = 10,
        program: str = "auto", params: list[str] | None = None, progress: bool | None = None,
        **sample_kwargs: Any) -> SbcResult:
    """Simulation-based calibration of ``model``'s NUTS fit (see the module docstring).

    n_draws: posterior draws per fit after thinning (ranks run 0..n_draws); a fit samples
    ``n_draws * thin / chains`` iterations per chain after ``iter_warmup``. prior_thin: keep
    every prior_thin-th draw of the prior run. params: parameter families to rank (e.g.
    ["b", "sd", "sigma"]; default all: b, sd_*, cor_*, r_*, sigma/phi/shape); the result's
    columns are named as az.summary labels the InferenceData (``Intercept``, ``sd(1|g)``,
    ``1|g[g0]``; docs/results.md). Other keyword arguments go to the sampler (adapt_delta,
    ...). executor and seed as bayesmix.bootstrap."""
    from .bayes.sampling import sample_posterior
    t_start = time.perf_counter()
    n_sims = int(n_sims)
    if n_sims < 2:
        raise BayesmixError("sbc needs at least 2 simulations")
    if (n_draws * thin) % chains:
        raise BayesmixError("n_draws * thin must be a multiple of chains")
    priors = _frozen_priors(model)
    design = model.design
    children = spawn_seeds(seed, n_sims + 1)
    kwargs = dict(program=program, **sample_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior_fit = sample_posterior(design, priors, prior_only=True, chains=1,
                                     iter_warmup=max(iter_warmup, 200),
                                     iter_sampling=n_sims * prior_thin,
                                     seed=stan_seed(children[-1]), show_progress=False,
                                     diagnostics=False, save_log_lik=False, save_y_rep=True,
                                     **kwargs)
    names, truth = _flatten(design, prior_fit.named_draws(), params)
    truth = truth[prior_thin - 1::prior_thin][:n_sims]
    y_rep = np.asarray(prior_fit.draws("y_rep"))
    y_rep = y_rep.reshape(-1, y_rep.shape[-1])[prior_thin - 1::prior_thin][:n_sims]
    fit_kwargs = dict(kwargs, chains=chains, iter_warmup=iter_warmup,
                      iter_sampling=n_draws * thin // chains, thin=thin)
    shared = (design, priors, fit_kwargs, names, params)
    items = [(children[i], y_rep[i], truth[i]) for i in range(n_sims)]
    out = run_tasks(_sbc_task, shared, items, executor=executor, progress=progress,
                    desc="SBC fits")
    ranks = np.full((n_sims, len(names)), np.nan)
    div = np.full(n_sims, -1)
    messages = {}
    for i, (r, d, msg) in enumerate(out):
        if r is not None:
            ranks[i] = r
        div[i] = d
        if msg:
            messages[i] = msg
    return SbcResult(ranks=pd.DataFrame(ranks, columns=names),
                     truth=pd.DataFrame(truth, columns=names), max_rank=n_draws,
                     divergences=div, messages=messages, seed=seed,
                     elapsed=time.perf_counter() - t_start,
                     program=getattr(prior_fit, "program_kind", ""))
