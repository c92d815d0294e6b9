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
        rhat = az.rhat(post)
        ess_b = az.ess(post, method="bulk")
        ess_t = az.ess(post, method="tail")
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
