"""The bundled engine: stanc + g++ from the httpstan wheel, our driver."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from ..errors import StanError
from .base import (Engine, EngineInfo, RunResult, _seed, mode_values, run_process,
                   stan_messages, write_json)
from .cache import atomic_build, cache_errors, run_compiler
from .console import timed
from .stanfiles import user_header
from .toolchain import LIBS, Toolchain, bundled_toolchain, wait_for

class BundledModel(Engine):
    """A Stan program compiled with the bundled toolchain (cached)."""

    def __init__(self, code: str, name: str = "model",
                 toolchain: Toolchain | None = None):
        self.code = code
        self.name = name
        self.toolchain = toolchain or bundled_toolchain()
        self.header = user_header(code)  # C++ of the functions declared without a body
        extra = self.header.read_text() if self.header else ""
        self.key = hashlib.sha256((code + self.toolchain.key + extra).encode()).hexdigest()[:20]
        self.compile_seconds = 0.0
        self.built = False  # whether this instance ran the compiler
        self.exe = self._compile()

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("bundled", self.toolchain.stan_version,
                          self.toolchain.cxx_version, self.toolchain.flags)

    def _compile(self) -> Path:
        """The program's executable: its object file is built once per program
        and toolchain, then linked with the current driver. A cached
        executable is checked against its recorded checksum before it runs;
        a damaged one is removed and rebuilt."""
        start = time.perf_counter()
        tc = self.toolchain
        entry = tc.home / "models" / self.key
        exe_dir = entry / f"bin-{tc.driver_key}"
        if not _intact(exe_dir):
            driver_build = tc.start()  # in the background, once
            self._check_syntax()  # stanc errors before any C++ build
            with cache_errors(entry.parent):
                entry.parent.mkdir(parents=True, exist_ok=True)
                with FileLock(str(entry) + ".check.lock"):
                    if exe_dir.is_dir() and not _intact(exe_dir):
                        shutil.rmtree(exe_dir)  # damaged: rebuild rather than run it
                    if not _intact(entry, "model.o"):
                        shutil.rmtree(entry, ignore_errors=True)
                    # the object does not need the driver: it compiles while the driver builds
                    _, compiled = atomic_build(entry, self._build_object)
                    driver = wait_for(driver_build)
                    _, linked = atomic_build(exe_dir,
                                             lambda tmp: self._link(tmp, entry, driver))
            self.built = compiled or linked
        self.compile_seconds = time.perf_counter() - start
        return exe_dir / "model"

    def _stanc(self, stan_file: Path, hpp: Path) -> None:
        undefined = ["--allow-undefined"] if self.header else []
        proc = run_compiler([str(self.toolchain.stanc), f"--name={self.name}_model", *undefined,
                             str(stan_file), f"--o={hpp}"])
        if proc.returncode != 0:
            raise StanError(f"stanc rejected the program {self.name!r}:\n"
                            + (proc.stderr or proc.stdout).strip())

    def _check_syntax(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            stan_file = Path(tmp) / f"{self.name}.stan"
            stan_file.write_text(self.code)
            self._stanc(stan_file, Path(tmp) / "model.hpp")

    def _build_object(self, tmp: Path) -> None:
        tc = self.toolchain
        stan_file = tmp / f"{self.name}.stan"
        stan_file.write_text(self.code)
        hpp = tmp / "model.hpp"
        self._stanc(stan_file, hpp)
        with timed(f"compiling the Stan program {self.name!r}"):
            header = ["-include", str(self.header)] if self.header else []
            proc = run_compiler([tc.cxx, *tc.flags, f"-I{tc.include}", *header, "-x", "c++", "-c",
                                 str(hpp), "-o", str(tmp / "model.o")])
        if proc.returncode != 0:
            raise StanError(f"C++ compilation of {self.name!r} failed:\n{proc.stderr[-4000:]}")
        hpp.unlink()
        _seal(tmp, "model.o")

    def _link(self, tmp: Path, entry: Path, driver: Path) -> None:
        tc = self.toolchain
        proc = run_compiler([tc.cxx, "-pthread", str(driver / "driver.o"),
                             str(entry / "model.o"), "-o", str(tmp / "model"),
                             f"-L{tc.lib}", *LIBS,
                             # relative: a copied cache folder (e.g. on cluster workers) works
                             f"-Wl,-rpath,$ORIGIN/../../../{driver.name}"])
        if proc.returncode != 0:
            raise StanError(f"linking {self.name!r} failed:\n{proc.stderr[-4000:]}")
        _seal(tmp, "model")

    # -- methods -----------------------------------------------------------
    def _run(self, method: str, data: dict, args: dict[str, Any], output_dir: str | None,
             inits: dict | None = None, progress_total: int = 0,
             show_progress: bool | None = False,
             accept_codes: tuple[int, ...] = (0,), extra_files: dict | None = None) -> RunResult:
        out = self._output_dir(output_dir)
        data_file = out / "data.bin"  # our driver reads it without parsing (JSON: exports)
        write_binary_data(data_file, data)
        cmd = [str(self.exe), method, f"data={data_file}", f"model_name={self.name}"]
        if inits is not None:
            write_json(out / "inits.json", inits)
            cmd.append(f"init={out / 'inits.json'}")
        for fname, content in (extra_files or {}).items():
            write_json(out / fname, content)
        if method == "sample":
            cmd.append(f"output={out / self.name}")
            csv = tuple(str(out / f"{self.name}_{c + 1}.csv") for c in range(args["chains"]))
        else:
            cmd.append(f"output={out / f'{self.name}-{method}.csv'}")
            csv = (str(out / f"{self.name}-{method}.csv"),)
        cmd += [f"{k}={_fmt(v)}" for k, v in args.items()
                if k not in ("output", "data", "init") and v is not None]
        start = time.perf_counter()
        code, console = run_process(cmd, progress_total=progress_total,
                                    show_progress=show_progress,
                                    chains=int(args.get("chains", 1)))
        elapsed = time.perf_counter() - start
        data_file.unlink(missing_ok=True)  # read once; the largest file of a run
        if code not in accept_codes or not all(Path(f).exists() for f in csv):
            raise StanError(f"Stan {method} failed (exit code {code}):\n{stan_messages(console)}")
        return RunResult(method, csv, dict(args), self.info, console, code, elapsed)

    def laplace(self, data: dict, mode: RunResult, *, draws: int = 1000,
                jacobian: bool = True, seed: int | None = None,
                output_dir: str | None = None) -> RunResult:
        """Draws from the normal approximation at the mode of an optimize run."""
        values = mode_values(mode.csv_files[0])
        out = self._output_dir(output_dir)
        args = dict(draws=draws, jacobian=int(jacobian), seed=_seed(seed),
                    mode=str(out / "mode.json"), mode_csv=mode.csv_files[0], refresh=0)
        return self._run("laplace", data, args, str(out), extra_files={"mode.json": values})


BINARY_MAGIC = b"BMXDATA1"


def _binary_value(name: str, value: Any) -> tuple[int, np.ndarray]:
    """(type code, column-major values) of one data variable: 0 float64, 1 int32."""
    arr = np.asarray(value)
    if arr.dtype == object:
        arr = np.asarray(value, dtype=float)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int32)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.max() > np.iinfo(np.int32).max or arr.min() < np.iinfo(np.int32).min):
            raise StanError(f"data variable {name!r} has integers outside Stan's int range")
        return 1, arr.astype("<i4", copy=False)
    if arr.dtype.kind == "f":
        return 0, arr.astype("<f8", copy=False)
    raise StanError(f"data variable {name!r} of type {arr.dtype} cannot be passed to Stan")


def write_binary_data(path: Path, data: dict[str, Any]) -> None:
    """Stan data in the driver's binary format (layout at the top of driver.cpp): per
    variable its name, type, dimensions and raw little-endian values, column-major."""
    with open(path, "wb") as fh:
        fh.write(BINARY_MAGIC)
        fh.write(np.uint32(len(data)).astype("<u4").tobytes())
        for name, value in data.items():
            code, arr = _binary_value(name, value)
            key = name.encode()
            fh.write(np.uint32(len(key)).astype("<u4").tobytes() + key)
            fh.write(np.uint8(code).tobytes())
            fh.write(np.uint32(arr.ndim).astype("<u4").tobytes())
            fh.write(np.asarray(arr.shape, "<u8").tobytes())
            fh.write(arr.tobytes(order="F"))


def _fmt(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _seal(folder: Path, name: str = "model") -> None:
    """Record a build's checksum beside it (checked before every use)."""
    (folder / f"{name}.sha256").write_text(_digest(folder / name))


def _intact(folder: Path, name: str = "model") -> bool:
    """Whether a cached build exists and matches its recorded checksum."""
    try:
        return (folder / f"{name}.sha256").read_text() == _digest(folder / name)
    except OSError:
        return False
