"""Reproducible bundles and the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.datasets import load


@pytest.fixture(scope="module")
def lmer_fit():
    return bayesmix.lmer("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))


def test_export_load_rerun_lmer(lmer_fit, tmp_path):
    path = tmp_path / "bundle"
    lmer_fit.export(path)
    files = set(os.listdir(path))
    assert {"model.stan", "data.json", "inits.json", "run.json", "README.md", "output.csv",
            "model_data.csv"} <= files
    meta = json.loads((path / "run.json").read_text())
    assert meta["engine"]["name"] == "bundled" and meta["engine"]["stan_version"] == "2.35.0"
    assert meta["args"]["seed"] == lmer_fit.run.args["seed"]
    assert "-O3" in meta["engine"]["flags"]
    assert "#include" not in (path / "model.stan").read_text()
    readme = (path / "README.md").read_text()
    assert "data file=data.json" in readme and "bayesmix.rerun" in readme

    loaded = bayesmix.load(path)
    pd.testing.assert_series_equal(loaded.fixef(), lmer_fit.fixef())
    assert str(loaded.summary()) == str(lmer_fit.summary())
    again = bayesmix.rerun(path)
    assert again.loglik() == lmer_fit.loglik()
    np.testing.assert_array_equal(again.estimates.theta, lmer_fit.estimates.theta)


def test_export_refuses_existing_target_and_leaves_nothing(lmer_fit, tmp_path):
    path = tmp_path / "taken"
    path.mkdir()
    with pytest.raises(bayesmix.BayesmixError, match="already exists"):
        lmer_fit.export(path)
    assert os.listdir(path) == []
    assert not [p for p in os.listdir(tmp_path) if "partial" in p]


def test_interrupted_export_leaves_no_folder(lmer_fit, tmp_path, monkeypatch):
    ex = sys.modules["bayesmix.bundle"]

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ex, "_readme", boom)
    with pytest.raises(KeyboardInterrupt):
        lmer_fit.export(tmp_path / "bundle")
    assert os.listdir(tmp_path) == []


def test_load_rejects_non_bundle(tmp_path):
    with pytest.raises(bayesmix.BayesmixError, match="not a bayesmix export"):
        bayesmix.load(tmp_path)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "bayesmix.cli", *args], capture_output=True,
                          text=True)


def test_cli_fit_and_stancode(tmp_path):
    data = Path(bayesmix.__file__).parent / "datasets" / "sleepstudy.csv"
    out = tmp_path / "cli_bundle"
    r = _cli("fit", "Reaction ~ Days + (Days | Subject)", "--data", str(data),
             "--method", "reml", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "REML criterion at convergence: 1743.6" in r.stdout
    assert (out / "run.json").exists()
    r = _cli("stancode", "Reaction ~ Days + (Days | Subject)", "--data", str(data),
             "--method", "ml")
    assert r.returncode == 0 and "lmm_reduce" in r.stdout


@pytest.mark.parametrize("args, message", [
    (("fit", "y ~ x + (1 | g)", "--data", "no_such_file.csv"), "not found"),
    (("fit", "Reaction ~ Days + (Days | Subjct)", "--data", "SLEEP"), "Subjct"),
    (("fit", "Reaction ~ Days + (Days | Subject)", "--data", "SLEEP", "--method", "gibbs"),
     "invalid choice"),
    (("frobnicate",), "invalid choice"),
])
def test_cli_bad_input(args, message):
    data = str(Path(bayesmix.__file__).parent / "datasets" / "sleepstudy.csv")
    r = _cli(*[data if a == "SLEEP" else a for a in args])
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_export_load_rerun_nuts_identical_draws(tmp_path):
    import warnings
    model = bayesmix.Model("Reaction ~ Days + (1 | Subject)", load("sleepstudy"),
                           priors=[bayesmix.prior("normal(0, 20)", cls="b", coef="Days")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = model.sample(chains=2, iter_warmup=150, iter_sampling=100, seed=5,
                            show_progress=False)
    path = tmp_path / "nuts_bundle"
    post.export(path)
    meta = json.loads((path / "run.json").read_text())
    assert meta["kind"] == "nuts" and meta["args"]["seed"] == 5
    assert meta["outputs"] == ["output_1.csv", "output_2.csv"]
    assert "num_samples=100" in (path / "README.md").read_text()

    loaded = bayesmix.load(path)
    assert str(loaded.summary()) == str(post.summary())
    assert loaded.priors == post.priors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = bayesmix.rerun(path)
    np.testing.assert_array_equal(again.run.fit().draws(), post.run.fit().draws())


@pytest.mark.slow
def test_cli_demo_runs_both_modes():
    r = _cli("demo", "--iter-warmup", "150", "--iter-sampling", "150")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("REML criterion at convergence") == 4
    assert "=== NUTS" in r.stdout and "sd(Intercept)" in r.stdout
