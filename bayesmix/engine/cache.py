"""Build-once cache entries that are safe across processes.

A build runs in a private temporary folder next to its target and is
renamed into place only when complete, under a file lock: concurrent
callers wait for one build, and an interrupted build never leaves a
half-built target behind (only a stale temporary folder, removed later)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterator

from filelock import FileLock


def atomic_build(target: Path, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """Return (`target`, whether this call built it), building it with
    `build(tmpdir)` if it is missing."""
    if target.is_dir():
        return target, False
    with cache_errors(target.parent):
        return _locked_build(target, build)


_CACHE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                 errno.ENOTDIR}


@contextmanager
def cache_errors(folder: Path) -> Iterator[None]:
    """A read-only, full or misplaced cache folder as one clear error."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _CACHE_ERRNOS:
            raise
        from ..errors import ToolchainError
        raise ToolchainError(
            f"cannot write the compile cache at {folder}: {exc.strerror or exc}. "
            "Free space there or set BAYESMIX_CACHE to a writable folder") from None


def _locked_build(target: Path, build: Callable[[Path], None]) -> tuple[Path, bool]:
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_dir():  # another process finished while we waited
            return target, False
        _remove_stale(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target, True


def _remove_stale(target: Path) -> None:
    # Leftovers of builds killed before their cleanup could run. We hold
    # the lock, so no live build of this target owns them.
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


# Compiler processes started by build steps, possibly in worker threads: a
# Ctrl-C in the main thread stops them all at once instead of waiting for
# each compile to finish (their builds then clean up as failed ones do).
_compilers: set[subprocess.Popen] = set()
_compilers_lock = threading.Lock()


def run_compiler(cmd: list[str]) -> subprocess.CompletedProcess:
    """subprocess.run for a build tool, registered so stop_compilers() reaches it."""
    # its own process group: g++ runs cc1plus/as/ld as children, which must stop too
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True) as proc:
        with _compilers_lock:
            _compilers.add(proc)
        try:
            out, err = proc.communicate()
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            with _compilers_lock:
                _compilers.discard(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def stop_compilers() -> None:
    with _compilers_lock:
        for proc in list(_compilers):
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
