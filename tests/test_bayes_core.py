"""Fully Bayesian fits (joint brms-style program, NUTS) checked against known answers."""

import json
import warnings
from functools import lru_cache
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.datasets import load

REFS = json.loads((Path(__file__).parent / "reference" / "lme4_refs.json").read_text())


@lru_cache(maxsize=None)
def sleep_post():
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.sample(chains=4, iter_warmup=500, iter_sampling=500, seed=7,
                            adapt_delta=0.95, show_progress=False)


@pytest.mark.slow
def test_sleepstudy_against_lme4():
    post = sleep_post()
    ref = REFS["cases"]["sleepstudy_slope_REML"]["results"]
    idata = post.to_arviz()
    assert int(idata.sample_stats["diverging"].sum()) == 0
    rhat = az.rhat(idata, var_names=["b", "sigma"])
    assert float(rhat["b"].max()) < 1.01 and float(rhat["sigma"]) < 1.01
    b = idata.posterior["b"]
    med = b.median(("chain", "draw")).to_series()
    sd = b.std(("chain", "draw")).to_series()
    for name, value in ref["fixef"].items():
        assert abs(med[name] - value) < 0.5 * sd[name], name
    assert post.sigma() == pytest.approx(ref["sigma"], rel=0.1)


@pytest.mark.slow
def test_idata_names_levels_and_loo():
    post = sleep_post()
    idata = post.to_arviz()
    for group in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive",
                  "observed_data"):
        assert group in idata.groups()
    assert list(idata.posterior["b"].coords["coef"].values) == ["(Intercept)", "Days"]
    r = idata.posterior["r_Subject"]
    assert list(r.coords[r.dims[2]].values) == REFS["data"]["sleepstudy.csv"]["columns"][
        "Subject"]["levels"]
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)


def test_tight_prior_pins_coefficient():
    data = load("sleepstudy")
    tight = bayesmix.prior("normal(5, 0.001)", cls="b", coef="Days")
    plain = bayesmix.Model("Reaction ~ Days + (1 | Subject)", data)
    pinned = bayesmix.Model("Reaction ~ Days + (1 | Subject)", data, priors=[tight])
    assert plain.stan_code("nuts") != pinned.stan_code("nuts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = pinned.sample(chains=2, iter_warmup=300, iter_sampling=300, seed=3,
                             show_progress=False)
    days = post.fixef().loc["Days"]
    assert days["Estimate"] == pytest.approx(5, abs=0.01)
    assert days["Est.Error"] < 0.01


def test_same_shape_same_program():
    a = bayesmix.Model("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    b = bayesmix.Model("extro ~ open + (1 + open | school)", load("lmmdata"))
    # the structure (one correlated 2-coefficient term, one slope) is the same
    assert _strip_header(a.stan_code("nuts")) == _strip_header(b.stan_code("nuts"))


def _strip_header(code: str) -> str:
    return "\n".join(line for line in code.splitlines() if not line.startswith("//"))


def test_prior_summary_lists_every_class():
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    table = model.prior_summary()
    assert isinstance(table, pd.DataFrame)
    classes = set(table["class"])
    assert {"Intercept", "b", "sd", "sigma", "cor"} <= classes


def test_bad_prior_names_culprit():
    model = bayesmix.Model("Reaction ~ Days + (Days | Subject)", load("sleepstudy"),
                           priors=[bayesmix.prior("normal(0, 1)", cls="b", coef="Dayz")])
    with pytest.raises(bayesmix.BayesmixError, match="Dayz"):
        model.stan_code("nuts")


@pytest.mark.slow
def test_posterior_confint_is_central_interval():
    post = sleep_post()
    ci = post.confint(0.9)
    b = post.to_arviz().posterior["b"].values.reshape(-1, 2)
    np.testing.assert_allclose(ci.to_numpy(), np.quantile(b, [0.05, 0.95], axis=0).T,
                               rtol=1e-10)
    assert list(ci.columns) == ["Q5", "Q95"]
