"""Sampler diagnostics after every NUTS fit, with advice when something is off.

Checks (thresholds of Vehtari et al. 2021 and Stan's own diagnose):
divergent transitions, rank-normalized split R-hat > 1.01, bulk and tail
ESS < 400 (< 100 per chain when running fewer than 4 chains), tree depth
saturation, and E-BFMI < 0.3. R-hat and ESS cover every posterior variable,
group-level effects included.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np

from ..threads import cores

RHAT_MAX = 1.01
ESS_MIN = 400
EBFMI_MIN = 0.3


class SamplingWarning(UserWarning):
    """A NUTS run whose draws should not be trusted as they stand."""


@dataclass(frozen=True)
class Diagnostics:
    chains: int
    draws: int                      # post-warmup draws per chain
    divergences: int
    max_treedepth: int
    treedepth_hits: int             # transitions that hit max_treedepth
    ebfmi: tuple[float, ...]        # per chain
    max_rhat: float
    max_rhat_param: str
    min_ess_bulk: float
    min_ess_bulk_param: str
    min_ess_tail: float
    min_ess_tail_param: str
    sampling_seconds: float         # wall time of the Stan run (warmup + sampling)
    adapt_delta: float
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def ess_bulk_per_second(self) -> float:
        return self.min_ess_bulk / self.sampling_seconds if self.sampling_seconds > 0 else np.nan

    def as_dict(self) -> dict:
        return {
            "chains": self.chains, "draws": self.draws, "divergences": self.divergences,
            "treedepth_hits": self.treedepth_hits, "max_treedepth": self.max_treedepth,
            "min_ebfmi": min(self.ebfmi) if self.ebfmi else np.nan,
            "max_rhat": self.max_rhat, "min_ess_bulk": self.min_ess_bulk,
            "min_ess_tail": self.min_ess_tail, "sampling_seconds": self.sampling_seconds,
            "min_ess_bulk_per_second": self.ess_bulk_per_second,
        }

    def __str__(self) -> str:
        n = self.chains * self.draws
        lines = [
            f"NUTS diagnostics: {self.chains} chains x {self.draws} draws, "
            f"{self.sampling_seconds:.1f} s",
            f"  divergent transitions: {self.divergences} of {n}",
            f"  max tree depth ({self.max_treedepth}) hit: {self.treedepth_hits} of {n}",
            "  E-BFMI per chain: " + ", ".join(f"{e:.2f}" for e in self.ebfmi),
            f"  max R-hat: {self.max_rhat:.3f} ({self.max_rhat_param})",
            f"  min bulk ESS: {self.min_ess_bulk:.0f} ({self.min_ess_bulk_param}), "
            f"{self.ess_bulk_per_second:.1f} per second",
            f"  min tail ESS: {self.min_ess_tail:.0f} ({self.min_ess_tail_param})",
        ]
        lines += [f"  problem: {p}" for p in self.problems] or ["  no problems found"]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html
        return f"<pre>{html.escape(str(self))}</pre>"


def _worst(ds, fn) -> tuple[float, str]:
    """The extreme value of a per-element statistic over a Dataset, with its name."""
    best_v, best_name = np.nan, ""
    for name, da in ds.data_vars.items():
        vals = np.asarray(da.values, dtype=float)
        if vals.size == 0 or np.all(np.isnan(vals)):
            continue
        flat = vals.reshape(-1)
        i = int(fn(np.where(np.isnan(flat), np.nan, flat)))
        v = float(flat[i])
        if np.isnan(best_v) or (fn is np.nanargmax and v > best_v) or \
                (fn is np.nanargmin and v < best_v):
            label = name
            if da.ndim:
                idx = np.unravel_index(i, da.shape)
                label += "[" + ", ".join(str(da.coords[d].values[j]) if d in da.coords else str(j)
                                         for d, j in zip(da.dims, idx)) + "]"
            best_v, best_name = v, label
    return best_v, best_name


def _split_chains(x: np.ndarray) -> np.ndarray:
    """(K, chain, draw) -> (K, 2 chain, draw // 2): first halves, then last halves
    (ArviZ's _split_chains; the middle draw of an odd count is dropped)."""
    half = x.shape[-1] // 2
    return np.concatenate([x[..., :half], x[..., x.shape[-1] - half:]], axis=1)


def _average_ranks(flat: np.ndarray) -> np.ndarray:
    """Twice the average ranks (1-based, ties averaged: scipy's rankdata
    method="average") of each row, as exact integers."""
    k, n = flat.shape
    order = np.argsort(flat, axis=1)
    srt = np.take_along_axis(flat, order, axis=1)
    twice = np.empty((k, n), dtype=np.int64)
    pos = np.arange(1, n + 1, dtype=np.int64)
    new = np.ones((k, n), dtype=bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    if new.all():
        np.put_along_axis(twice, order, 2 * pos[None, :], axis=1)
        return twice
    # tie groups over the flattened rows (each row starts a new group)
    starts = np.flatnonzero(new.ravel())
    ends = np.append(starts[1:], k * n) - 1
    first = starts % n + 1
    last = ends % n + 1
    group = np.cumsum(new.ravel()) - 1
    vals = (first + last)[group].reshape(k, n)
    np.put_along_axis(twice, order, vals, axis=1)
    return twice


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank-normalise each of K arrays over all its chains and draws (average
    ranks, Blom's offset 3/8): scipy's norm.ppf((r - 3/8) / (S + 1/4)),
    evaluated once per possible rank r = 1, 1.5, ..., S."""
    from scipy import special
    k = x.shape[0]
    flat = x.reshape(k, -1)
    size = flat.shape[1]
    c = 3 / 8
    table = special.ndtri((np.arange(2 * size + 1) / 2 - c) / (size - 2 * c + 1))
    return table[_average_ranks(flat)].reshape(x.shape)


def _rhat_core(x: np.ndarray) -> np.ndarray:
    """Split-R-hat formula of (K, chain, draw) arrays (ArviZ's _rhat)."""
    n = x.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        chain_mean = np.mean(x, axis=2)
        chain_var = np.var(x, axis=2, ddof=1)
        between = n * np.var(chain_mean, axis=1, ddof=1)
        within = np.mean(chain_var, axis=1)
        return np.sqrt((between / within + n - 1) / n)


def _ess_core(x: np.ndarray) -> np.ndarray:
    """ESS of (K, chain, draw) arrays: FFT autocovariances, Geyer's initial
    positive then monotone sequence (ArviZ's _ess, relative=False), all K at once."""
    x = np.asarray(x, dtype=float)
    k, m, n = x.shape
    out = np.full(k, np.nan)
    if k == 0:
        return out
    const = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))) < np.finfo(float).resolution
    nfft = _next_fast_len(2 * n)
    centred = x - x.mean(axis=2, keepdims=True)
    f = np.fft.rfft(centred, n=nfft, axis=2)
    f *= np.conjugate(f)
    acov = np.fft.irfft(f, n=nfft, axis=2)[..., :n]
    acov /= n
    chain_mean = x.mean(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_var = np.mean(acov[:, :, 0], axis=1) * n / (n - 1.0)
        var_plus = mean_var * (n - 1.0) / n
        if m > 1:
            var_plus = var_plus + np.var(chain_mean, axis=1, ddof=1)
        rho = 1.0 - (mean_var[:, None] - np.mean(acov, axis=1)) / var_plus[:, None]

    rho_t = np.zeros((k, n))
    rho_t[:, 0] = 1.0
    even = np.ones(k)
    odd = rho[:, 1].copy()
    rho_t[:, 1] = odd
    # Geyer's initial positive sequence: every K runs the same lags until its own stop
    t = np.ones(k, dtype=np.int64)
    active = np.ones(k, dtype=bool)
    tt = 1
    while tt < n - 3:
        active &= (even + odd) > 0.0
        if not active.any():
            break
        ne, no = rho[:, tt + 1], rho[:, tt + 2]
        even = np.where(active, ne, even)
        odd = np.where(active, no, odd)
        keep = active & ((ne + no) >= 0)
        rho_t[keep, tt + 1] = ne[keep]
        rho_t[keep, tt + 2] = no[keep]
        t[active] += 2
        tt += 2
    max_t = t - 2
    rows = np.arange(k)
    pos = even > 0
    rho_t[rows[pos], max_t[pos] + 1] = even[pos]
    # Geyer's initial monotone sequence
    tt = 1
    top = int(max_t.max())
    while tt <= top - 2:
        prev = rho_t[:, tt - 1] + rho_t[:, tt]
        fix = (tt <= max_t - 2) & ((rho_t[:, tt + 1] + rho_t[:, tt + 2]) > prev)
        rho_t[fix, tt + 1] = prev[fix] / 2.0
        rho_t[fix, tt + 2] = rho_t[fix, tt + 1]
        tt += 2
    total = m * n
    body = np.where(np.arange(n)[None, :] < (max_t + 1)[:, None], rho_t, 0.0).sum(axis=1)
    tau = -1.0 + 2.0 * body + rho_t[rows, max_t + 1]
    floor = 1 / np.log10(total)
    tau = np.where(floor > tau, floor, tau)     # Python's max(tau, floor): NaN stays NaN
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / tau
    out[np.isnan(rho_t).any(axis=1)] = np.nan
    out[const] = total
    return out


def _next_fast_len(n: int) -> int:
    from scipy.fft import next_fast_len
    return next_fast_len(n)


def _mquantile(flat: np.ndarray, p: float) -> np.ndarray:
    """R type 7 quantile of each row, with the arithmetic of scipy's mquantiles
    (alphap = betap = 1) that ArviZ uses."""
    x = np.sort(flat, axis=1)
    n = x.shape[1]
    p = np.atleast_1d(np.asarray(p))
    m = 1 + p * (1. - 1 - 1)
    aleph = n * p + m
    k = np.floor(aleph.clip(1, n - 1)).astype(int)
    gamma = (aleph - k).clip(0, 1)
    return (1. - gamma) * x[:, k[0] - 1] + gamma * x[:, k[0]]


def rhat_ess(x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat, bulk ESS and tail ESS of K scalars at once.

    `x` is (chain, draw, K). Returns three length-K arrays equal (to rounding in
    sums) to ArviZ 0.23's az.rhat (method "rank": max of bulk and folded),
    az.ess(method="bulk") and az.ess(method="tail") (min of the 5% and 95%
    quantile ESS) of each x[:, :, j]. NaN for parameters with a NaN draw, fewer
    than 4 draws, or (R-hat) fewer than 2 chains; constant parameters have NaN
    R-hat and ESS = 2 chain (draw // 2), as in ArviZ.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim != 3:
        raise ValueError("expected an array (chain, draw, K)")
    k = x.shape[2]
    workers = min(cores(), k // 256)
    if workers > 1:  # every scalar is on its own: split them over a thread per core (sorts
        # and FFTs release the GIL), e.g. the random effects of a large model
        from concurrent.futures import ThreadPoolExecutor
        parts = np.array_split(np.arange(k), workers)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            res = list(pool.map(lambda idx: _rhat_ess(x[:, :, idx]), parts))
        return tuple(np.concatenate([r[i] for r in res]) for i in range(3))
    return _rhat_ess(x)



def _rhat_ess(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chains, draws, k = x.shape
    rhat, bulk, tail = np.full(k, np.nan), np.full(k, np.nan), np.full(k, np.nan)
    if k == 0 or draws < 4 or chains < 1:
        return rhat, bulk, tail
    xk = np.ascontiguousarray(np.moveaxis(x, 2, 0))          # (K, chain, draw)
    bad = np.isnan(xk).any(axis=(1, 2))
    if bad.all():
        return rhat, bulk, tail
    if bad.any():
        xk = xk[~bad]
    split = _split_chains(xk)
    z = _z_scale(split)
    bulk_v = _ess_core(z)
    if chains >= 2:
        med = np.median(split.reshape(split.shape[0], -1), axis=1)
        zf = _z_scale(np.abs(split - med[:, None, None]))
        rb, rt = _rhat_core(z), _rhat_core(zf)
        rhat_v = np.where(rt > rb, rt, rb)                  # Python's max(bulk, tail)
    else:
        rhat_v = np.full(xk.shape[0], np.nan)
    flat = xk.reshape(xk.shape[0], -1)
    lo = _ess_core(_split_chains(xk <= _mquantile(flat, 0.05)[:, None, None]))
    hi = _ess_core(_split_chains(xk <= _mquantile(flat, 0.95)[:, None, None]))
    tail_v = np.where(hi < lo, hi, lo)                      # Python's min(lo, hi)
    ok = ~bad
    rhat[ok], bulk[ok], tail[ok] = rhat_v, bulk_v, tail_v
    return rhat, bulk, tail


def _posterior_rhat_ess(post):
    """az.rhat(post), az.ess(post, method="bulk"), az.ess(post, method="tail") as
    Datasets of the same variables, dims and coords, computed in one vectorised pass."""
    import xarray as xr
    chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    names, templates, blocks = [], [], []
    for name, da in post.data_vars.items():
        if "chain" not in da.dims or "draw" not in da.dims:
            continue
        vals = np.asarray(da.transpose("chain", "draw", ...).values, dtype=float)
        names.append(name)
        templates.append(da.isel(chain=0, draw=0, drop=True))
        blocks.append(vals.reshape(chains, draws, -1))
    x = np.concatenate(blocks, axis=2) if blocks else np.zeros((chains, draws, 0))
    stats = rhat_ess(x)
    out = []
    for s in stats:
        data, start = {}, 0
        for name, tmpl in zip(names, templates):
            size = int(np.prod(tmpl.shape, dtype=int))
            data[name] = tmpl.copy(data=s[start:start + size].reshape(tmpl.shape))
            start += size
        out.append(xr.Dataset(data))
    return tuple(out)


def diagnose(idata, *, max_treedepth: int = 10, adapt_delta: float = 0.8,
             sampling_seconds: float = float("nan")) -> Diagnostics:
    """Diagnostics of an InferenceData with `posterior` and `sample_stats` groups."""
    import arviz as az

    post = idata.posterior
    stats = idata.sample_stats
    chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    div = int(np.asarray(stats["diverging"].values).sum()) if "diverging" in stats else 0
    depth = np.asarray(stats["tree_depth"].values) if "tree_depth" in stats else np.zeros(1)
    hits = int((depth >= max_treedepth).sum())
    try:
        ebfmi = tuple(float(e) for e in np.atleast_1d(az.bfmi(idata)))
    except Exception:  # no energy recorded
        ebfmi = ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rhat, ess_b, ess_t = _posterior_rhat_ess(post)
    max_rhat, rhat_p = _worst(rhat, np.nanargmax)
    min_b, b_p = _worst(ess_b, np.nanargmin)
    min_t, t_p = _worst(ess_t, np.nanargmin)

    n = chains * draws
    ess_floor = min(ESS_MIN, 100 * chains)
    problems = []
    if div:
        problems.append(
            f"{div} of {n} transitions after warmup were divergent: the posterior has regions "
            f"the sampler cannot explore and the draws may be biased. Raise adapt_delta "
            f"(now {adapt_delta}; try {min(0.99, round(1 - (1 - adapt_delta) / 4, 3))}), "
            "set stronger priors on the sd's, or reparameterise")
    if max_rhat > RHAT_MAX:
        problems.append(
            f"R-hat up to {max_rhat:.3f} ({rhat_p}) > {RHAT_MAX}: the chains have not mixed. "
            "Run more iterations (iter_warmup, iter_sampling) or check the model")
    if min_b < ess_floor:
        problems.append(
            f"bulk ESS as low as {min_b:.0f} ({b_p}) < {ess_floor}: posterior means and "
            "medians may be unreliable. Run more iterations")
    if min_t < ess_floor:
        problems.append(
            f"tail ESS as low as {min_t:.0f} ({t_p}) < {ess_floor}: posterior intervals may "
            "be unreliable. Run more iterations")
    if hits:
        problems.append(
            f"{hits} of {n} transitions hit the maximum tree depth {max_treedepth}: "
            "an efficiency problem, not a validity one. Raise max_treedepth or "
            "reparameterise: terms whose levels have many observations often sample far "
            "faster centred (fit_nuts(..., centered=True, metric='dense_e'))")
    low = [i + 1 for i, e in enumerate(ebfmi) if e < EBFMI_MIN]
    if low:
        problems.append(
            f"E-BFMI below {EBFMI_MIN} in chain{'s' if len(low) > 1 else ''} "
            f"{', '.join(map(str, low))}: the sampler explores the energy poorly (often a "
            "funnel or heavy tails). Reparameterise or use more informative priors")
    return Diagnostics(chains, draws, div, max_treedepth, hits, ebfmi, max_rhat, rhat_p,
                       min_b, b_p, min_t, t_p, sampling_seconds, adapt_delta, tuple(problems))


def warn_diagnostics(diag: Diagnostics) -> None:
    """One warning per problem found (a SamplingWarning), attributed to the
    user's line that asked for the fit, however deep inside bayesmix we are."""
    level = _caller_outside_package()
    for p in diag.problems:
        warnings.warn(p, SamplingWarning, stacklevel=level)


def _caller_outside_package() -> int:
    package = str(Path(__file__).parents[1])
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


__all__ = ["Diagnostics", "EBFMI_MIN", "ESS_MIN", "RHAT_MAX", "SamplingWarning", "diagnose",
           "warn_diagnostics"]
