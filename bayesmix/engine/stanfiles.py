"""The static Stan files: where they live, `#include`s inlined, and the C++ header of the
functions a program declares without a body."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import BayesmixError

_INCLUDE = re.compile(r"^\s*#include\s+[<\"]?([\w./-]+)[>\"]?\s*$", re.M)

# Functions the programs declare without a body (stanc --allow-undefined) and the header in
# stan/ that defines them. A program gets the package's own header, never a bundle's copy.
USER_FUNCTIONS = {"glmm_mode": "glmm_mode.hpp", "lmm_dense_factor": "lmm_reduce.hpp"}


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


def user_header(code: str) -> Path | None:
    """The C++ header defining the functions `code` declares without a body, or None (CmdStan
    takes one USER_HEADER: a program may use the functions of one header only)."""
    headers = {header for name, header in USER_FUNCTIONS.items()
               if re.search(rf"^\s*\w+\s+{name}\s*\(", code, re.M)}
    if len(headers) > 1:
        raise BayesmixError(f"a program may use one C++ header, not {sorted(headers)}")
    return stan_dir() / headers.pop() if headers else None
