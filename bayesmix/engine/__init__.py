"""Compile and run Stan programs, on the bundled toolchain or on CmdStan.

Both engines expose `sample`, `optimize` and `laplace`, return a
`RunResult` (Stan CSV files that cmdstanpy and ArviZ read) and record the
engine, Stan version, compiler flags and seeds used."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..errors import BayesmixError
from .base import Engine, EngineInfo, RunResult
from .bundled import BundledModel
from .cmdstan import CmdStanEngineModel, cmdstan_available
from .stanfiles import inline_includes, stan_dir, stan_file, user_header
from .toolchain import bundled_toolchain, cache_root

ENGINES = ("auto", "bundled", "cmdstan")
def resolve_engine(engine: str = "auto") -> str:
    if engine not in ENGINES:
        raise BayesmixError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "cmdstan" if cmdstan_available() else "bundled"
    if engine == "cmdstan" and not cmdstan_available():
        raise BayesmixError("engine='cmdstan' but no CmdStan installation was found; "
                            "use engine='bundled' or install CmdStan")
    return engine


@lru_cache(maxsize=64)
def compile_model(code: str, name: str = "model", engine: str = "auto"):
    """Compile (or fetch from the cache) a Stan program for `engine`."""
    code = inline_includes(code)
    if resolve_engine(engine) == "cmdstan":
        return CmdStanEngineModel(code, name)
    return BundledModel(code, name)


__all__ = ["BundledModel", "CmdStanEngineModel", "Engine", "EngineInfo", "RunResult",
           "cache_root", "cmdstan_available", "compile_model", "bundled_toolchain",
           "inline_includes", "resolve_engine", "stan_dir", "stan_file", "user_header"]
