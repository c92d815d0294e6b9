"""Both engines against a real CmdStan: same results, same records, same return codes,
and exported bundles whose README command line reruns under CmdStan as printed.

Runs only with BAYESMIX_TEST_CMDSTAN pointing at a built CmdStan (.ci/run builds one from
../shared/cmdstan when that folder exists); skipped otherwise. Each distinct program is
compiled once per engine (module-scoped fixtures). The bundles' `make` lines run as
printed; by default they find the executable CmdStan's make already built for the engine
from the same source (checked byte for byte) and copied in, so that no program compiles
twice; BAYESMIX_TEST_CMDSTAN_FRESH_MAKE=1 makes them compile from scratch."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.datasets import load
from bayesmix.engine import compile_model, resolve_engine
from bayesmix.engine.cmdstan import cmdstan_command, cmdstan_setup, stan_return_code
from bayesmix.errors import StanError
from bayesmix.lmm import lmm_stan_inits
from bayesmix.ml import lmer_code, lmer_data

pytestmark = pytest.mark.cmdstan

ENGINES = ("bundled", "cmdstan")
SLEEP_FORMULA = "Reaction ~ Days + (Days | Subject)"
CBPP_FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
NUTS = dict(chains=2, iter_warmup=200, iter_sampling=200, seed=20240, show_progress=False)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small runs: diagnostics warnings are expected
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def sleep_model():
    return bayesmix.Model(SLEEP_FORMULA, load("sleepstudy"))


@pytest.fixture(scope="module")
def lmer_fits(cmdstan_home, sleep_model):
    return {(e, m): sleep_model.fit(method=m, engine=e) for e in ENGINES for m in ("reml", "ml")}


@pytest.fixture(scope="module")
def glmer_fits(cmdstan_home):
    model = bayesmix.Model(CBPP_FORMULA, load("cbpp"), family="binomial")
    return {e: model.fit(engine=e) for e in ENGINES}


@pytest.fixture(scope="module")
def nuts_fits(cmdstan_home, sleep_model):
    return {(e, p): _quiet(sleep_model.sample, program=p, engine=e, **NUTS)
            for e in ENGINES for p in ("marginal", "joint")}


def _draws(fit) -> np.ndarray:
    return fit.run.fit().draws()


# distributional models (issue #17): glmmTMB's zero-inflated Poisson reference case with a
# zi formula, by Laplace ML (stan/dist_ml.stan) and NUTS (stan/dist_nuts.stan)
DIST_CSV = Path(__file__).parent / "reference" / "families" / "zero_inflated_poisson_zi_re.csv"


@pytest.fixture(scope="module")
def dist_fits(cmdstan_home):
    model = bayesmix.Model(bayesmix.bf("y ~ x + (1 | g)", zi="~ 1 + (1 | g)"),
                           pd.read_csv(DIST_CSV), family="zero_inflated_poisson")
    return {(e, m): (model.fit(engine=e) if m == "ml" else
                     _quiet(model.sample, engine=e, **NUTS))
            for e in ENGINES for m in ("ml", "nuts")}


# ------------------------------------------------------------------ same results


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_lmer_identical_on_both_engines(lmer_fits, method):
    b, c = lmer_fits["bundled", method], lmer_fits["cmdstan", method]
    assert c.run.engine.name == "cmdstan" and b.run.engine.name == "bundled"
    assert c.loglik() == b.loglik()  # to the last digit
    assert repr(float(c.loglik())) == repr(float(b.loglik()))
    np.testing.assert_array_equal(c.estimates.theta, b.estimates.theta)
    assert c.run.optimum() == b.run.optimum()
    assert c.run.return_code == b.run.return_code == 0
    assert c.run.args == b.run.args  # the same record on both engines
    assert str(c.summary()) == str(b.summary())
    # the convergence check reads Stan's gradient on both engines: CmdStan's from its log_prob
    # method at the optimum's CSV values, ours from the optimizer (the same point to rounding)
    assert "optimum_gradient = " in c.run.console
    np.testing.assert_allclose(c.gradient, b.gradient, rtol=0, atol=1e-6)


def test_sleepstudy_reml_loglik_value(lmer_fits):
    # lme4: REML criterion 1743.6 at logLik -871.8141
    assert abs(lmer_fits["cmdstan", "reml"].loglik() - -871.8141359799) < 1e-6


def test_glmer_cbpp_identical_on_both_engines(glmer_fits):
    b, c = glmer_fits["bundled"], glmer_fits["cmdstan"]
    assert c.run.engine.name == "cmdstan"
    assert c.loglik() == b.loglik()
    assert abs(c.loglik() - -92.02628187) < 1e-6
    assert c.run.optimum() == b.run.optimum()
    assert c.run.args == b.run.args and c.run.return_code == b.run.return_code


@pytest.mark.parametrize("program", ["marginal", "joint"])
def test_nuts_draws_identical_with_same_seed(nuts_fits, program):
    b, c = nuts_fits["bundled", program], nuts_fits["cmdstan", program]
    assert c.run.engine.name == "cmdstan"
    np.testing.assert_array_equal(_draws(c), _draws(b))
    assert c.run.args == b.run.args
    for key in ("stepsize", "init_radius", "save_warmup", "sig_figs", "refresh", "seed"):
        assert key in c.run.args
    assert c.run.return_code == b.run.return_code == 0


def test_dist_ml_identical_on_both_engines(dist_fits):
    b, c = dist_fits["bundled", "ml"], dist_fits["cmdstan", "ml"]
    assert c.run.engine.name == "cmdstan" and b.run.engine.name == "bundled"
    assert c.run.optimum() == b.run.optimum()  # the same L-BFGS iterates, to the last digit
    assert c.loglik() == b.loglik()
    np.testing.assert_array_equal(c.x, b.x)
    # the bundled driver differences Stan's gradient for the Hessian; CmdStan prints none, so
    # the numpy Laplace log likelihood's values are differenced (rounding ~1e-13 |logLik| / h^2)
    np.testing.assert_allclose(c.se, b.se, rtol=1e-4)
    assert c.run.args == b.run.args and c.run.return_code == b.run.return_code == 0
    assert abs(c.loglik() - -1384.46243809881) < 1e-3  # glmmTMB 1.1.5
    # the gradient at the optimum: our driver's, and CmdStan's log_prob method at the
    # optimum's constrained values (17 significant digits in the CSV, then unconstrained
    # again): the same point to rounding, so the same gradient to ~1e-9
    assert c.converged and b.converged
    assert c.max_grad < 1e-3 and b.max_grad < 1e-3
    assert "optimum_gradient = " in c.run.console
    np.testing.assert_allclose(c.gradient, b.gradient, rtol=0, atol=1e-7)


def test_dist_nuts_draws_identical_with_same_seed(dist_fits):
    b, c = dist_fits["bundled", "nuts"], dist_fits["cmdstan", "nuts"]
    assert c.run.engine.name == "cmdstan" and b.run.engine.name == "bundled"
    np.testing.assert_array_equal(_draws(c), _draws(b))
    assert c.run.args == b.run.args and c.run.return_code == b.run.return_code == 0
    pd.testing.assert_frame_equal(c.fixef(), b.fixef())  # (the summary names the engine)
    pd.testing.assert_frame_equal(c.varcorr(), b.varcorr())


def test_engine_records(lmer_fits):
    b, c = lmer_fits["bundled", "reml"].run, lmer_fits["cmdstan", "reml"].run
    assert c.engine.stan_version == b.engine.stan_version == "2.35.0"
    assert c.engine.compiler == b.engine.compiler  # the same `g++ --version` line
    assert "-O3" in c.engine.flags and "-std=c++17" in c.engine.flags
    assert any(f.startswith("-I") for f in c.engine.flags)
    assert "Optimization terminated normally" in c.console  # Stan's own messages
    assert "Optimization terminated normally" in b.console


def test_compile_key_follows_build_flags(cmdstan_home, monkeypatch):
    base = cmdstan_setup().key
    monkeypatch.setenv("CXXFLAGS", "-DBAYESMIX_KEY_TEST")
    assert cmdstan_setup().key != base


def test_stanc_error_is_a_stan_error(cmdstan_home):
    with pytest.raises(StanError, match=r"(?s)could not compile 'broken'.*undefined_thing"):
        compile_model("parameters { real mu; } model { mu ~ normal(0, undefined_thing); }",
                      "broken", "cmdstan")


def test_fit_accepts_engine(sleep_model, cmdstan_home):
    # Model.fit(engine=...) used to raise "got multiple values for keyword argument 'engine'"
    fit = sleep_model.fit(engine="cmdstan")
    assert fit.run.engine.name == "cmdstan"


# ------------------------------------------------------------------ laplace, return codes


@pytest.fixture(scope="module")
def lmer_problem(sleep_model):
    data, _ = lmer_data(sleep_model.design, True)
    return data, lmm_stan_inits(sleep_model.design.terms)


def test_laplace_on_cmdstan_matches_bundled(cmdstan_home, lmer_problem, lmer_fits):
    data, inits = lmer_problem
    draws = {}
    for e in ENGINES:
        model = compile_model(lmer_code(), "lmer", e)
        mode = model.optimize(data, inits=inits, seed=1, jacobian=False, iter=10000)
        run = model.laplace(data, mode, draws=50, seed=4)  # jacobian=True by default
        assert run.method == "laplace" and run.return_code == 0
        assert run.engine.name == e
        draws[e] = run.fit().draws()
    assert draws["cmdstan"].shape == (50, 5)
    np.testing.assert_array_equal(draws["cmdstan"], draws["bundled"])


def test_laplace_needs_an_optimize_run(cmdstan_home, lmer_problem, nuts_fits):
    data, _ = lmer_problem
    model = compile_model(lmer_code(), "lmer", "cmdstan")
    with pytest.raises(StanError, match="optimize run"):
        model.laplace(data, nuts_fits["cmdstan", "marginal"].run, draws=5)


TINY_TOLERANCES = dict(tol_obj=1e-300, tol_rel_obj=1e-300, tol_grad=1e-300,
                       tol_rel_grad=1e-300, tol_param=1e-300, iter=10000)


@pytest.mark.parametrize("engine", ENGINES)
def test_line_search_failure_is_code_70(cmdstan_home, lmer_problem, engine):
    data, inits = lmer_problem
    model = compile_model(lmer_code(), "lmer", engine)
    run = model.optimize(data, inits=inits, seed=1, accept_line_search_failure=True,
                         **TINY_TOLERANCES)
    assert run.return_code == 70
    assert "Line search failed" in run.console
    with pytest.raises(StanError, match=r"(?s)exit code 70.*Line search failed"):
        model.optimize(data, inits=inits, seed=1, **TINY_TOLERANCES)


def test_cmdstan_return_codes():
    assert stan_return_code(0, "") == 0
    assert stan_return_code(1, "Line search failed") == 70
    assert stan_return_code(1, "Failed to parse command arguments, cannot run model.") == 64
    assert stan_return_code(-9, "") == -9


def test_bad_arguments_are_a_stan_error(cmdstan_home, lmer_problem):
    data, inits = lmer_problem
    model = compile_model(lmer_code(), "lmer", "cmdstan")
    with pytest.raises(StanError, match=r"exit code 64"):
        model.optimize(data, inits=inits, tol_obj=0.0)  # CmdStan wants 0 < tol_obj


def test_cmdstan_runs_are_quiet(cmdstan_home, sleep_model, lmer_fits, nuts_fits, capfd,
                                caplog):
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG, logger="cmdstanpy"):
        sleep_model.fit(engine="cmdstan")
        post = _quiet(sleep_model.sample, program="marginal", engine="cmdstan", chains=2,
                      iter_warmup=100, iter_sampling=100, seed=3, show_progress=False)
        post.run.fit()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert [r for r in caplog.records if r.name.startswith("cmdstanpy")
            and r.levelno >= logging.INFO] == []


def test_auto_engine_is_not_switched_by_the_test_variable(monkeypatch, tmp_path):
    # BAYESMIX_TEST_CMDSTAN alone must not make engine="auto" pick CmdStan
    monkeypatch.delenv("CMDSTAN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cmdstan either
    assert resolve_engine("auto") == "bundled"


# ------------------------------------------------------------------ exported bundles


def _bundle_fits(lmer_fits, glmer_fits, nuts_fits) -> dict:
    """One fit per program, from alternating engines."""
    return {"lmer": lmer_fits["bundled", "reml"], "glmer": glmer_fits["cmdstan"],
            "marginal": nuts_fits["bundled", "marginal"], "joint": nuts_fits["cmdstan", "joint"]}


@pytest.fixture(scope="module")
def bundles(cmdstan_home, lmer_fits, glmer_fits, nuts_fits, dist_fits, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    fits = _bundle_fits(lmer_fits, glmer_fits, nuts_fits)
    fits.update(dist_ml=dist_fits["cmdstan", "ml"], dist_nuts=dist_fits["bundled", "nuts"])
    return {name: Path(fit.export(root / name)) for name, fit in fits.items()}


def _readme_bash(folder: Path) -> str:
    blocks = re.findall(r"```bash\n(.*?)```", (folder / "README.md").read_text(), re.S)
    assert len(blocks) == 1, blocks
    return blocks[0]


def _rows(path: Path) -> list[str]:
    """A Stan CSV's header and values, without the comment lines (times, paths)."""
    return [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]


def _engine_build(code: str) -> Path | None:
    """The executable CmdStan's make built for the engine from exactly `code`."""
    from bayesmix.engine.toolchain import cache_root
    for stan in (cache_root() / "cmdstan").glob("*/*.stan"):
        exe = stan.with_suffix("")
        if stan.read_text() == code and exe.exists():
            return exe
    return None


# The reruns come first: a rerun on CmdStan of a bundle whose model.stan differs from
# the engine's program text (the marginal one carries a header comment) compiles it
# into the cache, where the README test below then finds it.


@pytest.mark.parametrize("name, engine", [("lmer", "cmdstan"), ("glmer", None),
                                          ("marginal", "cmdstan"), ("joint", None),
                                          ("dist_ml", None), ("dist_nuts", "cmdstan")])
def test_rerun_on_the_other_engine(bundles, name, engine, monkeypatch, capfd):
    """Bundled bundles rerun on CmdStan (engine="cmdstan"); CmdStan bundles, where no CmdStan
    is found, rerun on the bundled engine by themselves, saying so."""
    made_on = json.loads((bundles[name] / "run.json").read_text())["engine"]["name"]
    if engine is None:
        assert made_on == "cmdstan"
        monkeypatch.delenv("CMDSTAN")
        monkeypatch.setenv("HOME", str(bundles[name].parent))  # and no ~/.cmdstan
    capfd.readouterr()
    again = _quiet(bayesmix.rerun, bundles[name], engine=engine)
    expected = "cmdstan" if engine == "cmdstan" else "bundled"
    assert again.run.engine.name == expected != made_on
    err = capfd.readouterr().err
    assert f"on the {expected} engine (the bundle was made on the {made_on} engine)" in err
    outputs = json.loads((bundles[name] / "run.json").read_text())["outputs"]
    for saved, csv in zip(outputs, again.run.csv_files):
        assert _rows(Path(csv)) == _rows(bundles[name] / saved)


def test_rerun_on_the_same_engine_is_identical(bundles):
    again = _quiet(bayesmix.rerun, bundles["joint"])  # made on cmdstan, rerun on cmdstan
    assert again.run.engine.name == "cmdstan"
    outputs = json.loads((bundles["joint"] / "run.json").read_text())["outputs"]
    for saved, csv in zip(outputs, again.run.csv_files):
        assert _rows(Path(csv)) == _rows(bundles["joint"] / saved)


@pytest.mark.parametrize("name", ["lmer", "glmer", "marginal", "joint", "dist_ml",
                                  "dist_nuts"])
def test_bundle_readme_command_reruns_under_cmdstan(bundles, cmdstan_home, tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(bundles[name], folder)
    meta = json.loads((folder / "run.json").read_text())
    script = _readme_bash(folder)
    # glmer's, lmer's and the marginal program declare C++ functions (glmer's mode, the lmm's
    # dense reduced system): the bundle carries their header
    header = (' STANCFLAGS=--allow-undefined USER_HEADER="$PWD/user_header.hpp"'
              if name in ("glmer", "lmer", "marginal") else "")
    assert meta["user_header"] == ("user_header.hpp" if header else None)
    assert script.splitlines()[0] == f'make -C "$CMDSTAN"{header} "$PWD/model"'
    built = _engine_build((folder / "model.stan").read_text())
    if built is not None and not os.environ.get("BAYESMIX_TEST_CMDSTAN_FRESH_MAKE"):
        shutil.copy2(built, folder / "model")
        os.utime(folder / "model")  # newer than model.stan: make finds it up to date
    env = dict(os.environ, CMDSTAN=str(cmdstan_home))
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "cannot run model" not in proc.stdout
    outputs = meta["outputs"]
    reruns = (["rerun.csv"] if len(outputs) == 1
              else [f"rerun_{i + 1}.csv" for i in range(len(outputs))])
    for saved, again in zip(outputs, reruns):
        assert (folder / again).exists()
        # the bundle's own CSV is untouched and the rerun is identical to the last digit
        assert (folder / saved).read_bytes() == (bundles[name] / saved).read_bytes()
        assert _rows(folder / again) == _rows(folder / saved)


def test_readme_optimize_arguments_in_cmdstan_order(bundles):
    line = _readme_bash(bundles["lmer"]).splitlines()[1].split()
    assert line[:3] == ["./model", "optimize", "algorithm=lbfgs"]
    tol = [i for i, t in enumerate(line) if t.startswith("tol_")]
    assert tol and max(tol) < line.index("jacobian=0") < line.index("iter=10000")
    assert "output" in line and "file=rerun.csv" in line and "sig_figs=17" in line
    assert "init=inits.json" in line


def test_cmdstan_command_keeps_old_records_working():
    # records written before stepsize/save_warmup were recorded still give a valid line
    args = dict(chains=4, num_warmup=10, num_samples=10, thin=1, seed=3, adapt_delta=0.9,
                max_depth=8, metric="diag_e")
    cmd = cmdstan_command("sample", args, data="data.json", output="o.csv")
    assert cmd[:2] == ["sample", "num_samples=10"] and "num_chains=4" in cmd
    assert cmd[-4:] == ["random", "seed=3", "output", "file=o.csv"]
