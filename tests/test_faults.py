"""Faults leave nothing broken: Ctrl-C during a compile or a run, a damaged
cache entry, an unwritable or full cache, and bad data all end in a clear
error or a clean stop, and the next call works. (Concurrent compiles and a
killed compile are in test_engine.py; an interrupted export in test_export.py.)"""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.datasets import load
from bayesmix.engine import BundledModel, bundled_toolchain
from bayesmix.errors import DataError, ToolchainError

WARM = "parameters { real a; } model { a ~ std_normal(); }"


def _new_program() -> str:
    # a fresh comment makes a program the cache has never seen
    return f"// {uuid.uuid4()}\nparameters {{ real a; }} model {{ a ~ std_normal(); }}\n"


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the child exited before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _interrupt(proc: subprocess.Popen) -> str:
    """Ctrl-C as the child's own process sees it (SIGINT to it alone)."""
    os.kill(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the child did not stop within 30 s of Ctrl-C")
    return err


def _python_child(script: str) -> subprocess.Popen:
    """A Python child that turns SIGINT into KeyboardInterrupt as a terminal's would. A shell
    starts background jobs with SIGINT ignored and Python keeps an inherited SIG_IGN, so a
    suite launched in the background would otherwise send its Ctrl-C into the void."""
    return subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.slow
def test_ctrl_c_during_compile_stops_the_compiler_and_leaves_no_entry():
    code = _new_program()
    BundledModel(WARM, "warm")  # toolchain ready
    model_dir = bundled_toolchain().home / "models"
    before = set(model_dir.iterdir())
    script = f"from bayesmix.engine import BundledModel\nBundledModel({code!r}, 'sigint')\n"
    proc = _python_child(script)
    building = lambda: [p for p in set(model_dir.iterdir()) - before if ".tmp-" in p.name]
    _wait_for(building, proc, "the compile started")
    tmp = building()[0]
    time.sleep(1.0)  # g++ is running
    err = _interrupt(proc)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    time.sleep(0.5)
    assert _processes_mentioning(str(tmp)) == []           # no orphan compiler
    assert not tmp.exists()                                   # no half-built entry
    assert not [p for p in set(model_dir.iterdir()) - before if p.is_dir()]
    model = BundledModel(code, "sigint")                      # the next call works
    assert model.built and model.exe.exists()


@pytest.mark.slow
def test_ctrl_c_during_sampling_stops_stan(tmp_path):
    BundledModel(WARM, "warm")
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        from bayesmix.engine import BundledModel
        m = BundledModel({WARM!r}, "warm")
        m.sample({{}}, chains=2, iter_warmup=1000, iter_sampling=10**8, seed=1,
                 output_dir={str(out)!r}, show_progress=False)
    """)
    proc = _python_child(script)
    _wait_for(lambda: _processes_mentioning(str(out)) and list(out.glob("*.csv")), proc,
              "Stan started sampling")
    err = _interrupt(proc)
    assert "KeyboardInterrupt" in err
    time.sleep(0.5)
    assert _processes_mentioning(str(out)) == []             # Stan was stopped with it
    run = BundledModel(WARM, "warm").sample({}, chains=1, iter_warmup=50, iter_sampling=50,
                                             seed=1, show_progress=False)
    assert run.return_code == 0


def _run_one(model: BundledModel) -> float:
    run = model.sample({}, chains=1, iter_warmup=100, iter_sampling=200, seed=4,
                       show_progress=False)
    return float(np.mean(run.fit().stan_variable("a")))


@pytest.mark.slow
def test_damaged_executable_or_object_is_rebuilt_not_run():
    code = _new_program()
    first = BundledModel(code, "damage")
    reference = _run_one(first)
    exe = first.exe
    exe.write_bytes(exe.read_bytes()[:4096])                  # truncated binary
    again = BundledModel(code, "damage")
    assert again.built and again.exe.stat().st_size > 4096
    assert _run_one(again) == reference                       # same program, same draws
    obj = exe.parents[1] / "model.o"
    obj.write_bytes(b"\0" * 100)                              # corrupted object file
    exe.write_bytes(b"not a program")
    third = BundledModel(code, "damage")
    assert third.built and _run_one(third) == reference


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can write: a read-only tmpfs as root (who ignores permission
    bits), chmod 555 otherwise."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        os.chmod(ro, 0o555)
        yield ro
        os.chmod(ro, 0o755)
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot make a read-only folder here (mount: {r.stderr.strip()})")
    try:
        yield ro
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_unwritable_cache_names_the_folder_and_the_variable(read_only_folder, monkeypatch):
    from bayesmix.engine import compile_model
    monkeypatch.setenv("BAYESMIX_CACHE", str(read_only_folder))
    compile_model.cache_clear()  # programs compiled earlier in this process live elsewhere
    model = bayesmix.Model("Reaction ~ Days + (1 | Subject)",
                           load("sleepstudy"))
    with pytest.raises(ToolchainError) as err:
        model.fit()
    msg = str(err.value)
    assert str(read_only_folder) in msg and "BAYESMIX_CACHE" in msg
    assert "Read-only" in msg or "Permission denied" in msg
    assert list(read_only_folder.iterdir()) == []


def test_full_cache_names_the_folder_and_the_variable(tmp_path, monkeypatch):
    from bayesmix.engine import cache

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(cache.tempfile, "mkdtemp", full)
    with pytest.raises(ToolchainError, match="No space left.*BAYESMIX_CACHE"):
        cache.atomic_build(tmp_path / "entry", lambda tmp: None)
    assert not (tmp_path / "entry").exists()


N_BIG = 10**6


@pytest.fixture(scope="module")
def big():
    rng = np.random.default_rng(1)
    return pd.DataFrame({"y": rng.normal(size=N_BIG), "x": rng.normal(size=N_BIG),
                         "g": rng.integers(0, 5000, N_BIG).astype(str),
                         "o": np.zeros(N_BIG)})


def _bad(n, where, value):
    a = np.ones(n)
    a[where] = value
    return a


@pytest.mark.parametrize("formula, kwargs, match", [
    ("y ~ xx + (1 | g)", {}, "unknown column 'xx'.*did you mean 'x'"),
    ("y ~ x + (1 | gg)", {}, "unknown column 'gg'.*did you mean 'g'"),
    ("y ~ x + (1 | g)", {"weights": ("w", np.inf)}, "weights must be finite and non-negative"),
    ("y ~ x + (1 | g)", {"weights": ("w", -1.0)}, "weights must be finite and non-negative"),
    ("y ~ x + offset(o) + (1 | g)", {"offset": np.inf}, "offset 'o' has non-finite"),
    ("y ~ x + offset(o) + (1 | g)", {"offset": -np.inf}, "offset 'o' has non-finite"),
])
def test_bad_data_is_refused_at_once_before_any_compile(big, formula, kwargs, match,
                                                        monkeypatch):
    import bayesmix.engine as engine

    def no_compile(*a, **k):
        raise AssertionError("compiled before validating the data")
    monkeypatch.setattr(engine, "compile_model", no_compile)
    data = big
    if "offset" in kwargs:
        data = big.assign(o=_bad(N_BIG, 12345, kwargs.pop("offset")) - 1.0)
    if "weights" in kwargs:
        kwargs["weights"] = _bad(N_BIG, 777, kwargs["weights"][1])
    start = time.perf_counter()
    with pytest.raises(DataError, match=match):
        bayesmix.Model(formula, data, **kwargs).fit()
    # "at once": a generous bound for a shared CI machine (about 0.3 s measured here)
    assert time.perf_counter() - start < 5.0


def test_missing_weights_are_dropped_like_r_with_a_count():
    """NaN is pandas' missing value: as R's na.omit, the row is dropped and counted."""
    df = load("sleepstudy")
    w = np.ones(len(df))
    w[3] = np.nan
    with pytest.warns(UserWarning, match="dropped 1 of 180 rows"):
        d = bayesmix.Model("Reaction ~ Days + (1 | Subject)", df, weights=w).design
    assert d.n == 179


@pytest.mark.parametrize("program,name,value,match", [
    # glmer: the C++ mode reads the sparse structure without bounds checks of its own
    ("glmer", "cell_row", 10**6, "index out of range in cell_row"),
    ("glmer", "h22_row", 10**6, "index out of range in h22_row"),
    ("glmer", "lev_u", 1, "bad row starts lev_u"),
    # lmer: the C++ dense reduced system reads B's CSR arrays
    ("lmer", "B_u", 1, "B's level starts decrease"),
    ("lmer", "B_v", "repeat", "not increasing within a level"),
    # (an index the data block bounds is refused there, naming it)
    ("lmer", "B_v", 10**6, r"B_v\[\d+\] is 1e\+06, but must be less than"),
])
def test_tampered_structure_data_is_refused_not_read_out_of_bounds(program, name, value, match):
    """Data as an edited bundle may carry them: an index out of range in the structure that
    the C++ functions (stan/glmm_mode.hpp, stan/lmm_reduce.hpp) walk ends in Stan's error
    naming the array, never in a read out of bounds."""
    from bayesmix.engine import compile_model
    from bayesmix.errors import StanError

    if program == "glmer":
        from bayesmix.glmerfit import glmer_code, glmer_data, glmer_inits
        rng = np.random.default_rng(5)
        g, h = rng.integers(0, 30, 600), rng.integers(0, 12, 600)
        eta = 0.8 * rng.normal(size=30)[g] + 0.5 * rng.normal(size=12)[h]
        df = pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))),
                           "g": g.astype(str), "h": h.astype(str)})
        model = bayesmix.Model("y ~ 1 + (1 | g) + (1 | h)", df, family="bernoulli")
        data, inits, code = glmer_data(model.design), glmer_inits(model.design), glmer_code()
    else:
        from bayesmix.ml import lmer_code, lmer_data
        model = bayesmix.Model("y ~ service + (1 | s) + (1 | d)",
                               load("InstEval").iloc[:3000])
        data, _ = lmer_data(model.design, True)
        inits, code = {"theta": [1.0] * data["n_theta"]}, lmer_code()
        assert data["diag_q2"] == 0  # the dense path, in C++
    data = dict(data)
    bad = np.array(data[name]).copy()
    if value == "repeat":  # level 2's second column repeats its first
        i = int(data["B_u"][1])
        bad[i] = bad[i - 1]
    else:
        bad[len(bad) // 2] = value
    data[name] = bad
    prog = compile_model(code, program, "auto")
    with pytest.raises(StanError, match=match):
        prog.optimize(data, inits=inits)
