"""The CmdStan engine, through cmdstanpy, when a CmdStan installation exists."""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import StanError
from .base import EngineInfo, RunResult
from .bundled import _seed
from .toolchain import cache_root


def cmdstan_available() -> bool:
    try:
        import cmdstanpy
        path = Path(cmdstanpy.cmdstan_path())
        return (path / "makefile").exists()
    except (ValueError, ImportError, OSError):
        return False


class CmdStanEngineModel:
    """The same operations as BundledModel, run by CmdStan."""

    def __init__(self, code: str, name: str = "model"):
        import cmdstanpy
        self.code, self.name = code, name
        key = hashlib.sha256((code + cmdstanpy.cmdstan_path()).encode()).hexdigest()[:20]
        folder = cache_root() / "cmdstan" / key
        folder.mkdir(parents=True, exist_ok=True)
        stan_file = folder / f"{name}.stan"
        if not stan_file.exists():
            stan_file.write_text(code)
        start = time.perf_counter()
        try:
            self._model = cmdstanpy.CmdStanModel(stan_file=str(stan_file))
        except (ValueError, RuntimeError) as exc:
            raise StanError(f"CmdStan could not compile {name!r}:\n{exc}") from exc
        self.compile_seconds = time.perf_counter() - start
        version = cmdstanpy.cmdstan_version() or ("?", "?")
        self.info = EngineInfo("cmdstan", ".".join(map(str, version)), "cmdstan make", ())

    def _result(self, method: str, fit: Any, args: dict, start: float) -> RunResult:
        files = tuple(fit.runset.csv_files)
        return RunResult(method, files, args, self.info, "", 0, time.perf_counter() - start)

    def sample(self, data: dict, *, chains=4, iter_warmup=1000, iter_sampling=1000, thin=1,
               seed=None, adapt_delta=0.8, max_treedepth=10, metric="diag_e",
               step_size=1.0, init_radius=2.0, inits=None, save_warmup=False, refresh=None,
               sig_figs=None, output_dir=None, show_progress=False) -> RunResult:
        args = dict(chains=chains, num_warmup=iter_warmup, num_samples=iter_sampling,
                    thin=thin, seed=_seed(seed), adapt_delta=adapt_delta,
                    max_depth=max_treedepth, metric=metric)
        start = time.perf_counter()
        try:
            fit = self._model.sample(
                data=data, chains=chains, iter_warmup=iter_warmup, iter_sampling=iter_sampling,
                thin=thin, seed=args["seed"], adapt_delta=adapt_delta,
                max_treedepth=max_treedepth, metric=metric, step_size=step_size,
                inits=inits if inits is not None else init_radius, save_warmup=save_warmup,
                sig_figs=sig_figs, output_dir=output_dir or tempfile.mkdtemp(),
                show_progress=show_progress)
        except RuntimeError as exc:
            raise StanError(str(exc)) from exc
        return self._result("sample", fit, args, start)

    def optimize(self, data: dict, *, algorithm="lbfgs", jacobian=False, seed=None,
                 inits=None, iter=2000, tol_obj=None, tol_rel_obj=None, tol_grad=None,
                 tol_rel_grad=None, tol_param=None, history_size=None, init_alpha=None,
                 init_radius=2.0, output_dir=None, accept_line_search_failure=False
                 ) -> RunResult:
        args = dict(algorithm=algorithm, jacobian=int(jacobian), seed=_seed(seed), iter=iter)
        start = time.perf_counter()
        try:
            fit = self._model.optimize(
                data=data, algorithm=algorithm, jacobian=jacobian, seed=args["seed"],
                inits=inits if inits is not None else init_radius, iter=iter,
                tol_obj=tol_obj, tol_rel_obj=tol_rel_obj, tol_grad=tol_grad,
                tol_rel_grad=tol_rel_grad, tol_param=tol_param, history_size=history_size,
                init_alpha=init_alpha, sig_figs=17, output_dir=output_dir or tempfile.mkdtemp(),
                require_converged=not accept_line_search_failure)
        except RuntimeError as exc:
            raise StanError(str(exc)) from exc
        return self._result("optimize", fit, args, start)

    def laplace(self, data: dict, mode: RunResult, *, draws=1000, jacobian=True, seed=None,
                output_dir=None) -> RunResult:
        args = dict(draws=draws, jacobian=int(jacobian), seed=_seed(seed))
        start = time.perf_counter()
        out = Path(output_dir or tempfile.mkdtemp())
        fit = self._model.laplace_sample(data=data, mode=mode.fit(), draws=draws,
                                         jacobian=jacobian, seed=args["seed"],
                                         output_dir=str(out))
        return self._result("laplace", fit, args, start)
