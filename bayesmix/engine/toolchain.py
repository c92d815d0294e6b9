"""The bundled Stan toolchain: stanc, headers and libraries from the httpstan
wheel, plus our driver, compiled once per toolchain into the cache."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import platformdirs

from ..errors import ToolchainError
from .cache import atomic_build, run_compiler, stop_compilers
from .console import say, timed

CXX_FLAGS = (
    "-std=c++17", "-pthread", "-O3", "-DBOOST_DISABLE_ASSERTS",
    "-DBOOST_PHOENIX_NO_VARIADIC_EXPRESSION", "-DSTAN_THREADS", "-D_REENTRANT",
    "-Wno-sign-compare", "-Wno-ignored-attributes", "-Wno-deprecated-declarations",
)
LIBS = ("-ltbb", "-lsundials_cvodes", "-lsundials_idas", "-lsundials_kinsol",
        "-lsundials_nvecserial")
DRIVER_SOURCE = Path(__file__).with_name("driver.cpp")


_STARTED: dict[str, tuple[Future, Future]] = {}  # toolchain builds under way, per process
_STARTED_LOCK = threading.Lock()


def wait_for(future: Future):
    """A background build's result; Ctrl-C while waiting stops every compiler."""
    try:
        return future.result()
    except KeyboardInterrupt:
        stop_compilers()
        raise


def cache_root() -> Path:
    """Where compiled programs live: $BAYESMIX_CACHE or the user cache dir."""
    root = os.environ.get("BAYESMIX_CACHE") or platformdirs.user_cache_dir("bayesmix")
    return Path(root)


@dataclass(frozen=True)
class Toolchain:
    stanc: Path
    include: Path
    lib: Path
    cxx: str
    stan_version: str
    stanc_version: str
    flags: tuple[str, ...] = CXX_FLAGS

    @property
    def key(self) -> str:
        """Identifies the compiler setup: model objects and the precompiled
        header are only reused under it. The driver has a key of its own, so
        a driver change relinks programs instead of recompiling them."""
        h = hashlib.sha256()
        for part in (self.stanc_version, self.cxx_version, " ".join(self.flags)):
            h.update(part.encode())
        return h.hexdigest()[:16]

    @property
    def driver_key(self) -> str:
        return hashlib.sha256(DRIVER_SOURCE.read_bytes() + self.key.encode()).hexdigest()[:12]

    @property
    def cxx_version(self) -> str:
        return _cxx_version(self.cxx)

    @property
    def home(self) -> Path:
        return cache_root() / f"toolchain-{self.key}"

    @property
    def ready(self) -> bool:
        """Whether the one-time builds (driver, precompiled header) are done."""
        return (self.home / f"driver-{self.driver_key}").is_dir() and (
            os.environ.get("BAYESMIX_NO_PCH") is not None or (self.home / "pch").is_dir())

    def driver_dir(self) -> Path:
        """Our `main` compiled once per toolchain (~40 s the first time), with
        libtbb beside it (binaries find it through an rpath)."""
        def build(tmp: Path) -> None:
            with timed("compiling the bayesmix Stan driver"):
                self._run([self.cxx, *self.flags, f"-I{self.include}", "-c",
                           str(DRIVER_SOURCE), "-o", str(tmp / "driver.o")],
                          "compiling the bayesmix Stan driver")
            for lib in self.lib.glob("libtbb.so*"):
                shutil.copy2(lib, tmp / lib.name)
        return atomic_build(self.home / f"driver-{self.driver_key}", build)[0]

    def driver_object(self) -> Path:
        return self.driver_dir() / "driver.o"

    def pch_dir(self) -> Path | None:
        """Precompiled stan/model/model_header.hpp (halves model compile
        time). Only used when built with exactly our flags (-Winvalid-pch)."""
        if os.environ.get("BAYESMIX_NO_PCH"):
            return None

        def build(tmp: Path) -> None:
            out = tmp / "stan" / "model" / "model_header.hpp.gch"
            out.parent.mkdir(parents=True)
            with timed("precompiling the Stan model header"):
                self._run([self.cxx, *self.flags, f"-I{self.include}", "-x", "c++-header",
                           str(self.include / "stan/model/model_header.hpp"), "-o", str(out)],
                          "precompiling the Stan model header")
        return atomic_build(self.home / "pch", build)[0]

    def start(self) -> tuple[Future, Future]:
        """Start the one-time builds (driver, precompiled header) side by side in the
        background, once per process; returns their futures (driver folder, header
        folder or None). A program's object file needs only the header, so it can
        compile while the driver is still building."""
        with _STARTED_LOCK:
            key = f"{self.home}/{self.driver_key}"  # the cache folder may change
            futures = _STARTED.get(key)
            if futures is None or any(f.done() and f.exception() for f in futures):
                if not self.ready:
                    say("building the Stan toolchain for this machine, once "
                        f"(cache: {cache_root()})")
                pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bayesmix-build")
                futures = _STARTED[key] = (pool.submit(self.driver_dir),
                                           pool.submit(self.pch_dir))
                pool.shutdown(wait=False)
            return futures

    def prepare(self) -> tuple[Path, Path | None]:
        """Build the driver and the precompiled header (once per machine) and wait for
        both; returns (driver folder, header folder or None)."""
        driver, pch = self.start()
        return wait_for(driver), wait_for(pch)

    def _run(self, cmd: list[str], what: str) -> None:
        proc = run_compiler(cmd)
        if proc.returncode != 0:
            raise ToolchainError(f"{what} failed:\n{proc.stderr[-4000:]}")


@cache
def _cxx_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ToolchainError(f"C++ compiler {cxx!r} not usable: {exc}") from exc


@cache
def bundled_toolchain() -> Toolchain:
    try:
        import httpstan
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise ToolchainError("the bundled engine needs the httpstan wheel "
                             "(pip install httpstan==4.13.0)") from exc
    root = Path(httpstan.__file__).parent
    stanc = root / "stanc"
    if not stanc.exists():
        raise ToolchainError(f"stanc not found in the httpstan wheel at {stanc}")
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise ToolchainError(f"no C++ compiler: {cxx!r} is not on PATH "
                             "(install g++ or set CXX)")
    stanc_version = subprocess.run([str(stanc), "--version"], capture_output=True,
                                   text=True).stdout.strip()
    version = stanc_version.split("v")[-1].split()[0]
    return Toolchain(stanc=stanc, include=root / "include", lib=root / "lib", cxx=cxx,
                     stan_version=version, stanc_version=stanc_version)
