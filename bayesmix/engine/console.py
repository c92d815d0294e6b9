"""What the engine shows a person while it works: build lines and sampling bars.

Build lines go to stderr (one per step, with its time) so a first run never
looks hung; BAYESMIX_QUIET=1 silences them. Sampling bars appear only where a
person is watching (a terminal or a notebook), never in pipes or under pytest,
and only once a run has lasted a couple of seconds."""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

BAR_DELAY = 2.0  # seconds before a sampling bar appears


def say(message: str) -> None:
    """One line of build progress on stderr."""
    if not os.environ.get("BAYESMIX_QUIET"):
        print(f"bayesmix: {message}", file=sys.stderr, flush=True)


class timed:
    """`with timed("compiling X"):` says when a step starts and how long it took."""

    def __init__(self, what: str):
        self.what = what

    def __enter__(self) -> "timed":
        self.start = time.perf_counter()
        say(f"{self.what} ...")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        took = time.perf_counter() - self.start
        say(f"{self.what}: {'done' if exc_type is None else 'failed'} in {took:.0f} s")


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython() if hasattr(shell, "get_ipython") else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def watched() -> bool:
    """Whether a person is watching: a terminal or a notebook, not a pipe or pytest."""
    if "pytest" in sys.modules or os.environ.get("BAYESMIX_QUIET"):
        return False
    return _in_notebook() or sys.stderr.isatty()


def _tqdm() -> Any:
    # Widgets in notebooks when ipywidgets is there; plain text otherwise
    # (tqdm.auto would warn "IProgress not found" into the notebook).
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm
            return tqdm
        except ImportError:
            pass
    from tqdm import tqdm
    return tqdm


_ITERATION = re.compile(r"^(?:Chain \[(\d+)\] )?Iteration:\s*(\d+)\s*/\s*(\d+)")


@dataclass
class SamplingProgress:
    """A progress bar over all chains, fed by Stan's console lines
    (`Iteration: k / n`, prefixed `Chain [c] ` when several chains run)."""
    total: int = 0  # unused: the bar's length comes from Stan's own `/ n`
    show: bool | None = None  # None: only where a person is watching
    chains: int = 1
    done: dict = field(default_factory=dict)  # chain -> last iteration reported
    _bar: Any = None
    _start: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.show is None:
            self.show = watched()

    def update(self, line: str) -> None:
        m = _ITERATION.match(line) if self.show else None
        if m is None:
            return
        self.done[m.group(1) or "1"] = int(m.group(2))
        if self._bar is None:
            if time.monotonic() - self._start < BAR_DELAY:
                return
            self._bar = _tqdm()(total=self.chains * int(m.group(3)),
                                desc=f"sampling {self.chains} chain"
                                f"{'s' if self.chains != 1 else ''}", file=sys.stderr,
                                leave=True, dynamic_ncols=True, unit="it",
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                                           "{n_fmt}/{total_fmt} [{elapsed}<{remaining}]")
        self._bar.update(sum(self.done.values()) - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._bar.total - self._bar.n)  # Stan's last report may precede n
            self._bar.close()
