"""The Laplace approximation of the joint posterior, through the generic joint program.

`fit_laplace` runs Stan's two steps on ``stan/glmm_joint.stan`` (no per-formula compile):

1. ``optimize`` with ``jacobian=True``: the mode of the posterior density of the
   *unconstrained* parameters (log sd, the correlations' free values, z, ...), which is
   where Stan's laplace method centres its normal approximation;
2. ``laplace``: draws from the normal with the negative inverse Hessian at that mode
   (finite differences of gradients), mapped back to the constrained scale, generated
   quantities (``log_lik``, ``y_rep``) included.

`LaplaceFit` is a `GenericPosteriorFit` whose draws are those of the approximation: one
"chain" of ``draws`` independent draws, so fixef, ranef, coef, varcorr, sigma, confint,
to_arviz, linpred/epred/predict and loo work unchanged. Its summary says it is a Laplace
approximation and has no R-hat / ESS columns (the draws are independent by construction);
instead it reports the Pareto k of the importance ratios ``log_p__ - log_q__`` (Stan's log
density minus the approximation's), the usual check of how far the normal is from the
posterior (k < 0.7: usable for importance sampling; larger: the approximation is poor).
"""

from __future__ import annotations

import logging
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import BayesmixError, user_stacklevel
from ..optimizer import stan_gradient
from ..priors import Prior, default_scales
from ..registry import register_restorer
from .diagnostics import SamplingWarning
from .generic import (GENERIC_NAME, GenericLayout, GenericPosteriorFit, generic_code,
                      generic_inits, generic_program, generic_stan_data, generic_unsupported)

MODE_FILE = "mode.csv"   # the optimize run's CSV inside an exported bundle
OPTIMIZE_ITER = 10000


def laplace_inits(design, priors: Iterable[Prior] = (), centered: Any = False) -> dict:
    """Where the optimizer starts (generated program's names): the safe inits of links
    that need them, else the intercept at the default prior's location, slopes 0,
    group-level sds at half their prior scale, standardized effects 0, identity
    correlations, the family parameter at its prior scale (gaussian) or 1. Random inits
    can leave L-BFGS on the ridge between the intercept and the mean of the effects."""
    from ..stancode import joint_inits, structure_of
    safe = joint_inits(design, tuple(priors), centered)
    if safe is not None:
        return safe
    s = structure_of(design, centered)
    scales = default_scales(design)
    K = design.X.shape[1]
    inits: dict = {"b": np.zeros(K - 1 if s.intercept else K)}
    if s.intercept:
        inits["Intercept"] = float(scales.intercept_loc)
    sd = 0.5 * scales.sd_scale if design.family.name == "gaussian" else 0.5
    for k, (t, sh) in enumerate(zip(design.terms, s.terms), 1):
        inits[f"sd_{k}"] = np.full(t.p, sd)
        if sh.centered:
            inits[f"r_{k}"] = np.zeros((t.n_levels, t.p))
        else:
            inits[f"z_{k}"] = np.zeros((t.p, t.n_levels))
        if sh.correlated:
            inits[f"L_{k}"] = np.eye(t.p)
    if s.family_param:
        inits[s.family_param] = (float(scales.sigma_scale) if s.family_param == "sigma"
                                 else 1.0)
    return inits


def read_laplace(laplace_csv: str, mode_csv: str):
    """A laplace CSV as cmdstanpy's CmdStanLaplace, its mode read from `mode_csv`.

    cmdstanpy's `from_csv(..., method="laplace")` reads the mode from the path recorded
    in the CSV header (`mode = ...`), which after an export or a move is a path that no
    longer exists (a temporary folder): here the mode's file is given. The draws
    (columns ``log_p__``, ``log_q__``, then the program's variables) do not depend on it."""
    from cmdstanpy import CmdStanLaplace, from_csv
    from cmdstanpy.cmdstan_args import CmdStanArgs, LaplaceArgs
    from cmdstanpy.stanfit import RunSet
    from cmdstanpy.utils import get_logger
    log = get_logger()
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        mode = from_csv(str(mode_csv), method="optimize")
    finally:
        log.setLevel(level)
    config = _csv_config(laplace_csv)
    args = CmdStanArgs(model_name=config.get("model", "model"),
                       model_exe=config.get("model", "model"), chain_ids=None,
                       method_args=LaplaceArgs(mode=str(mode_csv),
                                               draws=int(config.get("draws", 1000)),
                                               jacobian=config.get("jacobian") in ("1", "true")))
    runset = RunSet(args=args)
    runset._csv_files = [str(laplace_csv)]
    for i in range(len(runset._retcodes)):
        runset._set_retcode(i, 0)
    return CmdStanLaplace(runset, mode=mode)


def _csv_config(path: str) -> dict[str, str]:
    """`key = value` lines of a Stan CSV's comment header (innermost key wins)."""
    out: dict[str, str] = {}
    with open(path) as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            key, sep, value = line[1:].strip().partition(" = ")
            if sep:
                out[key.strip()] = value.strip()
    return out


class LaplaceFit(GenericPosteriorFit):
    """The Laplace approximation of the joint posterior (generic program): `run` is the
    laplace run (its draws), `mode_run` the optimize run (jacobian=True) it is centred on.
    Accessors as `PosteriorFit`; one chain of independent draws."""

    kind = "laplace"
    program_kind = "generic"
    inference_label = "Stan laplace"
    convergence = False  # independent draws: no R-hat / ESS columns

    def __init__(self, design, priors, run, program, stan_data, mode_run,
                 compile_seconds: float = float("nan"), inits: dict | None = None):
        super().__init__(design, priors, run, program, stan_data,
                         compile_seconds=compile_seconds, inits=inits)
        self.mode_run = mode_run

    @cached_property
    def cmdstan_fit(self):
        """The run as cmdstanpy's CmdStanLaplace (`.mode`: the optimize run)."""
        return read_laplace(self.run.csv_files[0], self.mode_run.csv_files[0])

    @property
    def chains(self) -> int:
        return 1

    @property
    def ndraws(self) -> int:
        return int(self.cmdstan_fit.draws().shape[0])

    def mode(self) -> dict[str, float]:
        """Column -> value at the mode (the optimize run's row: ``lp__`` first)."""
        return self.mode_run.optimum()

    def log_ratios(self) -> np.ndarray:
        """Per draw: ``log_p__ - log_q__``, the log importance ratio of the posterior
        (unnormalized, Jacobian included) against the normal approximation."""
        mv = self.cmdstan_fit.method_variables()
        return np.asarray(mv["log_p__"], float).reshape(-1) - np.asarray(
            mv["log_q__"], float).reshape(-1)

    def pareto_k(self) -> float:
        """Pareto k of the importance ratios (PSIS): below 0.7 the normal approximation is
        close enough to the posterior for importance sampling; above, it is poor."""
        import warnings

        import arviz as az
        r = self.log_ratios()
        if not np.all(np.isfinite(r)):
            return float("inf")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, k = az.psislw(r - r.max())
        return float(k)

    def diagnostics(self):
        raise BayesmixError("a Laplace approximation has no sampler diagnostics (its draws "
                            "are independent); see pareto_k() for how close the normal "
                            "approximation is to the posterior")

    def summary_lines(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        a, m = self.run.args, self.mode_run.args
        draws = (f"  Draws: {self.ndraws} independent draws from the normal approximation "
                 f"at the posterior mode",
                 f" Method: Laplace approximation, {self.run.engine.name} Stan "
                 f"{self.run.engine.stan_version}: optimize (L-BFGS, jacobian = true, "
                 f"seed = {m.get('seed')}), laplace (seed = {a.get('seed')}), "
                 f"{self.mode_run.elapsed + self.run.elapsed:.1f} s"
                 + ("  [PRIOR ONLY: no likelihood]" if self.prior_only else ""))
        footer = ("Draws are from a Laplace approximation (a normal at the posterior mode on "
                  "the unconstrained scale),",
                  "not MCMC: no Rhat or ESS. Est.Error is the sd of the draws.")
        k = self.pareto_k()
        notes = ((f"Pareto k of the importance ratios is {k:.2f} (> 0.7): the normal "
                  "approximation is far from the posterior; use sample()",) if k > 0.7
                 else ())
        return draws, footer, notes

    # -- bundles -----------------------------------------------------------------
    def export_meta(self) -> dict:
        meta = super().export_meta()
        meta["program"] = "generic"
        return meta

    def export_files(self) -> dict[str, str]:
        """Files a bundle holds beside the laplace CSV: the optimize run's CSV."""
        return {MODE_FILE: self.mode_run.csv_files[0]}

    def export_runs(self) -> dict:
        """The optimize run's record (run.json's "mode")."""
        r = self.mode_run
        return {"method": r.method, "args": r.args, "output": MODE_FILE,
                "return_code": r.return_code, "elapsed": r.elapsed}

    @classmethod
    def from_export(cls, design, meta: dict, run, stan_data: dict,
                    mode_run=None, **_) -> "LaplaceFit":
        from ..priors import prior
        if mode_run is None:
            raise BayesmixError("a Laplace bundle needs its optimize run (mode.csv)")
        priors = tuple(prior(**p) for p in meta["priors"])
        program = generic_program(design, priors, centered=meta.get("centered", []))
        return cls(design, priors, run, program, stan_data, mode_run, inits=meta.get("inits"))


def centred_start(model, design, priors, data: dict, centered: Any, seed: int,
                  iter: int) -> dict:
    """Optimizer start for the centred joint mode, in the generic program's names.

    The centred joint density has its global maximum at sd -> 0 (r -> 0, the funnel's
    neck); the mode the Laplace approximation wants is the local one where the effects
    sit at their data-supported values. An optimizer started from r = 0 slides into the
    neck, so the effects are placed first: the non-centred mode (well defined, but with
    the sds inflated, as the non-centred density lacks the -N log sd of the effects'
    normal) gives r = sd * z, and the sds start at the spread of those r."""
    nc_data = dict(data, cen_term=[0] * len(design.terms))
    nc = model.optimize(nc_data, jacobian=True, seed=seed, iter=iter,
                        inits=generic_inits(design, laplace_inits(design, priors, False)),
                        accept_line_search_failure=True)
    from ..engine.base import mode_values
    v = mode_values(nc.csv_files[0])
    lay = GenericLayout(tuple(t.p for t in design.terms),
                        tuple(t.n_levels for t in design.terms),
                        tuple(bool(c) for c in data["cor_term"]),
                        tuple(bool(c) for c in data["cen_term"]))
    z, r = np.asarray(v["z_all"], float).copy(), np.asarray(v["r_all"], float)
    sd = np.asarray(v["sd_all"], float).copy()
    for j, (p, nl) in enumerate(zip(lay.p, lay.levels)):
        if not lay.centered[j]:
            continue
        z0, s0 = lay.z_start[j], lay.sd_start[j]
        block = r[z0:z0 + p * nl]
        z[z0:z0 + p * nl] = block
        spread = block.reshape(nl, p).std(axis=0, ddof=1) if nl > 1 else sd[s0:s0 + p]
        sd[s0:s0 + p] = np.maximum(spread, 1e-3 * np.maximum(sd[s0:s0 + p], 1e-3))
    out = {k: np.atleast_1d(np.asarray(v[k], float))
           for k in ("Intercept", "b", "cpc_raw", "sigma", "phi", "shape") if k in v}
    out.update(z_all=z, sd_all=sd)
    return out


def _collapsed(mode) -> bool:
    """Whether an optimize run ended in the funnel's neck (a group-level sd ~ 0) or
    failed on its way there (line search failed away from a stationary point)."""
    from ..engine.base import mode_values
    sd = np.asarray(mode_values(mode.csv_files[0]).get("sd_all", []), float)
    if sd.size and (not np.all(np.isfinite(sd)) or sd.min() < 1e-6):
        return True
    if mode.return_code != 0:
        grad = stan_gradient(mode)
        return grad is None or not np.all(np.isfinite(grad)) or np.abs(grad).max() > 1.0
    return False


def fit_laplace(design, priors: Iterable[Prior] = (), *, draws: int = 1000,
                seed: int | None = None, engine: str = "auto", inits: dict | None = None,
                prior_only: bool = False, save_log_lik: bool = True, save_y_rep: bool = True,
                centered: Any = True, iter: int = OPTIMIZE_ITER,
                output_dir: str | None = None) -> LaplaceFit:
    """The Laplace approximation of the joint posterior with the generic program.

    draws: number of draws from the approximation; seed: one seed for both steps
    (optimize and laplace; each is recorded); centered: True (default) approximates the
    centred parameterisation's posterior (group-level effects r ~ N(0, sd)), whose local
    mode is the right centre when groups carry data (the non-centred joint mode inflates
    the sds by about sqrt(levels / 3): its density lacks the effects' -N log sd); False or
    grouping-factor names as in `fit_nuts`. inits: optimizer start in the generated
    program's names (default: from the non-centred mode, `centred_start`); iter: L-BFGS
    iterations; other arguments as `fit_nuts`."""
    import time

    from ..engine import compile_model
    from ..engine.bundled import _seed
    if int(draws) < 1:
        raise BayesmixError(f"draws must be >= 1, got {draws}")
    priors = tuple(priors)
    why = generic_unsupported(design, priors)
    if why is not None:
        raise BayesmixError(f"the generic joint program cannot run this model: {why}")
    if centered is True:
        centered = [t.group for t in design.terms]
    seed = _seed(seed)
    out = Path(output_dir) if output_dir else None
    start = time.perf_counter()
    model = compile_model(generic_code(), GENERIC_NAME, engine)
    compile_seconds = time.perf_counter() - start
    user_inits = inits
    while True:
        program = generic_program(design, priors, centered)
        data = generic_stan_data(design, priors, prior_only=prior_only,
                                 save_log_lik=save_log_lik, save_y_rep=save_y_rep,
                                 centered=centered)
        if user_inits is not None:
            inits = generic_inits(design, user_inits, centered)
        elif any(data["cen_term"]):
            inits = centred_start(model, design, priors, data, centered, seed, int(iter))
        else:
            inits = generic_inits(design, laplace_inits(design, priors, centered), centered)
        mode = model.optimize(data, jacobian=True, seed=seed, inits=inits, iter=int(iter),
                              output_dir=str(out / "optimize") if out else None,
                              accept_line_search_failure=True)
        if not any(data["cen_term"]) or not _collapsed(mode):
            break
        warnings.warn(SamplingWarning(
            "the centred joint mode collapsed to zero group-level sds or was not found (too "
            "little data per level for a local mode); approximating at the non-centred mode "
            "instead, whose sds are inflated: treat this Laplace approximation as rough, or "
            "use sample()"), stacklevel=user_stacklevel())
        centered = False
    run = model.laplace(data, mode, draws=int(draws), jacobian=True, seed=seed,
                        output_dir=str(out / "laplace") if out else None)
    return LaplaceFit(design, priors, run, program, data, mode,
                      compile_seconds=compile_seconds, inits=inits)


__all__ = ["LaplaceFit", "centred_start", "fit_laplace", "laplace_inits", "read_laplace"]


register_restorer("laplace", LaplaceFit.from_export)
