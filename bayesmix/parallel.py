"""Run many independent tasks (bootstrap refits, lmList cells, SBC fits) on an executor.

`run_tasks(fn, shared, items, executor=...)` calls ``fn(shared, item)`` for every item and
returns the results in the items' order. Items are sent in chunks, and ``shared`` (a design,
a refitter, a model) travels once per chunk rather than once per item; on a Dask cluster it is
scattered to the workers once.

``executor`` may be:

* ``None`` -- a process pool over this machine's cores, created for the call and shut down
  after it (forked workers on Linux, so they start without importing bayesmix again);
* ``"serial"`` (or ``1``) -- everything in this process, no pool;
* an int ``n`` -- a process pool of ``n`` workers;
* any ``concurrent.futures.Executor`` (a ``ProcessPoolExecutor``, a ``ThreadPoolExecutor``,
  ``client.get_executor()`` of Dask) -- used as is and left running;
* a Dask ``distributed.Client`` -- its workers (``client.submit`` with the shared part
  scattered once).

Results never depend on the executor: every item carries its own seed (see `spawn_seeds`) and
runs the same code in every case. Workers run with one BLAS thread (small dense algebra gains
nothing from more and oversubscribes the machine). A tqdm bar counts finished items when a
person is watching (`bayesmix.engine.console.watched`); never in pipes or tests.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence

import numpy as np

from .threads import cores

__all__ = ["run_tasks", "spawn_seeds", "stan_seed", "n_workers", "default_executor",
           "Portable", "use_cache", "ship_programs"]


class Portable:
    """Carries an object between processes: plain pickle when it can, cloudpickle otherwise
    (lambdas, functions defined in __main__ or a notebook, fits holding such functions).
    Calling it calls the object (for a user's statistic)."""

    def __init__(self, obj: Any):
        self.obj = obj

    def __reduce__(self):
        import pickle
        try:
            pickle.dumps(self.obj)
            return (Portable, (self.obj,))
        except Exception:
            try:
                import cloudpickle
            except ImportError:  # pragma: no cover - dask brings cloudpickle
                raise TypeError(f"cannot send {type(self.obj).__name__} to a worker process: "
                                "it cannot be pickled (define functions at module level or "
                                "install cloudpickle)") from None
            return (_from_cloudpickle, (cloudpickle.dumps(self.obj),))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.obj(*args, **kwargs)


def _from_cloudpickle(blob: bytes) -> Portable:
    import cloudpickle
    return Portable(cloudpickle.loads(blob))


def spawn_seeds(seed: Any, n: int) -> list[np.random.SeedSequence]:
    """One independent child seed per task: ``numpy.random.SeedSequence(seed).spawn(n)``.

    ``seed`` may be an int, None (fresh entropy; the result then cannot be repeated) or a
    SeedSequence. Task i always gets the i-th child whatever the executor or chunking."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return ss.spawn(n)


def stan_seed(child: np.random.SeedSequence) -> int:
    """A seed for Stan (0 .. 2^31 - 1) derived from a task's own SeedSequence."""
    return int(child.generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)



def _is_dask_client(obj: Any) -> bool:
    return type(obj).__name__ == "Client" and hasattr(obj, "scatter") and hasattr(obj, "submit")


def n_workers(executor: Any) -> int:
    """How many tasks the executor runs at once (for chunking)."""
    if executor is None:
        return cores()
    if executor == "serial":
        return 1
    if isinstance(executor, int):
        return max(1, executor)
    if _is_dask_client(executor):
        try:
            return max(1, sum(executor.nthreads().values()))
        except Exception:  # pragma: no cover - a client without workers yet
            return 1
    for attr in ("_max_workers", "max_workers"):
        n = getattr(executor, attr, None)
        if isinstance(n, int) and n > 0:
            return n
    client = getattr(executor, "_client", None)  # dask's ClientExecutor
    if client is not None and _is_dask_client(client):
        return n_workers(client)
    return cores()


def default_executor(workers: int | None = None) -> ProcessPoolExecutor:
    """A process pool over the machine's cores. Forked workers (Linux, no other threads in
    this process) start at once with everything imported; otherwise the platform's
    default start method."""
    workers = workers or cores()
    ctx = None
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        ctx = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def _run_chunk(fn: Callable, shared: Any, chunk: Sequence) -> Portable:
    """Worker side: one BLAS thread, then fn(shared, item) for the chunk's items in order
    (returned wrapped, so results holding lambdas travel back too)."""
    from .optimizer import one_blas_thread
    with one_blas_thread():
        return Portable([fn(shared, item) for item in chunk])


def _chunks(items: Sequence, size: int) -> list[tuple[int, list]]:
    return [(i, list(items[i:i + size])) for i in range(0, len(items), size)]


def _progress(total: int, desc: str, show: bool | None):
    from .engine.console import _tqdm, watched
    if show is None:
        show = watched()
    if not show:
        return None
    return _tqdm()(total=total, desc=desc, file=sys.stderr, leave=True, dynamic_ncols=True)


def run_tasks(fn: Callable[[Any, Any], Any], shared: Any, items: Sequence, executor: Any = None,
              chunksize: int | None = None, progress: bool | None = None,
              desc: str = "tasks") -> list:
    """``[fn(shared, item) for item in items]`` on an executor (see the module docstring).

    fn must be a module-level function (it is pickled by reference). chunksize defaults to
    about four chunks per worker; progress=None shows a bar only when a person watches."""
    items = list(items)
    if not items:
        return []
    if executor == 1:
        executor = "serial"
    workers = n_workers(executor)
    if chunksize is None:
        chunksize = max(1, math.ceil(len(items) / (4 * workers))) if workers > 1 else len(items)
    chunks = _chunks(items, chunksize)
    bar = _progress(len(items), desc, progress)
    results: list = [None] * len(items)

    def store(start: int, out: list) -> None:
        results[start:start + len(out)] = out
        if bar is not None:
            bar.update(len(out))

    try:
        if executor == "serial":
            from .optimizer import one_blas_thread
            with one_blas_thread():
                for i, item in enumerate(items):
                    store(i, [fn(shared, item)])
            return results
        if _is_dask_client(executor):
            shared_f = executor.scatter(shared, broadcast=True, hash=False)
            futs = {executor.submit(_run_chunk, fn, shared_f, chunk, pure=False): start
                    for start, chunk in chunks}
            from distributed import as_completed as dask_completed
            for fut in dask_completed(futs):
                store(futs[fut], fut.result().obj)
            return results
        own = executor is None or isinstance(executor, int)
        pool: Executor = default_executor(None if executor is None else executor) if own \
            else executor
        try:
            futs = {pool.submit(_run_chunk, fn, shared, chunk): start for start, chunk in chunks}
            try:
                for fut in as_completed(futs):
                    store(futs[fut], fut.result().obj)
            except BaseException:
                for f in futs:
                    f.cancel()
                raise
        finally:
            if own:
                pool.shutdown(wait=True, cancel_futures=True)
        return results
    finally:
        if bar is not None:
            bar.close()


# ---------------------------------------------------------------------------------------------
# Compiled programs on Dask workers (see docs/parallel.md)
# ---------------------------------------------------------------------------------------------


def _set_cache(path: str | None) -> str:
    from .engine import cache_root, compile_model
    if path is None:
        os.environ.pop("BAYESMIX_CACHE", None)
    else:
        os.environ["BAYESMIX_CACHE"] = str(path)
    compile_model.cache_clear()  # programs found under the old folder are forgotten
    return str(cache_root())


def use_cache(client: Any, path: str | None) -> dict:
    """Point every current worker of a Dask client at the compile cache ``path`` (a folder
    all of them can read and write, e.g. on a shared file system); None restores each
    worker's default. Workers started later need BAYESMIX_CACHE in their environment.
    Returns {worker address: its cache folder}."""
    return client.run(_set_cache, None if path is None else str(path))


def _pack_programs(objects: bool, models: Sequence | None = None) -> bytes:
    """A tar of the current toolchain's driver folder (libtbb) and compiled executables
    (optionally their object files); models: only these compiled programs (their keys)."""
    import io
    import tarfile
    from .engine import bundled_toolchain, cache_root
    root, tc = cache_root(), bundled_toolchain()
    keys = None if models is None else {getattr(m, "key", m) for m in models}
    files = [p for p in (tc.home / f"driver-{tc.driver_key}").glob("*")
             if objects or p.suffix != ".o"]
    for entry in sorted((tc.home / "models").glob("*")):
        if not entry.is_dir() or (keys is not None and entry.name not in keys):
            continue
        files += sorted((entry / f"bin-{tc.driver_key}").glob("*"))
        if objects:
            files += [entry / "model.o", entry / "model.o.sha256"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in files:
            if path.is_file() and not path.name.endswith(".lock"):
                tar.add(str(path), arcname=str(path.relative_to(root)))
    return buf.getvalue()


def _unpack_programs(blob: bytes) -> int:
    import io
    import tarfile
    from .engine import cache_root, compile_model
    root = cache_root()
    n = 0
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        for member in tar.getmembers():
            target = root / member.name
            if not member.isfile() or target.exists() or ".." in member.name.split("/"):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # a private temporary name, then an atomic rename: workers sharing one folder
            # may unpack the same file at once
            import tempfile
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(tar.extractfile(member).read())
            os.chmod(tmp, member.mode)
            os.replace(tmp, target)
            n += 1
    compile_model.cache_clear()
    return n


def ship_programs(client: Any, models: Sequence | None = None, objects: bool = False) -> dict:
    """Copy this machine's compiled Stan programs into every Dask worker's own cache, so
    workers run them without compiling: the executables of the current toolchain and driver
    (all of them, or only ``models``: compiled programs from bayesmix.engine.compile_model,
    or their keys) with the driver folder's runtime library; object files too with
    objects=True (needed only to relink after a driver change). Files a worker already has
    are kept.

    The executables find the Stan runtime library (libtbb) through a path relative to
    themselves, so the workers' cache folder may be anywhere (same OS image and compiler);
    otherwise share one cache folder (use_cache) or let each worker compile once.
    Returns {worker address: files written}."""
    return client.run(_unpack_programs, _pack_programs(objects, models))
