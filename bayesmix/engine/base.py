"""The engine interface shared by the bundled driver and CmdStan: the run record
(`RunResult`), the `Engine` base class that turns `sample` / `optimize` / `rerun`
calls into recorded arguments, and the helpers both engines use to run Stan."""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import StanError
from .console import SamplingProgress


@dataclass(frozen=True)
class EngineInfo:
    name: str              # "bundled" or "cmdstan"
    stan_version: str
    compiler: str          # C++ compiler version line
    flags: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "stan_version": self.stan_version,
                "compiler": self.compiler, "flags": list(self.flags)}


@dataclass(frozen=True)
class RunResult:
    """What one Stan run produced: CSV files plus everything needed to redo it."""
    method: str                      # sample | optimize | laplace
    csv_files: tuple[str, ...]
    args: dict[str, Any]             # the method's arguments, seeds included
    engine: EngineInfo
    console: str                     # Stan's own messages
    return_code: int
    elapsed: float                   # wall seconds

    def fit(self):
        """The run as a cmdstanpy fit object (CmdStanMCMC / CmdStanMLE / ...)."""
        return import_cmdstanpy().from_csv(list(self.csv_files), method=self.method)

    def optimum(self) -> dict[str, float]:
        """Column -> value of an optimize run, at full precision."""
        header, row = _last_csv_row(self.csv_files[0])
        return dict(zip(map(_bracket, header), row))


def _bracket(name: str) -> str:
    """Stan CSV's `x.1.2` as `x[1,2]`, the way cmdstanpy names columns."""
    base, *idx = name.split(".")
    return f"{base}[{','.join(idx)}]" if idx else base


def _last_csv_row(path: str) -> tuple[list[str], np.ndarray]:
    header, last = None, None
    with open(path) as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            if header is None:
                header = line.strip().split(",")
            else:
                last = line
    if header is None or last is None:
        raise StanError(f"Stan wrote no result to {path}")
    return header, np.array([float(v) for v in last.split(",")])


def mode_values(csv_file: str) -> dict[str, np.ndarray]:
    """The constrained values of an optimize run's CSV, each with its declared shape
    (a size-1 vector stays a vector: cmdstanpy's MLE reader returns it as a scalar,
    which Stan then refuses for `array[1] real`); Stan's `__` columns left out."""
    import stanio
    header, row = _last_csv_row(csv_file)
    variables = stanio.parse_header(",".join(header))
    return {name: np.asarray(v.extract_reshape(row)) for name, v in variables.items()
            if not name.endswith("__")}


# Stan's optimizer exits with 70 when the line search fails, which at the
# optimum of a flat objective is not a failure: callers decide (see lmer).
OPTIMIZE_SOFT_FAILURE = 70


def _seed(seed: int | None) -> int:
    """A concrete seed, so that every run records what it used."""
    if seed is None:
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    return int(seed)


def import_cmdstanpy():
    """cmdstanpy, imported without tqdm's "IProgress not found" warning: cmdstanpy imports
    tqdm.auto, which warns into a notebook without ipywidgets although bayesmix draws its
    own progress bars (console.py)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import cmdstanpy
    return cmdstanpy


class Engine(ABC):
    """One compiled Stan program on one engine. Both engines take the same method arguments
    and record them the same way (so that a bundle reruns on either); a subclass compiles
    in its constructor (setting `name` and `exe`) and turns a method and its recorded
    arguments into its own command line in `_run`."""

    name: str

    @property
    @abstractmethod
    def info(self) -> EngineInfo: ...

    @abstractmethod
    def _run(self, method: str, data: dict, args: dict[str, Any], output_dir: str | None,
             inits: dict | None = None, progress_total: int = 0,
             show_progress: bool | None = False,
             accept_codes: tuple[int, ...] = (0,)) -> RunResult: ...

    @abstractmethod
    def laplace(self, data: dict, mode: RunResult, *, draws: int = 1000,
                jacobian: bool = True, seed: int | None = None,
                output_dir: str | None = None) -> RunResult: ...

    def _output_dir(self, output_dir: str | None) -> Path:
        if output_dir is None:
            return _scratch_dir(f"bayesmix-{self.name}-")
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        return out

    def rerun(self, method: str, data: dict, args: dict[str, Any], inits: dict | None = None,
              output_dir: str | None = None) -> RunResult:
        """Repeat a run exactly from its recorded arguments (seed included)."""
        if method == "laplace":
            raise StanError("rerunning laplace runs is not supported; rerun the mode first")
        total = args.get("chains", 1) * 21 if method == "sample" else 0
        return self._run(method, data, dict(args), output_dir, inits, progress_total=total,
                         accept_codes=(0, OPTIMIZE_SOFT_FAILURE) if method == "optimize"
                         else (0,))

    def sample(self, data: dict, *, chains: int = 4, iter_warmup: int = 1000,
               iter_sampling: int = 1000, thin: int = 1, seed: int | None = None,
               adapt_delta: float = 0.8, max_treedepth: int = 10, metric: str = "diag_e",
               step_size: float = 1.0, init_radius: float = 2.0, inits: dict | None = None,
               save_warmup: bool = False, refresh: int | None = None,
               sig_figs: int | None = None, output_dir: str | None = None,
               show_progress: bool | None = None) -> RunResult:
        refresh = refresh if refresh is not None else max(1, (iter_warmup + iter_sampling) // 20)
        args = dict(chains=chains, num_warmup=iter_warmup, num_samples=iter_sampling,
                    thin=thin, seed=_seed(seed), adapt_delta=adapt_delta,
                    max_depth=max_treedepth, metric=metric, stepsize=step_size,
                    init_radius=init_radius, save_warmup=int(save_warmup), refresh=refresh,
                    sig_figs=sig_figs)
        total = chains * ((iter_warmup + iter_sampling) // refresh + 1)
        return self._run("sample", data, args, output_dir, inits, progress_total=total,
                         show_progress=show_progress)

    def optimize(self, data: dict, *, algorithm: str = "lbfgs", jacobian: bool = False,
                 seed: int | None = None, inits: dict | None = None, iter: int = 2000,
                 tol_obj: float | None = None, tol_rel_obj: float | None = None,
                 tol_grad: float | None = None, tol_rel_grad: float | None = None,
                 tol_param: float | None = None, history_size: int | None = None,
                 init_alpha: float | None = None, init_radius: float = 2.0,
                 output_dir: str | None = None, accept_line_search_failure: bool = False,
                 hessian: bool = False) -> RunResult:
        """hessian=True: the bundled driver also prints the Hessian at the optimum
        (`bayesmix.optimizer.stan_hessian`); CmdStan ignores it."""
        args = dict(algorithm=algorithm, jacobian=int(jacobian), seed=_seed(seed), iter=iter,
                    tol_obj=tol_obj, tol_rel_obj=tol_rel_obj, tol_grad=tol_grad,
                    tol_rel_grad=tol_rel_grad, tol_param=tol_param,
                    history_size=history_size, init_alpha=init_alpha,
                    init_radius=init_radius, refresh=0, hessian=1 if hessian else None)
        accept = (0, OPTIMIZE_SOFT_FAILURE) if accept_line_search_failure else (0,)
        return self._run("optimize", data, args, output_dir, inits, accept_codes=accept)


_SCRATCH: list[Path] = []


def _scratch_dir(prefix: str) -> Path:
    """A temporary run folder, removed when the process exits (a fit reads its CSV files
    lazily, so they live as long as the session, as cmdstanpy's do)."""
    if not _SCRATCH:
        atexit.register(_remove_scratch)
    out = Path(tempfile.mkdtemp(prefix=prefix))
    _SCRATCH.append(out)
    return out


def _remove_scratch() -> None:
    for folder in _SCRATCH:
        shutil.rmtree(folder, ignore_errors=True)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to release
        return None


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the OS before Stan runs. Building a large
    model's data frees hundreds of MB of numpy temporaries that glibc keeps for reuse (its mmap
    threshold grows as large arrays are freed), and they would sit in this process's resident
    memory for the whole run beside Stan's (InstEval: 372 -> 218 MB)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def run_process(cmd: Sequence[str], *, progress_total: int = 0,
                show_progress: bool | None = False, chains: int = 1,
                env: dict | None = None) -> tuple[int, str]:
    """Run a Stan binary, relay progress, and return (exit code, console text).

    show_progress: True/False, or None for a bar only where a person watches.
    The child gets its own process group so Ctrl-C (KeyboardInterrupt here)
    stops it and everything it started."""
    progress = SamplingProgress(progress_total, show_progress, chains)
    lines: list[str] = []
    release_free_memory()
    with subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, start_new_session=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                progress.update(line)
            proc.wait()
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            raise
        finally:
            progress.close()
    return proc.returncode, "".join(lines)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Stan JSON: numpy arrays as lists, integers kept integral."""
    def conv(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (np.floating,)):
            return float(v)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v
    with open(path, "w") as fh:
        json.dump({k: conv(v) for k, v in data.items()}, fh)


def stan_messages(console: str) -> str:
    """The lines of Stan's console output worth showing a user on failure."""
    keep = [ln for ln in console.splitlines()
            if ln.strip() and not ln.startswith(("Iteration:", "Chain", " Elapsed"))]
    return "\n".join(keep[-40:])
