"""The engine interface shared by the bundled driver and CmdStan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
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
        import cmdstanpy
        return cmdstanpy.from_csv(list(self.csv_files), method=self.method)

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




def run_process(cmd: Sequence[str], *, progress_total: int = 0,
                show_progress: bool | None = False, chains: int = 1,
                env: dict | None = None) -> tuple[int, str]:
    """Run a Stan binary, relay progress, and return (exit code, console text).

    show_progress: True/False, or None for a bar only where a person watches.
    The child gets its own process group so Ctrl-C (KeyboardInterrupt here)
    stops it and everything it started."""
    progress = SamplingProgress(progress_total, show_progress, chains)
    lines: list[str] = []
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
