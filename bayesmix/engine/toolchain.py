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
# The driver runs Stan's services (NUTS, L-BFGS, Laplace); the arithmetic that matters is the
# model's gradient, compiled at -O3 in each program's object. At -O1 the driver compiles in
# ~50 s instead of ~75 s and gives bit-identical draws at the same speed (measured:
# docs/architecture.md, "Where a first run's time goes").
def driver_flags(flags: tuple[str, ...]) -> tuple[str, ...]:
    return tuple("-O1" if f == "-O3" else f for f in flags)


# BAYESMIX_NATIVE=1 compiles programs for the CPU they run on (-march=native: Eigen's dense
# kernels use AVX2 / AVX-512 and FMA; InstEval REML: Stan 1.59 -> 1.01 s, measured back to back).
# Off by default: FMA changes the last bits, so the same seed would no longer give the same
# draws and optima as CmdStan's portable builds of the same program. The driver and every
# object must agree (Eigen's alignment is part of the ABI), so the flag is part of the
# toolchain, and the CPU's target options are part of its cache key.
NATIVE = "-march=native"


@cache
def _native_target(cxx: str) -> str | None:
    """The target options -march=native resolves to (gcc), or None when the compiler
    cannot tell (then programs are built for the generic x86-64 / arm64 target)."""
    if os.environ.get("BAYESMIX_NATIVE", "") in ("", "0"):
        return None
    try:
        proc = subprocess.run([cxx, NATIVE, "-Q", "--help=target"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0 or "-march=" not in proc.stdout:
        return None
    return proc.stdout


LIBS = ("-ltbb", "-lsundials_cvodes", "-lsundials_idas", "-lsundials_kinsol",
        "-lsundials_nvecserial")
DRIVER_SOURCE = Path(__file__).with_name("driver.cpp")


_STARTED: dict[str, Future] = {}  # driver builds under way, per process
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
    target: str = ""          # what NATIVE resolves to, when it is among the flags

    @property
    def key(self) -> str:
        """Identifies the compiler setup: model objects are only reused under
        it. The driver has a key of its own, so
        a driver change relinks programs instead of recompiling them."""
        h = hashlib.sha256()
        for part in (self.stanc_version, self.cxx_version, " ".join(self.flags), self.target):
            h.update(part.encode())
        return h.hexdigest()[:16]

    @property
    def driver_flags(self) -> tuple[str, ...]:
        return driver_flags(self.flags)

    @property
    def driver_key(self) -> str:
        return hashlib.sha256(DRIVER_SOURCE.read_bytes() + self.key.encode()
                              + " ".join(self.driver_flags).encode()).hexdigest()[:12]

    @property
    def cxx_version(self) -> str:
        return _cxx_version(self.cxx)

    @property
    def home(self) -> Path:
        return cache_root() / f"toolchain-{self.key}"

    @property
    def ready(self) -> bool:
        """Whether the one-time build (the driver) is done."""
        return (self.home / f"driver-{self.driver_key}").is_dir()

    def driver_dir(self) -> Path:
        """Our `main` compiled once per toolchain (~50 s the first time), with
        libtbb beside it (binaries find it through an rpath)."""
        def build(tmp: Path) -> None:
            with timed("compiling the bayesmix Stan driver"):
                self._run([self.cxx, *self.driver_flags, f"-I{self.include}", "-c",
                           str(DRIVER_SOURCE), "-o", str(tmp / "driver.o")],
                          "compiling the bayesmix Stan driver")
            for lib in self.lib.glob("libtbb.so*"):
                shutil.copy2(lib, tmp / lib.name)
        return atomic_build(self.home / f"driver-{self.driver_key}", build)[0]

    def driver_object(self) -> Path:
        return self.driver_dir() / "driver.o"

    def start(self) -> Future:
        """Start the one-time build (the driver) in the background, once per process;
        returns its future (the driver folder). A program's object file does not need
        the driver, so it compiles on the other core meanwhile; the driver is needed
        only to link. (No precompiled header: with Stan's headers it saves ~5 s per
        program and costs ~30 s and 800 MB once, a loss for the four generic programs.)"""
        with _STARTED_LOCK:
            key = f"{self.home}/{self.driver_key}"  # the cache folder may change
            future = _STARTED.get(key)
            if future is None or (future.done() and future.exception()):
                if not self.ready:
                    say("building the Stan toolchain for this machine, once "
                        f"(cache: {cache_root()})")
                pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bayesmix-build")
                future = _STARTED[key] = pool.submit(self.driver_dir)
                pool.shutdown(wait=False)
            return future

    def prepare(self) -> Path:
        """Build the driver (once per machine) and wait for it; returns its folder."""
        return wait_for(self.start())

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
    target = _native_target(cxx)
    flags = CXX_FLAGS + ((NATIVE,) if target else ())
    return Toolchain(stanc=stanc, include=root / "include", lib=root / "lib", cxx=cxx,
                     stan_version=version, stanc_version=stanc_version, flags=flags,
                     target=target or "")
