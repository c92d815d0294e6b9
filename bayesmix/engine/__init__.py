"""Compile and run Stan programs, on the bundled toolchain or on CmdStan.

Both engines expose `sample`, `optimize` and `laplace`, return a
`RunResult` (Stan CSV files that cmdstanpy and ArviZ read) and record the
engine, Stan version, compiler flags and seeds used."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from ..errors import BayesmixError
from .base import Engine, EngineInfo, RunResult
from .bundled import BundledModel
from .cmdstan import CmdStanEngineModel, cmdstan_available
from .toolchain import bundled_toolchain, cache_root

ENGINES = ("auto", "bundled", "cmdstan")
_INCLUDE = re.compile(r"^\s*#include\s+[<\"]?([\w./-]+)[>\"]?\s*$", re.M)


def stan_dir() -> Path:
    """The folder of static Stan files (`stan/` in the repo, `bayesmix/_stan` installed)."""
    installed = Path(__file__).parents[1] / "_stan"
    return installed if installed.is_dir() else Path(__file__).parents[2] / "stan"


def stan_file(name: str) -> str:
    """A static Stan file with every `#include` inlined (self-contained code)."""
    path = stan_dir() / name
    if not path.exists():
        raise BayesmixError(f"no Stan file {name!r} in {stan_dir()}")
    return inline_includes(path.read_text())


def inline_includes(code: str, seen: frozenset[str] = frozenset()) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1)
        if name in seen:
            raise BayesmixError(f"recursive #include of {name}")
        body = (stan_dir() / name).read_text()
        return f"// ---- {name} ----\n" + inline_includes(body, seen | {name}).rstrip() + "\n"
    return _INCLUDE.sub(repl, code)


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
           "inline_includes", "resolve_engine", "stan_dir", "stan_file"]
