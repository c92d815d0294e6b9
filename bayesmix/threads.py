"""How many cores this process may use (its CPU affinity, as a batch scheduler or
`taskset` sets it; the machine's count where there is no affinity)."""

from __future__ import annotations

import os


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


__all__ = ["cores"]
