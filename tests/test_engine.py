"""The Stan engine: real compiles and runs, checked against exact answers."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import hashlib

import arviz as az
import cmdstanpy
import numpy as np
import pytest

from bayesmix.engine import (BundledModel, bundled_toolchain, cmdstan_available,
                             compile_model, resolve_engine)
from bayesmix.errors import StanError

NORMAL = """
data { int<lower=0> N; vector[N] y; real<lower=0> sigma; real m0; real<lower=0> s0; }
parameters { real mu; }
model { mu ~ normal(m0, s0); y ~ normal(mu, sigma); }
"""
BOUNDED = """
parameters { real<lower=0> s; }
model { s ~ lognormal(0, 1); }
"""
MVN = """
data { vector[2] m; cov_matrix[2] S; }
parameters { vector[2] x; }
model { x ~ multi_normal(m, S); }
"""


@pytest.fixture(scope="module")
def normal_model():
    return compile_model(NORMAL, "normal_mean")


@pytest.fixture(scope="module")
def normal_data():
    rng = np.random.default_rng(3)
    y = rng.normal(1.5, 2.0, size=20)
    return {"N": 20, "y": y, "sigma": 2.0, "m0": 0.0, "s0": 3.0}


def test_conjugate_posterior(normal_model, normal_data):
    d = normal_data
    post_prec = 1 / d["s0"] ** 2 + d["N"] / d["sigma"] ** 2
    exact_mean = (d["m0"] / d["s0"] ** 2 + d["y"].sum() / d["sigma"] ** 2) / post_prec
    exact_sd = post_prec ** -0.5
    run = normal_model.sample(d, chains=4, iter_warmup=500, iter_sampling=1000, seed=11)
    idata = az.from_cmdstanpy(run.fit())
    mu = idata.posterior["mu"].values
    ess = float(az.ess(idata)["mu"])
    mcse_mean = exact_sd / np.sqrt(ess)
    assert abs(mu.mean() - exact_mean) < 4 * mcse_mean
    assert abs(mu.std() / exact_sd - 1) < 0.1
    assert float(az.rhat(idata)["mu"]) < 1.01
    assert run.engine.name == "bundled" and run.engine.stan_version == "2.35.0"
    assert run.args["seed"] == 11


def test_csv_is_cmdstan_compatible(normal_model, normal_data):
    run = normal_model.sample(normal_data, chains=2, iter_warmup=100, iter_sampling=50,
                              thin=2, seed=5)
    fit = cmdstanpy.from_csv(list(run.csv_files))
    assert fit.chains == 2 and fit.num_draws_sampling == 25
    assert fit.metric_type == "diag_e" and len(fit.step_size) == 2
    assert fit.draws().shape == (25, 2, 8)  # 7 sampler columns + mu
    idata = az.from_cmdstanpy(fit)
    assert idata.posterior["mu"].shape == (2, 25)
    assert "diverging" in idata.sample_stats


def test_dense_metric(normal_model, normal_data):
    run = normal_model.sample(normal_data, chains=2, iter_warmup=200, iter_sampling=100,
                              metric="dense_e", seed=5)
    assert run.fit().metric_type == "dense_e"


def test_same_seed_same_draws(normal_model, normal_data):
    kw = dict(chains=2, iter_warmup=100, iter_sampling=100)
    a = normal_model.sample(normal_data, seed=42, **kw).fit().draws()
    b = normal_model.sample(normal_data, seed=42, **kw).fit().draws()
    c = normal_model.sample(normal_data, seed=43, **kw).fit().draws()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_optimize_jacobian():
    model = compile_model(BOUNDED, "bounded")
    # lognormal(0, 1) density in s has its mode at exp(-1); with the Jacobian of
    # the log transform the target is normal(0, 1) in log s, mode at s = 1.
    plain = model.optimize({}, jacobian=False, seed=1).optimum()["s"]
    jac = model.optimize({}, jacobian=True, seed=1).optimum()["s"]
    assert plain == pytest.approx(np.exp(-1), rel=1e-5)
    assert jac == pytest.approx(1.0, rel=1e-5)
    for algorithm in ("bfgs", "newton"):
        got = model.optimize({}, algorithm=algorithm, seed=1).optimum()["s"]
        assert got == pytest.approx(np.exp(-1), rel=1e-3)  # newton stops early


def test_laplace_covariance():
    model = compile_model(MVN, "mvn")
    S = np.array([[2.0, 0.6], [0.6, 0.5]])
    data = {"m": [1.0, -1.0], "S": S}
    mode = model.optimize(data, seed=1)
    assert mode.optimum()["x[1]"] == pytest.approx(1.0, abs=1e-5)
    draws = model.laplace(data, mode, draws=4000, seed=3).fit().draws_pd()
    cov = np.cov(draws[["x[1]", "x[2]"]].to_numpy().T)
    np.testing.assert_allclose(cov, S, rtol=0.1, atol=0.03)


def test_stan_messages_reach_user():
    model = compile_model("""
        data { real x; }
        parameters { real mu; }
        model { reject("bad value x = ", x); }
    """, "rejecting")
    with pytest.raises(StanError, match="bad value x = 3"):
        model.sample({"x": 3.0}, chains=1, iter_warmup=10, iter_sampling=10, seed=1)


def test_stanc_error_is_stans_own():
    with pytest.raises(StanError, match="(?i)ident|not declared|syntax|Semantic"):
        compile_model("parameters { real mu; } model { mu ~ normal(0, undefined_thing); }",
                      "broken")


def test_auto_picks_bundled_without_cmdstan():
    if cmdstan_available():
        pytest.skip("a CmdStan installation exists here")
    assert resolve_engine("auto") == "bundled"


@pytest.mark.skipif(not cmdstan_available(), reason="no CmdStan installation found")
def test_cmdstan_engine_matches(normal_data):
    model = compile_model(NORMAL, "normal_mean", engine="cmdstan")
    run = model.sample(normal_data, chains=2, iter_warmup=200, iter_sampling=200, seed=1)
    assert run.engine.name == "cmdstan" and run.fit().draws().shape[1] == 2


# -- the compile cache ---------------------------------------------------------

def _compile_script(code: str) -> str:
    return textwrap.dedent(f"""
        import sys, time
        from bayesmix.engine import BundledModel
        t = time.perf_counter()
        m = BundledModel({code!r}, "cachetest")
        print(int(m.built), time.perf_counter() - t, m.exe)
    """)


def _new_program() -> str:
    # A fresh comment makes a program the cache has never seen.
    return f"// {uuid.uuid4()}\nparameters {{ real a; }} model {{ a ~ std_normal(); }}\n"


@pytest.mark.slow
def test_parallel_compiles_build_once():
    code = _new_program()
    BundledModel("parameters { real a; } model { a ~ std_normal(); }", "warm")  # toolchain ready
    procs = [subprocess.Popen([sys.executable, "-c", _compile_script(code)],
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate()[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(int(o[0]) for o in outs) == 1          # exactly one compile
    assert len({o[2] for o in outs}) == 1              # all use the same binary
    # Reuse from a new process is fast.
    out = subprocess.run([sys.executable, "-c", _compile_script(code)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "0" and float(out[1]) < 1.0


@pytest.mark.slow
def test_interrupted_compile_leaves_nothing():
    code = _new_program()
    BundledModel("parameters { real a; } model { a ~ std_normal(); }", "warm")
    tc = bundled_toolchain()
    key = hashlib.sha256((code + tc.key).encode()).hexdigest()[:20]
    target = tc.home / "models" / key
    proc = subprocess.Popen([sys.executable, "-c", _compile_script(code)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(target.parent.glob(f".{key}.tmp-*")):  # wait until g++ is building
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists()
    assert list(target.parent.glob(f".{key}.tmp-*"))  # the killed build's leftovers
    model = BundledModel(code, "cachetest")
    assert model.built and model.exe.exists()
    assert not list(target.parent.glob(f".{key}.tmp-*"))  # cleaned up
