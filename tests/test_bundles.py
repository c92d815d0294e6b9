"""Bundles from others are data: tampered files are refused by name, nothing in
a bundle runs as code, and every fit kind the CLI makes exports and reloads
with everything it needs (weights included)."""

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.datasets import load
from bayesmix.errors import BayesmixError, FormulaError

SLEEP = load("sleepstudy")


@pytest.fixture(scope="module")
def lmer_bundle(tmp_path_factory) -> Path:
    fit = bayesmix.lmer("Reaction ~ Days + (Days | Subject)", SLEEP)
    return Path(fit.export(tmp_path_factory.mktemp("b") / "lmer"))


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def test_run_json_records_every_file(lmer_bundle):
    meta = json.loads((lmer_bundle / "run.json").read_text())
    assert set(meta["files"]) == set(os.listdir(lmer_bundle)) - {"run.json"}
    assert all(len(d) == 64 for d in meta["files"].values())


@pytest.mark.parametrize("name", ["data.json", "model.stan", "output.csv", "inits.json",
                                  "model_data.csv", "README.md"])
def test_changed_file_is_refused_by_name(lmer_bundle, tmp_path, name):
    b = _copy(lmer_bundle, tmp_path)
    with open(b / name, "a") as fh:
        fh.write("\n")
    for call in (bayesmix.load, bayesmix.rerun):
        with pytest.raises(BayesmixError, match=f"'{name}'.*checksum"):
            call(b)


def test_missing_file_is_refused_by_name(lmer_bundle, tmp_path):
    b = _copy(lmer_bundle, tmp_path)
    (b / "inits.json").unlink()
    with pytest.raises(BayesmixError, match="'inits.json' is missing"):
        bayesmix.load(b)


def test_edited_run_json_is_refused_and_verify_false_loads_it(lmer_bundle, tmp_path):
    b = _copy(lmer_bundle, tmp_path)
    meta = json.loads((b / "run.json").read_text())
    meta["elapsed"] = 123.0
    (b / "run.json").write_text(json.dumps(meta))
    with pytest.raises(BayesmixError, match="run.json .* changed after export"):
        bayesmix.load(b)
    assert bayesmix.load(b, verify=False).loglik() == pytest.approx(-871.814135979976,
                                                                    abs=1e-6)
    # an edit that no longer matches the saved outputs is a clear error, not a crash
    meta["formula"] = "Reaction ~ Days + (Days || Subject)"
    (b / "run.json").write_text(json.dumps(meta))
    with pytest.raises(BayesmixError, match="do not match its saved Stan outputs"):
        bayesmix.load(b, verify=False)


HOSTILE = [
    "Reaction ~ Days + I(__import__('os').system('touch {p}')) + (1 | Subject)",
    "Reaction ~ Days + {{__import__('os').system('touch {p}')}} + (1 | Subject)",
    "I(open('{p}', 'w').write('x')) ~ Days + (1 | Subject)",
    "Reaction ~ Days + offset(__import__('pathlib').Path('{p}').touch()) + (1 | Subject)",
    "Reaction ~ Days + (I(exec('open(\"{p}\", \"w\")')) | Subject)",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_formula_in_a_bundle_runs_nothing(lmer_bundle, tmp_path, template):
    """Even with verify=False (a trusted-looking edited bundle) the formula is data."""
    target = tmp_path / "pwned"
    b = _copy(lmer_bundle, tmp_path)
    meta = json.loads((b / "run.json").read_text())
    meta["formula"] = template.format(p=target)
    (b / "run.json").write_text(json.dumps(meta))
    for call in (lambda: bayesmix.load(b, verify=False),
                 lambda: bayesmix.rerun(b, verify=False)):
        with pytest.raises(FormulaError):
            call()
    r = subprocess.run([sys.executable, "-c", "import bayesmix, sys; "
                        f"bayesmix.load({str(b)!r}, verify=False)"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "FormulaError" in r.stderr
    assert not target.exists()


def test_bundle_cannot_supply_transforms(tmp_path):
    """A fit that used the caller's own functions cannot be exported as data; its
    formula loads only when the caller passes the function again."""
    def logit(p):
        return np.log(p / (1 - p))
    df = SLEEP.assign(p=(SLEEP["Days"] + 1) / 11)
    fit = bayesmix.lm("Reaction ~ logit(p)", df, transforms={"logit": logit})
    with pytest.raises(BayesmixError, match="transforms"):
        fit.export(tmp_path / "t")
    assert not (tmp_path / "t").exists()


def _weights(n):
    return np.linspace(0.5, 2.0, n)


@pytest.mark.parametrize("kind", ["lm", "glm", "glm_weighted"])
def test_closed_form_fits_export_and_reload(tmp_path, kind):
    cbpp = load("cbpp")
    if kind == "lm":
        fit = bayesmix.lm("Reaction ~ Days", SLEEP)
    elif kind == "glm":
        fit = bayesmix.glm("cbind(incidence, size - incidence) ~ period", cbpp,
                           family="binomial")
    else:
        fit = bayesmix.glm("Reaction ~ Days", SLEEP, weights=_weights(len(SLEEP)))
    path = Path(fit.export(tmp_path / kind))
    assert not (path / "model.stan").exists()  # closed form: no Stan program
    back = bayesmix.load(path)
    pd.testing.assert_series_equal(back.coef(), fit.coef())
    assert str(back.summary()) == str(fit.summary())
    if kind == "glm_weighted":
        # the weights travelled: an unweighted refit differs
        plain = bayesmix.glm("Reaction ~ Days", SLEEP)
        assert not np.allclose(plain.coef(), back.coef())
        np.testing.assert_array_equal(back.design.weights, fit.design.weights)


@pytest.mark.slow
def test_weighted_posterior_reloads_with_its_weights(tmp_path):
    w = _weights(len(SLEEP))
    model = bayesmix.Model("Reaction ~ Days + (1 | Subject)", SLEEP, weights=w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = model.sample(chains=1, iter_warmup=100, iter_sampling=50, seed=2)
    path = Path(post.export(tmp_path / "wpost"))
    back = bayesmix.load(path)
    np.testing.assert_array_equal(back.design.weights, w)
    # the reloaded design rebuilds exactly the data the program ran with
    data = json.loads((path / "data.json").read_text())
    weight_keys = [k for k, v in data.items() if np.shape(v) == w.shape
                   and np.allclose(v, w)]
    assert weight_keys, "the program's data carries the weights"
    assert str(back.summary()) == str(post.summary())


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bayesmix.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_cli_exports_models_without_random_terms(tmp_path):
    data = Path(bayesmix.__file__).parent / "datasets" / "sleepstudy.csv"
    r = _cli("fit", "Reaction ~ Days", "--data", str(data), "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert bayesmix.load(tmp_path / "o").coef()["Days"] == pytest.approx(10.467285959596)


def test_cli_turns_unexpected_errors_into_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage\n\x00\x01")
    r = _cli("fit", "y ~ x", "--data", str(bad))
    assert r.returncode == 2
    assert r.stderr.startswith("bayesmix: error:") and "Traceback" not in r.stderr
    taken = tmp_path / "taken"
    taken.mkdir()
    data = Path(bayesmix.__file__).parent / "datasets" / "sleepstudy.csv"
    r = _cli("fit", "Reaction ~ Days", "--data", str(data), "--out", str(taken))
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr


def test_glmer_bundle_carries_its_cpp_functions(tmp_path):
    """glmer's program declares C++ functions (stan/glmm_mode.hpp): the bundle carries them as
    CmdStan's user_header.hpp, names them in its make line, and reloads with the fit's own
    standard errors (the driver's Hessian is recorded); a rerun compiles bayesmix's own copy
    and refuses a bundle whose copy differs (an edited bundle loaded with verify=False)."""
    from bayesmix.engine import stan_dir
    cbpp = load("cbpp")
    fit = bayesmix.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                         family="binomial")
    b = Path(fit.export(tmp_path / "glmer"))
    header = (stan_dir() / "glmm_mode.hpp").read_bytes()
    assert (b / "user_header.hpp").read_bytes() == header
    readme = (b / "README.md").read_text()
    assert ('make -C "$CMDSTAN" STANCFLAGS=--allow-undefined '
            'USER_HEADER="$PWD/user_header.hpp" "$PWD/model"') in readme
    loaded = bayesmix.load(b)
    np.testing.assert_array_equal(loaded.estimates.se, fit.estimates.se)  # regression pin
    # lme4 1.1-31 (tests/reference): cbpp period fit, logLik -92.02628
    assert abs(loaded.estimates.logLik - -92.02628) < 1e-5
    again = bayesmix.rerun(b)
    np.testing.assert_allclose(again.estimates.beta, fit.estimates.beta, rtol=0, atol=0)
    edited = _copy(b, tmp_path)
    with open(edited / "user_header.hpp", "a") as fh:
        fh.write("\n// edited\n")
    with pytest.raises(BayesmixError, match="user_header.hpp.*differ"):
        bayesmix.rerun(edited, verify=False)
