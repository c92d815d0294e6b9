"""Fully Bayesian fits: NUTS on the joint program against lme4, recovery of
known values, priors that bite, prior predictive draws, ArviZ export and the
sampler diagnostics."""

import json
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayesmix.bayes import SamplingWarning, fit_nuts
from bayesmix.datasets import load
from bayesmix.design import build_design
from bayesmix.errors import BayesmixError
from bayesmix.priors import default_scales, prior

REFS = json.loads((Path(__file__).parent / "reference" / "lme4_refs.json").read_text())["cases"]
SLEEP = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep_design():
    return build_design(SLEEP, load("sleepstudy"))


@pytest.fixture(scope="module")
def sleep_fit(sleep_design):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        fit = fit_nuts(sleep_design, chains=4, iter_warmup=1000, iter_sampling=1000, seed=11,
                       show_progress=False)
    fit.caught = [w for w in caught if issubclass(w.category, SamplingWarning)]
    return fit


def _check_against_lme4(fit, ref):
    diag = fit.diagnostics()
    assert diag.divergences == 0, str(diag)
    assert diag.max_rhat < 1.01, str(diag)
    fe, med = fit.fixef(), fit.fixef(robust=True)
    for name, value in ref["fixef"].items():
        z = (med.loc[name, "Estimate"] - value) / fe.loc[name, "Est.Error"]
        assert abs(z) < 0.5, (name, med.loc[name, "Estimate"], value)
    assert fit.sigma() == pytest.approx(ref["sigma"], rel=0.10)


@pytest.mark.slow
def test_sleepstudy_matches_lme4(sleep_fit):
    assert not sleep_fit.caught, [str(w.message) for w in sleep_fit.caught]
    _check_against_lme4(sleep_fit, REFS["sleepstudy_slope_REML"]["results"])
    diag = sleep_fit.diagnostics()
    assert diag.min_ess_bulk > 400 and diag.min_ess_tail > 400


@pytest.mark.slow
def test_lmmdata_nested_matches_lme4():
    # Non-centred (the default, brms's layout), 50 observations per class pin each
    # class effect down and NUTS saturates its tree depth (about 4 minutes here for
    # 4 x 2000 iterations, valid but slow). The centred parameterisation with a dense
    # metric samples the same posterior in seconds.
    d = build_design("extro ~ open + agree + social + (1 | school/class)", load("lmmdata"))
    fit = fit_nuts(d, chains=4, iter_warmup=1000, iter_sampling=1000, seed=5,
                   adapt_delta=0.95, centered=True, metric="dense_e", save_log_lik=False,
                   save_y_rep=False, show_progress=False, program="generated")
    _check_against_lme4(fit, REFS["lmmdata_nested_REML"]["results"])
    assert "r_1 ~ " not in fit.stan_code and "r_1[, m] ~ normal(0, sd_1[m]);" in fit.stan_code
    vc = fit.varcorr()
    assert list(vc["grp"]) == ["class:school", "school", "Residual"]


def test_idata_names_and_coords(sleep_fit, sleep_design):
    idata = sleep_fit.to_arviz()
    for group in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive",
                  "observed_data"):
        assert group in idata.groups()
    post = idata.posterior
    # one variable per scalar with its own scale (docs/results.md); random effects by level
    assert list(post.data_vars) == ["Intercept", "Days", "sd(1|Subject)", "sd(Days|Subject)",
                                    "cor(1,Days|Subject)", "sigma", "1|Subject", "Days|Subject"]
    for name in ("Intercept", "Days", "sd(1|Subject)", "cor(1,Days|Subject)", "sigma"):
        assert post[name].dims == ("chain", "draw"), name
    r = post["Days|Subject"]
    assert r.dims == ("chain", "draw", "Subject_level")
    assert list(r.coords["Subject_level"].values) == list(load("sleepstudy")["Subject"]
                                                          .cat.categories)
    assert r.sel(Subject_level="308").shape == (4, 1000)
    # the same draws as the internal arrays (lme4-named accessors read those)
    nd = sleep_fit.named_draws().posterior
    np.testing.assert_array_equal(post["Days"].values, nd["b"][..., 1])
    np.testing.assert_array_equal(post["sd(Days|Subject)"].values, nd["sd_Subject"][..., 1])
    np.testing.assert_array_equal(post["cor(1,Days|Subject)"].values, nd["cor_Subject"][..., 0])
    np.testing.assert_array_equal(r.values, nd["r_Subject"][..., 1])
    np.testing.assert_array_equal(sleep_fit.ranef_draws("Subject").values, nd["r_Subject"])
    subj = idata.constant_data["Subject"].values
    prior = sleep_fit.to_arviz(prior=True).prior  # exact prior draws (tests/test_prior_draws.py)
    assert list(prior.data_vars) == list(post.data_vars)
    assert prior["Days|Subject"].shape == (4, 1000, 18)
    assert list(subj) == list(load("sleepstudy")["Subject"].astype(str))
    assert idata.log_likelihood["Reaction"].dims == ("chain", "draw", "obs")
    assert idata.posterior_predictive["Reaction"].shape == (4, 1000, 180)
    np.testing.assert_allclose(idata.observed_data["Reaction"].values, sleep_design.y)
    assert {"diverging", "tree_depth", "energy", "lp"} <= set(idata.sample_stats.data_vars)
    # the pointwise log-likelihood is the model's: at a draw, sum = normal density
    one = idata.posterior.isel(chain=0, draw=0)
    b = np.array([float(one["Intercept"]), float(one["Days"])])
    r = np.column_stack([one["1|Subject"].values, one["Days|Subject"].values])
    s = float(one["sigma"])
    d = sleep_design
    mu = d.X @ b + np.einsum("nm,nm->n", d.terms[0].Z, r[d.terms[0].index])
    ll = stats.norm.logpdf(d.y, mu, s)
    np.testing.assert_allclose(idata.log_likelihood["Reaction"].isel(chain=0, draw=0), ll,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # arviz on matplotlib 3.11
def test_arviz_functions_work(sleep_fit):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    idata = sleep_fit.to_arviz()
    summ = az.summary(idata)  # no arguments: every variable, one row per scalar or level
    assert list(summ.index[:6]) == ["Intercept", "Days", "sd(1|Subject)", "sd(Days|Subject)",
                                    "cor(1,Days|Subject)", "sigma"]
    assert list(summ.index[6:8]) == ["1|Subject[308]", "1|Subject[309]"]
    assert summ.index[-1] == "Days|Subject[372]"
    assert len(summ) == 2 + 2 + 1 + 2 * 18 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo) and loo.n_data_points == 180
    axes = az.plot_trace(idata)
    # intercept and slope on separate rows (their scales differ by a factor of 25)
    assert axes.shape == (8, 2) and axes[0, 0].get_title() == "Intercept" \
        and axes[1, 0].get_title() == "Days"
    assert np.allclose(axes[1, 1].get_lines()[0].get_ydata(), idata.posterior["Days"][0])
    az.plot_forest(idata, var_names=["Days|Subject"])
    az.plot_posterior(idata, var_names=["Intercept", "Days", "sigma"])
    az.plot_ppc(idata, num_pp_samples=20)
    plt.close("all")


def test_lme4_shaped_accessors(sleep_fit):
    ref = REFS["sleepstudy_slope_REML"]["results"]
    fe = sleep_fit.fixef()
    assert list(fe.columns) == ["Estimate", "Est.Error", "Q2.5", "Q97.5"]
    assert list(fe.index) == ["(Intercept)", "Days"]
    re = sleep_fit.ranef()["Subject"]
    assert list(re.columns) == ["(Intercept)", "Days"] and re.shape == (18, 2)
    lme4 = pd.DataFrame(ref["ranef"]["Subject"]["values"], index=ref["ranef"]["Subject"]["levels"])
    for c in re.columns:
        assert np.corrcoef(re[c], lme4.loc[re.index, c])[0, 1] > 0.98
    assert sleep_fit.ranef("sd")["Subject"].to_numpy().min() > 0
    lo, hi = sleep_fit.ranef(0.025)["Subject"], sleep_fit.ranef(0.975)["Subject"]
    assert np.all(lo.to_numpy() < re.to_numpy()) and np.all(re.to_numpy() < hi.to_numpy())
    co = sleep_fit.coef()["Subject"]
    np.testing.assert_allclose(co.to_numpy(), re.to_numpy() + fe["Estimate"].to_numpy())
    vc = sleep_fit.varcorr()
    assert list(vc.columns) == ["grp", "var1", "var2", "vcov", "sdcor", "lower", "upper"]
    assert list(vc["grp"]) == ["Subject"] * 3 + ["Residual"]
    assert list(vc["var1"][:3]) == ["(Intercept)", "Days", "(Intercept)"]
    assert vc["var2"][2] == "Days" and pd.isna(vc["var2"][0])
    assert vc["sdcor"][3] == pytest.approx(sleep_fit.sigma())
    assert np.all(vc["lower"] < vc["sdcor"]) and np.all(vc["sdcor"] < vc["upper"])
    assert sleep_fit.ngrps() == {"Subject": 18} and sleep_fit.nobs() == 180


def test_summary_prints_like_brms(sleep_fit):
    text = str(sleep_fit.summary())
    for piece in [" Family: gaussian", "Formula: Reaction ~ Days + (Days | Subject)",
                  "   Data: 180 observations", "total post-warmup draws = 4000",
                  "Multilevel Hyperparameters:", "~Subject (Number of levels: 18)",
                  "sd(Intercept)", "sd(Days)", "cor(Intercept,Days)",
                  "Regression Coefficients:", "Further Distributional Parameters:", "sigma",
                  "Rhat", "Bulk_ESS", "Tail_ESS"]:
        assert piece in text, piece
    assert "<table" in sleep_fit.summary()._repr_html_()
    assert "divergent transitions: 0" in str(sleep_fit.diagnostics())


def test_recovers_known_values():
    rng = np.random.default_rng(2024)
    n_groups, per = 40, 8
    true = {"b0": 2.0, "b1": 0.7, "sd0": 1.0, "sd1": 0.4, "cor": 0.4, "sigma": 1.0}
    cov = np.array([[true["sd0"] ** 2, true["cor"] * true["sd0"] * true["sd1"]],
                    [true["cor"] * true["sd0"] * true["sd1"], true["sd1"] ** 2]])
    u = rng.multivariate_normal([0, 0], cov, size=n_groups)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(0, 1, g.size)
    y = true["b0"] + u[g, 0] + (true["b1"] + u[g, 1]) * x + rng.normal(0, true["sigma"], g.size)
    df = pd.DataFrame({"y": y, "x": x, "grp": pd.Categorical([f"s{i:02d}" for i in g])})
    d = build_design("y ~ x + (x | grp)", df)  # same shape as sleepstudy: no new compile
    fit = fit_nuts(d, chains=4, iter_warmup=500, iter_sampling=1000, seed=7,
                   show_progress=False)
    assert fit.diagnostics().ok, str(fit.diagnostics())
    fe = fit.fixef()
    for name, key in (("(Intercept)", "b0"), ("x", "b1")):
        assert fe.loc[name, "Q2.5"] < true[key] < fe.loc[name, "Q97.5"], (name, fe)
    vc = fit.varcorr().set_index(["var1", "var2"], drop=False)
    rows = {"sd0": vc.iloc[0], "sd1": vc.iloc[1], "cor": vc.iloc[2], "sigma": vc.iloc[3]}
    for key, row in rows.items():
        assert row["lower"] < true[key] < row["upper"], (key, row)


def test_tight_prior_pins_the_coefficient(sleep_design):
    tight = [prior("normal(5, 0.001)", cls="b", coef="Days")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        fit = fit_nuts(sleep_design, tight, chains=2, iter_warmup=400, iter_sampling=400,
                       seed=3, show_progress=False, program="generated")
    assert fit.program_kind == "generated" and fit.fallback.code == "forced"
    assert "b ~ normal(5, 0.001);" in fit.stan_code
    days = fit.fixef().loc["Days"]
    assert days["Estimate"] == pytest.approx(5, abs=0.003) and days["Est.Error"] < 0.002
    assert fit.prior_summary().loc[1, "source"] == "user"


def test_prior_only_draws_from_the_prior(sleep_design):
    fit = fit_nuts(sleep_design, chains=4, iter_warmup=500, iter_sampling=1000, seed=9,
                   prior_only=True, show_progress=False, diagnostics=False)
    assert fit.prior_only and "PRIOR ONLY" in str(fit.summary())
    scale = default_scales(sleep_design).sigma_scale
    post = fit.to_arviz().posterior
    probs = np.array([0.25, 0.5, 0.75])
    half_t = stats.t.ppf(0.5 + probs / 2, 3) * scale
    for draws in (post["sigma"].values, post["sd(Days|Subject)"].values):
        np.testing.assert_allclose(np.quantile(draws, probs), half_t, rtol=0.1)
    yrep = fit.to_arviz().posterior_predictive["Reaction"].values
    assert yrep.shape == (4, 1000, 180) and np.all(np.isfinite(yrep))
    # the prior predictive spread is far wider than the data's
    assert np.std(yrep) > 3 * np.std(sleep_design.y)


def test_diagnostics_warn_on_short_runs(sleep_design):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_nuts(sleep_design, chains=2, iter_warmup=15, iter_sampling=15, seed=1,
                       show_progress=False, save_log_lik=False, save_y_rep=False)
    messages = [str(w.message) for w in caught if w.category is SamplingWarning]
    assert any("R-hat" in m for m in messages) and any("ESS" in m for m in messages)
    assert len(messages) == len(fit.diagnostics().problems)
    assert not fit.diagnostics().ok
    assert "log_likelihood" not in fit.to_arviz().groups()


def test_bad_arguments_fail_before_compiling(sleep_design):
    with pytest.raises(BayesmixError, match="metric"):
        fit_nuts(sleep_design, metric="unit")
    with pytest.raises(BayesmixError, match="adapt_delta"):
        fit_nuts(sleep_design, adapt_delta=1.5)
    with pytest.raises(BayesmixError, match="valid coefs"):
        fit_nuts(sleep_design, [prior("normal(0, 1)", cls="b", coef="day")])


@pytest.mark.slow
def test_confint_is_the_central_posterior_interval(sleep_fit):
    ci = sleep_fit.confint(0.9)
    post = sleep_fit.to_arviz().posterior
    b = np.column_stack([post["Intercept"].values.reshape(-1), post["Days"].values.reshape(-1)])
    np.testing.assert_allclose(ci.to_numpy(), np.quantile(b, [0.05, 0.95], axis=0).T,
                               rtol=1e-10)
    assert list(ci.columns) == ["Q5", "Q95"]


def test_model_front_door_shares_the_program():
    import bayesmix
    a = bayesmix.Model(SLEEP, load("sleepstudy"))
    b = bayesmix.Model("extro ~ open + (1 + open | school)", load("lmmdata"))
    def code_lines(model):  # comments carry the formula; the code is shape-only
        return [ln for ln in model.stan_code("joint").splitlines()
                if not ln.lstrip().startswith("//")]
    assert code_lines(a) == code_lines(b)
    assert {"Intercept", "b", "sd", "sigma", "cor"} <= set(a.prior_summary()["class"])
