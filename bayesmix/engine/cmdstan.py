"""The CmdStan engine: programs compiled by CmdStan's own `make`, run as CmdStan
command lines.

cmdstanpy finds the installation (`$CMDSTAN`, `~/.cmdstan`, or
`cmdstanpy.set_cmdstan_path`) and reads the CSV files back (`RunResult.fit`).
Runs do not go through cmdstanpy's fit objects: the executable is called with
the command line `cmdstan_command` builds, the same one an exported bundle's
README prints, so that the return code (70 for an L-BFGS line-search failure)
and Stan's console messages are real, the accepted codes are the bundled
engine's, and nothing is printed (progress only with show_progress).

Both engines take and record the same arguments and give identical results
for the same seed: the bundled driver and CmdStan call the same Stan service
functions with the same settings."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import StanError
from .base import (OPTIMIZE_SOFT_FAILURE, Engine, EngineInfo, RunResult, _last_csv_row, _seed,
                   import_cmdstanpy, mode_values, run_process, stan_messages, write_json)
from .cache import atomic_build, run_compiler
from .stanfiles import user_header
from .toolchain import cache_root

logger = logging.getLogger("bayesmix")

# L-BFGS/BFGS settings: CmdStan takes them right after `algorithm=lbfgs|bfgs`.
_OPTIMIZER_SETTINGS = ("init_alpha", "tol_obj", "tol_rel_obj", "tol_grad", "tol_rel_grad",
                       "tol_param", "history_size")


def cmdstan_available() -> bool:
    try:
        path = Path(import_cmdstanpy().cmdstan_path())
        return (path / "makefile").exists()
    except (ValueError, ImportError, OSError):
        return False


# ------------------------------------------------------------------ command lines


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(int(v))
    return repr(v) if isinstance(v, float) else str(v)


def cmdstan_command(method: str, args: dict[str, Any], *, data: str, output: str,
                    init: str | None = None, mode: str | None = None) -> list[str]:
    """The CmdStan arguments (after the executable) that run `method` with the
    recorded `args` of a run (either engine's record).

    Order matters in CmdStan's argument tree: a keyword is looked up among the
    children of the last keyword given and then its ancestors, never below. So
    L-BFGS settings follow `algorithm=lbfgs`, then the optimize-level `jacobian`
    and `iter`; `adapt delta` precedes `algorithm=hmc engine=nuts max_depth`."""
    a = {k: v for k, v in args.items() if v is not None}
    out: list[str] = [method]
    if method == "sample":
        out += [f"num_samples={a.get('num_samples', 1000)}",
                f"num_warmup={a.get('num_warmup', 1000)}"]
        if "save_warmup" in a:
            out.append(f"save_warmup={_fmt(a['save_warmup'])}")
        out += [f"thin={a.get('thin', 1)}", "adapt", f"delta={_fmt(a.get('adapt_delta', 0.8))}",
                "algorithm=hmc", "engine=nuts", f"max_depth={a.get('max_depth', 10)}",
                f"metric={a.get('metric', 'diag_e')}"]
        if "stepsize" in a:
            out.append(f"stepsize={_fmt(a['stepsize'])}")
        out.append(f"num_chains={a.get('chains', 1)}")
    elif method == "optimize":
        algorithm = a.get("algorithm", "lbfgs")
        out.append(f"algorithm={algorithm}")
        if algorithm in ("lbfgs", "bfgs"):
            out += [f"{k}={_fmt(a[k])}" for k in _OPTIMIZER_SETTINGS
                    if k in a and (algorithm == "lbfgs" or k != "history_size")]
        out += [f"jacobian={_fmt(a.get('jacobian', 0))}", f"iter={a.get('iter', 2000)}"]
    elif method == "laplace":
        out += [f"mode={mode or a.get('mode_csv') or a.get('mode')}",
                f"jacobian={_fmt(a.get('jacobian', 1))}", f"draws={a.get('draws', 1000)}"]
    else:
        raise StanError(f"unknown Stan method {method!r}")
    out += ["data", f"file={data}"]
    if init is not None:
        out.append(f"init={init}")  # CmdStan's radius for values the file lacks is 2
    elif method != "laplace" and "init_radius" in a:
        out.append(f"init={_fmt(a['init_radius'])}")
    out += ["random", f"seed={a.get('seed', 0)}", "output", f"file={output}"]
    if "refresh" in a:
        out.append(f"refresh={a['refresh']}")
    # The bundled driver writes optima with 17 significant digits: the same here.
    sig_figs = a.get("sig_figs", 17 if method == "optimize" else None)
    if sig_figs is not None:
        out.append(f"sig_figs={sig_figs}")
    return out


def cmdstan_output_files(method: str, args: dict[str, Any], output: str) -> list[str]:
    """The CSV files CmdStan writes for `output file=...` (per chain when several)."""
    chains = int(args.get("chains") or 1) if method == "sample" else 1
    if chains == 1:
        return [output]
    stem, ext = os.path.splitext(output)
    return [f"{stem}_{c + 1}{ext}" for c in range(chains)]


# ------------------------------------------------------------------ the installation


@dataclass(frozen=True)
class CmdStanSetup:
    """One CmdStan installation and the build settings its `make` would use."""
    home: Path
    stan_version: str
    compiler: str
    flags: tuple[str, ...]
    key: str

    @property
    def info(self) -> EngineInfo:
        return EngineInfo("cmdstan", self.stan_version, self.compiler, self.flags)


def _make() -> str:
    return os.environ.get("MAKE", "make")


def user_header_args(header: Path | str | None) -> list[str]:
    """make's variables for a program whose functions include C++ ones (`user_header`)."""
    return ["STANCFLAGS=--allow-undefined", f"USER_HEADER={header}"] if header else []


def _stan_version(home: Path) -> str:
    header = home / "stan" / "src" / "stan" / "version.hpp"
    if header.exists():
        text = header.read_text()
        parts = [re.search(rf"#define STAN_{p} (\d+)", text) for p in ("MAJOR", "MINOR", "PATCH")]
        if all(parts):
            return ".".join(m.group(1) for m in parts)  # type: ignore[union-attr]
    m = re.search(r"CMDSTAN_VERSION\s*:?=\s*(\S+)", (home / "makefile").read_text())
    return m.group(1) if m else "?"


@cache
def _setup(home_str: str, env_key: str) -> CmdStanSetup:
    home = Path(home_str)
    proc = subprocess.run([_make(), "print-compiler-flags"], cwd=home, capture_output=True,
                          text=True)
    printed = proc.stdout if proc.returncode == 0 else ""
    settings = {}
    for line in printed.splitlines():
        m = re.match(r"\s*- (CXX|CXXFLAGS|CPPFLAGS|LDFLAGS|LDLIBS)\b ?(.*)", line)
        if m:
            settings[m.group(1)] = m.group(2).strip()
    cxx = (settings.get("CXX", "").split() or [os.environ.get("CXX", "g++")])[0]
    try:
        compiler = subprocess.run([cxx, "--version"], capture_output=True, text=True,
                                  check=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        compiler = cxx
    flags = _flags(settings.get("CXXFLAGS", "") + " " + settings.get("CPPFLAGS", ""))
    local = home / "make" / "local"
    h = hashlib.sha256()
    for part in (str(home.resolve()), _stan_version(home), compiler, printed, env_key,
                 local.read_text() if local.exists() else ""):
        h.update(part.encode() + b"\0")
    for built in (home / "bin" / "stanc", home / "src" / "cmdstan" / "main.o"):
        # a CmdStan rebuilt in place (same folder, new stanc or main) gets new programs
        h.update(str(built.stat().st_mtime_ns if built.exists() else 0).encode() + b"\0")
    return CmdStanSetup(home, _stan_version(home), compiler, flags, h.hexdigest()[:16])


def _flags(text: str) -> tuple[str, ...]:
    """Compiler flags as single tokens (`-I dir` as `-Idir`), each once."""
    tokens, out = text.split(), []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("-I", "-include", "-isystem") and i + 1 < len(tokens):
            tok = (tok if tok == "-I" else tok + " ") + tokens[i + 1]
            i += 1
        out.append(tok)
        i += 1
    return tuple(dict.fromkeys(out))


# Environment variables CmdStan's makefiles read (they change the binary).
_MAKE_ENV = ("CXX", "CC", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "LDLIBS", "O", "STAN_THREADS",
             "STAN_OPENCL", "STAN_MPI", "STAN_NO_RANGE_CHECKS", "STANCFLAGS", "TBB_CXXFLAGS",
             "CXXFLAGS_OPTIM", "STAN_CPP_OPTIMS")


def cmdstan_setup() -> CmdStanSetup:
    """The installation cmdstanpy points at, with its version, compiler and flags."""
    try:
        home = import_cmdstanpy().cmdstan_path()
    except ValueError as exc:
        raise StanError(f"no CmdStan installation: {exc}") from exc
    env_key = "\n".join(f"{k}={os.environ.get(k, '')}" for k in _MAKE_ENV)
    return _setup(str(Path(home).resolve()), env_key)


def _timed(what: str):
    try:
        from .console import timed
    except ImportError:  # pragma: no cover - older trees without build lines
        return contextlib.nullcontext()
    return timed(what)


# ------------------------------------------------------------------ the engine


class CmdStanEngineModel(Engine):
    """The same operations as BundledModel, run by CmdStan."""

    def __init__(self, code: str, name: str = "model"):
        self.code, self.name = code, name
        self.setup = cmdstan_setup()
        self.header = user_header(code)  # C++ of the functions declared without a body
        # Keyed like the bundled engine's programs: by code and build settings, not by
        # name (a bundle reruns its program as "model"; the name only labels the CSV).
        extra = "\0" + self.header.read_text() if self.header else ""
        self.key = hashlib.sha256((code + "\0" + self.setup.key + extra).encode()).hexdigest()[:20]
        self.compile_seconds = 0.0
        self.built = False  # whether this instance ran make
        self.exe = self._compile()

    @property
    def info(self) -> EngineInfo:
        return self.setup.info

    def _compile(self) -> Path:
        start = time.perf_counter()
        target = cache_root() / "cmdstan" / self.key
        if not target.is_dir():
            with _timed(f"compiling {self.name} with CmdStan"):
                _, self.built = atomic_build(target, self._build)
        self.compile_seconds = time.perf_counter() - start
        stans = sorted(target.glob("*.stan"))  # named as first compiled
        exe = stans[0].with_suffix("") if stans else target / self.name
        if not exe.exists():
            raise StanError(f"the cached CmdStan build {target} is incomplete; delete it "
                            "to rebuild")
        return exe

    def _build(self, tmp: Path) -> None:
        (tmp / f"{self.name}.stan").write_text(self.code)
        # make -C: CmdStan's makefile builds any `<path>` from `<path>.stan`
        proc = run_compiler([_make(), "-C", str(self.setup.home), *user_header_args(self.header),
                             str(tmp / self.name)])
        transcript = proc.stdout + proc.stderr
        # The transcript (stanc's warnings included) is kept, not shown.
        (tmp / "compile.log").write_text(transcript)
        logger.debug("CmdStan compile of %s:\n%s", self.name, transcript)
        if proc.returncode != 0 or not (tmp / self.name).exists():
            raise StanError(f"CmdStan could not compile {self.name!r}:\n"
                            + _compile_error(transcript))
        for ext in (".o", ".d"):
            (tmp / f"{self.name}{ext}").unlink(missing_ok=True)

    # -- methods -----------------------------------------------------------
    def _run(self, method: str, data: dict, args: dict[str, Any], output_dir: str | None,
             inits: dict | None = None, progress_total: int = 0,
             show_progress: bool | None = False, accept_codes: tuple[int, ...] = (0,),
             mode: str | None = None) -> RunResult:
        out = self._output_dir(output_dir)
        write_json(out / "data.json", data)
        init = None
        if inits is not None:
            write_json(out / "inits.json", inits)
            init = str(out / "inits.json")
        stem = self.name if method == "sample" else f"{self.name}-{method}"
        output = str(out / f"{stem}.csv")
        cmd = [str(self.exe), *cmdstan_command(method, args, data=str(out / "data.json"),
                                               output=output, init=init, mode=mode)]
        csv = tuple(cmdstan_output_files(method, args, output))
        start = time.perf_counter()
        exit_code, console = run_process(cmd, progress_total=progress_total,
                                         show_progress=show_progress,
                                         chains=int(args.get("chains", 1)))
        elapsed = time.perf_counter() - start
        code = stan_return_code(exit_code, console)
        if code not in accept_codes or not all(Path(f).exists() for f in csv):
            raise StanError(f"Stan {method} failed (exit code {code}):\n"
                            + stan_messages(_after_config(console)))
        if method == "optimize":
            console += self._optimum_gradient(out, csv[0], int(args.get("jacobian", 0)))
        return RunResult(method, csv, dict(args), self.info, console, code, elapsed)

    def _optimum_gradient(self, out: Path, csv: str, jacobian: int) -> str:
        """The line our driver prints after an optimization, ``optimum_gradient = ...``, from
        CmdStan's `log_prob` method at the optimum's constrained values (the convergence
        checks then read Stan's gradient on both engines, not numpy finite differences);
        empty when CmdStan cannot give it."""
        try:
            write_json(out / "optimum.json", mode_values(csv))
        except StanError:
            return ""
        lp_csv = out / f"{self.name}-log_prob.csv"
        cmd = [str(self.exe), "log_prob", f"constrained_params={out / 'optimum.json'}",
               f"jacobian={jacobian}", "data", f"file={out / 'data.json'}", "output",
               f"file={lp_csv}", "sig_figs=18"]
        exit_code, console = run_process(cmd)
        if exit_code != 0 or not lp_csv.exists():
            logger.debug("CmdStan log_prob at the optimum failed:\n%s", console)
            return ""
        try:
            _, row = _last_csv_row(str(lp_csv))     # lp__, then the gradient
        except (StanError, ValueError):
            return ""
        return "\noptimum_gradient = " + ",".join(repr(float(g)) for g in row[1:]) + "\n"

    def laplace(self, data: dict, mode: RunResult, *, draws: int = 1000,
                jacobian: bool = True, seed: int | None = None,
                output_dir: str | None = None) -> RunResult:
        """Draws from the normal approximation at the mode of an optimize run.

        CmdStan reads the mode from the optimize run's CSV (17 significant digits, the
        values the bundled engine passes as JSON) and, like the bundled engine, takes
        any jacobian setting: a mode found with jacobian=False can be used with the
        default jacobian=True (cmdstanpy refuses that)."""
        mode_csv = str(Path(mode.csv_files[0]).resolve())
        if mode.method != "optimize" or not Path(mode_csv).exists():
            raise StanError("laplace needs the RunResult of an optimize run whose CSV file "
                            f"exists; got a {mode.method} run ({mode_csv})")
        args = dict(draws=draws, jacobian=int(jacobian), seed=_seed(seed), mode=mode_csv,
                    mode_csv=mode_csv, refresh=0)
        return self._run("laplace", data, args, output_dir, mode=mode_csv)


def stan_return_code(exit_code: int, console: str) -> int:
    """Stan's return code of a CmdStan run, as the bundled driver reports it.

    CmdStan exits with 1 on every failure; its console says which: arguments it
    could not parse are 64 (EX_USAGE), anything else (the line search of L-BFGS
    failing, bad data, a rejected initial value) is Stan's error code 70
    (EX_SOFTWARE). Negative codes (killed by a signal) pass through."""
    if exit_code != 1:
        return exit_code
    if "Failed to parse command arguments" in console or "is not a valid value" in console:
        return USAGE_ERROR
    return OPTIMIZE_SOFT_FAILURE


USAGE_ERROR = 64


def _after_config(console: str) -> str:
    """The console without the argument listing CmdStan prints first."""
    if console.startswith("method = ") and "\n\n" in console:
        return console.split("\n\n", 1)[1]
    return console


def _compile_error(transcript: str) -> str:
    """stanc's error when there is one, else the end of make's output."""
    m = re.search(r"(?ms)^(Semantic|Syntax) error.*?(?=^make|\Z)", transcript)
    if m:
        return m.group(0).strip()
    return transcript.strip()[-4000:]
