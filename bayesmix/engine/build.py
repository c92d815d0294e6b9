"""The one build step: the toolchain and every generic Stan program, ahead of time.

`bayesmix build` (or `build()`) compiles the driver and the generic programs side
by side, one per core (a program's object does not need the driver; only linking
waits for it). Generic
programs take the formula's structure, family and priors as data, so after
this step no built-in model compiles anything. The same builds also happen
lazily on first use, one program at a time, with the same progress lines."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from .cache import stop_compilers
from .console import say
from .toolchain import bundled_toolchain


def build(names: list[str] | None = None, jobs: int | None = None) -> dict[str, float]:
    """Build the toolchain and the named generic programs (default: all);
    returns program name -> seconds spent on it (0 when it was cached)."""
    from ..bayes import generic_programs
    from . import compile_model
    programs = generic_programs()
    unknown = sorted(set(names or ()) - set(programs))
    if unknown:
        from ..errors import BayesmixError
        raise BayesmixError(f"no generic program named {', '.join(unknown)}; "
                            f"choose from {', '.join(programs)}")
    chosen = list(names or programs)
    start = time.perf_counter()
    bundled_toolchain().start()  # the driver, in the background beside the programs
    jobs = jobs or os.cpu_count() or 1

    def one(name: str) -> float:
        t = time.perf_counter()
        model = compile_model(programs[name], name, "bundled")
        return time.perf_counter() - t if model.built else 0.0

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            took = dict(zip(chosen, pool.map(one, chosen)))
        except BaseException:
            stop_compilers()  # e.g. Ctrl-C: do not wait for the other compiles
            raise
    built = [n for n, t in took.items() if t > 0]
    say(f"ready: {len(chosen)} generic program{'s' if len(chosen) != 1 else ''} "
        f"({len(built)} compiled now) in {time.perf_counter() - start:.0f} s")
    return took
