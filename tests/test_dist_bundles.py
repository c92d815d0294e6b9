"""Distributional fits in bundles and on the command line (issue #17, io): a Laplace ML fit
(DistMLFit) and a NUTS fit (DistPosteriorFit) export, load and rerun like every other fit.

What is checked, and against what:
* load restores the fit from the saved CSV outputs without refitting: logLik, every
  predictor's fixed effects, cutpoints, SEs, conditional modes and the summary identical to
  the original fit (the same CSV, the same numpy post-processing); NUTS draws identical;
* rerun (same program, data, inits, arguments, seed) gives identical numbers;
* the ML fits themselves (API and CLI) against glmmTMB 1.1.5 / ordinal::clmm
  (tests/reference/families/family_fits.json): logLik within 1e-3, issue #17's bar;
* the CLI's numbers equal the Python API's for the same model and arguments (identical:
  the same code path from the same CSV);
* bundles are data: a changed file is refused by name, formulas edited into run.json (code
  in the main or a dpar formula, an unknown or foreign dpar) are refused with a
  FormulaError / FamilyError before anything is evaluated, and nothing runs.
Runtime: one compile per program (cached), NUTS 2 chains x (200 + 200)."""
from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix import bf, prior
from bayesmix.cli import main
from bayesmix.dist.ml import DistMLFit, dist_ml_code
from bayesmix.dist.nuts import DistPosteriorFit, dist_nuts_code
from bayesmix.errors import BayesmixError, FamilyError, FormulaError
from bayesmix.priors import PriorError

REF_DIR = Path(__file__).parent / "reference" / "families"
REF = json.loads((REF_DIR / "family_fits.json").read_text())["cases"]
ZIP_CSV = REF_DIR / "zero_inflated_poisson_zi_re.csv"
CUM_CSV = REF_DIR / "cumulative_logit.csv"
ZIP_LOGLIK = REF["zero_inflated_poisson_zi_re"]["logLik"]  # glmmTMB 1.1.5
CUM_LOGLIK = REF["cumulative_logit"]["logLik"]             # ordinal::clmm
ZIP_FORMULA = ("y ~ x + (1 | g)", "~ 1 + (1 | g)")
NUTS = dict(chains=2, iter_warmup=200, iter_sampling=200, seed=11)
# text labels whose alphabetical order is not theirs: the bundle must keep the order
LABELS = ["very low", "low", "medium", "high", "very high"]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains: diagnostics warnings are expected
        return fn(*args, **kwargs)


def _cum_data() -> pd.DataFrame:
    d = pd.read_csv(CUM_CSV)
    d["y"] = pd.Categorical.from_codes(d["y"] - 1, categories=LABELS, ordered=True)
    return d


@pytest.fixture(scope="module")
def models():
    zip_model = bayesmix.Model(bf(ZIP_FORMULA[0], zi=ZIP_FORMULA[1]), pd.read_csv(ZIP_CSV),
                               family="zero_inflated_poisson")
    cum_model = bayesmix.Model("y ~ x + (1 | g)", _cum_data(), family="cumulative")
    return {"zip": zip_model, "cum": cum_model}


@pytest.fixture(scope="module")
def fits(models):
    out = {}
    for name, model in models.items():
        out[name, "ml"] = model.fit()
        out[name, "nuts"] = _quiet(model.sample, show_progress=False, **NUTS)
    return out


@pytest.fixture(scope="module")
def bundles(fits, tmp_path_factory):
    root = tmp_path_factory.mktemp("dist_bundles")
    return {key: Path(fit.export(root / f"{key[0]}_{key[1]}")) for key, fit in fits.items()}


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def _edit_meta(folder: Path, **changes) -> None:
    meta = json.loads((folder / "run.json").read_text())
    meta.update(changes)
    (folder / "run.json").write_text(json.dumps(meta))


def _assert_same_ml(a: DistMLFit, b: DistMLFit) -> None:
    assert isinstance(a, DistMLFit) and isinstance(b, DistMLFit)
    assert a.loglik() == b.loglik()  # to the last digit
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.se, b.se)
    for p in b.design.predictors:
        pd.testing.assert_series_equal(a.fixef(p.dpar), b.fixef(p.dpar))
    if b.cutpoints() is not None:
        pd.testing.assert_series_equal(a.cutpoints(), b.cutpoints())
    for dpar, groups in b.ranef().items():
        for g, table in groups.items():
            pd.testing.assert_frame_equal(a.ranef()[dpar][g], table)
    assert a.max_grad == b.max_grad and a.converged == b.converged
    assert str(a.summary()) == str(b.summary())


# ------------------------------------------------------------------ what a bundle holds


def test_restorers_are_registered():
    from bayesmix import registry
    assert {"dist_ml", "dist_nuts"} <= set(registry.restorable_kinds())


def test_run_json_records_the_distributional_model(bundles):
    meta = json.loads((bundles["zip", "ml"] / "run.json").read_text())
    assert meta["kind"] == "dist_ml" and meta["method"] == "optimize"
    assert meta["formula"] == "y ~ x + (1 | g)"
    assert meta["dpars"] == [["zi", "~ 1 + (1 | g)"]]
    assert meta["family"] == "zero_inflated_poisson" and meta["link"] == "log"
    assert meta["links"] == {"mu": "log", "zi": "logit"}
    assert set(meta["files"]) == {"model.stan", "data.json", "inits.json", "output.csv",
                                  "model_data.csv", "README.md"}
    cum = json.loads((bundles["cum", "nuts"] / "run.json").read_text())
    assert cum["kind"] == "dist_nuts" and cum["dpars"] == []
    assert cum["response_categories"] == LABELS
    assert cum["categories"]["y"] == {"levels": LABELS, "ordered": True}
    assert cum["outputs"] == ["output_1.csv", "output_2.csv"]
    assert cum["args"]["seed"] == NUTS["seed"]


def test_readme_shows_the_model_and_the_cmdstan_commands(bundles):
    readme = (bundles["zip", "ml"] / "README.md").read_text()
    assert readme.startswith("# bayesmix export: bf(y ~ x + (1 | g), zi ~ 1 + (1 | g))")
    assert "links mu = log; zi = logit" in readme
    assert 'make -C "$CMDSTAN" "$PWD/model"' in readme
    assert "./model optimize algorithm=lbfgs" in readme and "init=inits.json" in readme
    nuts = (bundles["cum", "nuts"] / "README.md").read_text()
    assert "./model sample num_samples=200 num_warmup=200" in nuts
    assert "num_chains=2" in nuts and f"seed={NUTS['seed']}" in nuts
    assert "ordered response categories very low < low < medium < high < very high" in nuts
    for key in bundles:
        code = (bundles[key] / "model.stan").read_text()
        assert "#include" not in code  # self-contained
        assert code == (dist_ml_code() if key[1] == "ml" else dist_nuts_code())


# ------------------------------------------------------------------ load and rerun


@pytest.mark.parametrize("name", ["zip", "cum"])
def test_ml_load_restores_the_fit_without_refitting(fits, bundles, name, monkeypatch):
    import bayesmix.dist.ml as dml

    def no_fit(*a, **k):
        raise AssertionError("load must not refit")
    monkeypatch.setattr(dml, "fit_dist_ml", no_fit)
    back = bayesmix.load(bundles[name, "ml"])
    _assert_same_ml(back, fits[name, "ml"])
    assert back.inits == fits[name, "ml"].inits
    # and the fit is the references' (glmmTMB 1.1.5 / clmm), issue #17's bar
    ref = ZIP_LOGLIK if name == "zip" else CUM_LOGLIK
    assert abs(back.loglik() - ref) < 1e-3


def test_ordered_response_keeps_its_categories(fits, bundles):
    back = bayesmix.load(bundles["cum", "ml"])
    assert back.design.categories == tuple(LABELS)
    y = back.design.data["y"]
    assert list(y.cat.categories) == LABELS and y.cat.ordered
    np.testing.assert_array_equal(back.design.y, fits["cum", "ml"].design.y)
    assert list(back.cutpoints().index) == ["very low|low", "low|medium", "medium|high",
                                           "high|very high"]


@pytest.mark.parametrize("name", ["zip", "cum"])
def test_nuts_load_restores_the_draws(fits, bundles, name):
    fit = fits[name, "nuts"]
    back = bayesmix.load(bundles[name, "nuts"])
    assert isinstance(back, DistPosteriorFit)
    np.testing.assert_array_equal(back.run.fit().draws(), fit.run.fit().draws())
    assert str(back.summary()) == str(fit.summary())
    pd.testing.assert_frame_equal(back.fixef(), fit.fixef())
    np.testing.assert_array_equal(back.log_lik(), fit.log_lik())
    assert back.priors == fit.priors


@pytest.mark.parametrize("name", ["zip", "cum"])
def test_rerun_reproduces_identical_numbers(fits, bundles, name):
    again = _quiet(bayesmix.rerun, bundles[name, "ml"])
    _assert_same_ml(again, fits[name, "ml"])
    post = _quiet(bayesmix.rerun, bundles[name, "nuts"])
    assert post.run.args == fits[name, "nuts"].run.args
    np.testing.assert_array_equal(post.run.fit().draws(), fits[name, "nuts"].run.fit().draws())


def test_user_priors_travel_with_the_bundle(models, tmp_path):
    priors = [prior("normal(0, 2)", cls="b", coef="x"),
              prior("normal(-1, 1)", cls="Intercept", dpar="zi"),
              prior("exponential(2)", cls="sd", dpar="zi")]
    model = bayesmix.Model(models["zip"].design.formula, pd.read_csv(ZIP_CSV),
                           family="zero_inflated_poisson", priors=priors)
    post = _quiet(model.sample, chains=1, iter_warmup=100, iter_sampling=50, seed=4,
                  show_progress=False)
    back = bayesmix.load(post.export(tmp_path / "priors"))
    assert back.priors == tuple(priors)
    pd.testing.assert_frame_equal(back.prior_summary(), post.prior_summary())
    data = json.loads((tmp_path / "priors" / "data.json").read_text())
    assert data["prior_dist"] == [int(v) for v in post.stan_data["prior_dist"]]


def test_interrupted_export_leaves_no_folder(fits, tmp_path, monkeypatch):
    import bayesmix.bundle as bundle

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(bundle, "_readme", boom)
    with pytest.raises(KeyboardInterrupt):
        fits["zip", "ml"].export(tmp_path / "b")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BayesmixError, match="already exists"):
        fits["zip", "ml"].export(tmp_path)


# ------------------------------------------------------------------ tampered bundles


@pytest.mark.parametrize("name", ["data.json", "output_1.csv", "model_data.csv"])
def test_changed_file_is_refused_by_name(bundles, tmp_path, name):
    b = _copy(bundles["zip", "nuts"], tmp_path)
    with open(b / name, "a") as fh:
        fh.write("\n")
    for call in (bayesmix.load, bayesmix.rerun):
        with pytest.raises(BayesmixError, match=f"'{name}'.*checksum"):
            call(b)


def test_edited_dpar_formula_is_refused(bundles, tmp_path):
    b = _copy(bundles["zip", "ml"], tmp_path)
    _edit_meta(b, dpars=[["zi", "~ 1 + x"]])
    with pytest.raises(BayesmixError, match="run.json .* changed after export"):
        bayesmix.load(b)
    # deliberately edited (verify=False): a model that no longer matches the saved outputs
    with pytest.raises(BayesmixError, match="do not match its saved Stan outputs"):
        bayesmix.load(b, verify=False)


HOSTILE = {
    "dpar code": dict(dpars=[["zi", "~ I(__import__('os').system('touch {p}'))"]]),
    "dpar eval": dict(dpars=[["zi", "~ 1 + {{exec('open(\"{p}\", \"w\")')}}"]]),
    "dpar in a term": dict(dpars=[["zi", "~ 1 + (I(open('{p}', 'w').write('x')) | g)"]]),
    "main formula": dict(formula="y ~ x + I(__import__('pathlib').Path('{p}').touch()) "
                                 "+ (1 | g)"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_formula_in_a_bundle_runs_nothing(bundles, tmp_path, case):
    """Even with verify=False the formulas are data: the allow-list refuses them first."""
    target = tmp_path / "pwned"
    b = _copy(bundles["zip", "ml"], tmp_path)
    edit = {k: (v.format(p=target) if isinstance(v, str)
                else [[n, t.format(p=target)] for n, t in v])
            for k, v in HOSTILE[case].items()}
    _edit_meta(b, **edit)
    for call in (bayesmix.load, bayesmix.rerun):
        with pytest.raises(FormulaError):
            call(b, verify=False)
    assert not target.exists()


@pytest.mark.parametrize("dpars, error, message", [
    ([["__class__", "~ 1"]], FormulaError, "unknown distributional parameter '__class__'"),
    ([["zi; import os", "~ 1"]], FormulaError, "is not a distributional parameter name"),
    ([["mu", "~ x"]], FormulaError, "mu is modelled by the main formula"),
    ([["sigma", "~ x"]], FamilyError, "has no distributional parameter 'sigma'"),
    ([["zi", "~ 1"], ["zi", "~ x"]], FormulaError, "given twice"),
    ([["zi", "y ~ 1"]], FormulaError, "two-sided"),
    ("zi=~1", BayesmixError, "list of \\[name, formula\\] pairs"),
    ([["zi", ["~", "1"]]], BayesmixError, "list of \\[name, formula\\] pairs"),
])
def test_bad_dpar_in_a_bundle_is_refused(bundles, tmp_path, dpars, error, message):
    b = _copy(bundles["zip", "ml"], tmp_path)
    _edit_meta(b, dpars=dpars)
    with pytest.raises(error, match=message):
        bayesmix.load(b, verify=False)


def test_foreign_links_categories_and_priors_are_refused(bundles, tmp_path):
    b = _copy(bundles["zip", "ml"], tmp_path)
    _edit_meta(b, links={"mu": "log", "zi": "probit"})
    with pytest.raises(BayesmixError, match="links"):
        bayesmix.load(b, verify=False)
    c = tmp_path / "cum"
    shutil.copytree(bundles["cum", "nuts"], c)
    _edit_meta(c, response_categories=sorted(LABELS))
    with pytest.raises(BayesmixError, match="categories"):
        bayesmix.load(c, verify=False)
    meta = json.loads((bundles["cum", "nuts"] / "run.json").read_text())
    meta["response_categories"] = LABELS
    meta["fit"]["priors"] = [{"dist": "__import__('os')", "cls": "b", "coef": None,
                              "group": None}]
    (c / "run.json").write_text(json.dumps(meta))
    with pytest.raises(PriorError):
        bayesmix.load(c, verify=False)
    meta["fit"]["priors"] = [{"dist": "normal(0, 1)", "cls": "b", "coef": "x",
                              "group": None, "dpar": "zi"}]
    (c / "run.json").write_text(json.dumps(meta))
    with pytest.raises(PriorError, match="no distributional parameter 'zi'"):
        bayesmix.load(c, verify=False)


# ------------------------------------------------------------------ the command line


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


ZIP_ARGS = ("fit", ZIP_FORMULA[0], "--data", ZIP_CSV, "--family", "zero_inflated_poisson",
            "--dpar", f"zi={ZIP_FORMULA[1]}")


def test_cli_ml_fit_matches_the_api_and_glmmtmb(fits, tmp_path, capsys):
    code, out, err = _cli(capsys, *ZIP_ARGS, "--method", "ml", "--out", tmp_path / "ml")
    assert code == 0, err
    assert "Zero-inflation model" in out and "exported to" in out
    back = bayesmix.load(tmp_path / "ml")
    api = fits["zip", "ml"]
    assert back.loglik() == api.loglik()  # the same model from the same CSV: identical
    np.testing.assert_array_equal(back.x, api.x)
    np.testing.assert_array_equal(back.se, api.se)
    # glmmTMB 1.1.5: glmmTMB(y ~ x + (1 | g), ziformula = ~1 + (1 | g), family = poisson())
    assert abs(back.loglik() - ZIP_LOGLIK) < 1e-3
    ref = REF["zero_inflated_poisson_zi_re"]["fixef"]
    for dpar in ("mu", "zi"):  # test_dist_ml's tolerance: 1e-3 relative or 1e-4 absolute
        np.testing.assert_allclose(back.fixef(dpar).to_numpy(), ref[dpar]["estimate"],
                                   rtol=1e-3, atol=1e-4)


def test_cli_nuts_fit_matches_the_api(fits, models, tmp_path, capsys):
    code, out, err = _cli(capsys, *ZIP_ARGS, "--method", "nuts", "--chains", NUTS["chains"],
                          "--iter-warmup", NUTS["iter_warmup"], "--iter-sampling",
                          NUTS["iter_sampling"], "--seed", NUTS["seed"],
                          "--out", tmp_path / "nuts")
    assert code == 0, err
    assert "zi_Intercept" in out and "sd(zi_Intercept)" in out
    back = bayesmix.load(tmp_path / "nuts")
    np.testing.assert_array_equal(back.run.fit().draws(), fits["zip", "nuts"].run.fit().draws())


def test_cli_ordinal_response_from_whole_numbers(tmp_path, capsys):
    """A cumulative response in a CSV is whole numbers: the categories 1 < ... < 5."""
    code, out, err = _cli(capsys, "fit", "y ~ x + (1 | g)", "--data", CUM_CSV, "--family",
                          "cumulative", "--out", tmp_path / "cum")
    assert code == 0, err
    assert "Threshold coefficients" in out and "1|2" in out
    back = bayesmix.load(tmp_path / "cum")
    assert back.design.categories == ("1", "2", "3", "4", "5")
    assert json.loads((tmp_path / "cum" / "run.json").read_text())["response_categories"] \
        == ["1", "2", "3", "4", "5"]
    # ordinal::clmm(y ~ x + (1 | g), link = "logit")
    assert abs(back.loglik() - CUM_LOGLIK) < 1e-3
    ref = REF["cumulative_logit"]["fixef"]["cutpoints"]["estimate"]
    np.testing.assert_allclose(back.cutpoints().to_numpy(), ref, rtol=1e-3, atol=1e-4)


def test_cli_help_documents_ordinal_csv_responses(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "whole numbers" in out and "numeric order" in out and "--dpar NAME=FORMULA" in out


@pytest.mark.parametrize("method, code", [("ml", dist_ml_code), ("nuts", dist_nuts_code)])
def test_cli_stancode(capsys, method, code):
    rc, out, err = _cli(capsys, "stancode", *ZIP_ARGS[1:], "--method", method)
    assert rc == 0, err
    assert out == code() + "\n"


@pytest.mark.parametrize("dpar, message", [
    ("zi", "--dpar 'zi' is not NAME=FORMULA"),
    ("=~ x", "is not NAME=FORMULA"),
    ("zi=", "is not NAME=FORMULA"),
    ("sigma=~ x", "has no distributional parameter 'sigma'"),
    ("zz=~ x", "unknown distributional parameter 'zz'"),
    ("zi=~ x + nosuchcol", "nosuchcol"),
    ("zi=~ I(__import__('os').getcwd())", "zi formula"),
])
def test_cli_bad_dpar_names_the_culprit(capsys, dpar, message):
    rc, out, err = _cli(capsys, *ZIP_ARGS[:-2], "--dpar", dpar)
    assert rc == 2 and out == ""
    assert err.startswith("bayesmix: error:") and message in err
    assert "Traceback" not in err


def test_cli_repeated_dpar(capsys):
    rc, _, err = _cli(capsys, *ZIP_ARGS, "--dpar", "zi=~ x")
    assert rc == 2 and "--dpar zi is given twice" in err
    # two parameters of one family: zero-inflated negative binomial's shape and zi
    rc, out, err = _cli(capsys, "stancode", ZIP_FORMULA[0], "--data", ZIP_CSV, "--family",
                        "zero_inflated_negbinomial", "--dpar", "shape=~ x", "--dpar",
                        "zi=~ 1 + (1 | g)", "--method", "ml")
    assert rc == 0, err


def test_cli_module_runs_as_a_program(tmp_path):
    import subprocess
    r = subprocess.run([sys.executable, "-m", "bayesmix.cli", "stancode", ZIP_FORMULA[0],
                        "--data", str(ZIP_CSV), "--family", "zero_inflated_poisson",
                        "--dpar", "zi=~ 1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == dist_nuts_code() + "\n"
