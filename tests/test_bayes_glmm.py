"""Bayesian GLMMs with NUTS: cbpp against lme4's glmer (and bayesmix.glmer),
recovery of simulated poisson data with crossed factors, and negative-binomial
and Gamma models with a working log-likelihood (LOO) and predictions."""

import json
import warnings
from functools import lru_cache
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix
from bayesmix.datasets import load

CBPP_FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
CBPP = json.loads((Path(__file__).parent / "reference" / "lme4_refs.json").read_text())[
    "cases"]["cbpp_binomial"]["results"]


def _sample(model, **kw):
    kw = {"chains": 4, "iter_warmup": 500, "iter_sampling": 500, "seed": 1,
          "show_progress": False, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.sample(**kw)


def _flat(a):
    a = np.asarray(a)
    return a.reshape((-1,) + a.shape[2:])


@lru_cache(maxsize=None)
def cbpp_post():
    model = bayesmix.Model(CBPP_FORMULA, load("cbpp"), family="binomial")
    return _sample(model, iter_sampling=1000, seed=11)


@pytest.mark.slow
def test_cbpp_near_glmer():
    post = cbpp_post()
    diag = post.diagnostics()
    assert diag.divergences == 0, str(diag)
    assert diag.max_rhat < 1.01, str(diag)
    med, fe = post.fixef(robust=True), post.fixef()
    ml = bayesmix.glmer(CBPP_FORMULA, load("cbpp"), family="binomial")
    for name, value in CBPP["fixef"].items():
        sd = fe.loc[name, "Est.Error"]
        assert abs(med.loc[name, "Estimate"] - value) < sd, (name, med.loc[name], value)
        assert abs(med.loc[name, "Estimate"] - ml.fixef()[name]) < sd, name
    # lme4's herd SD (a mode under a flat prior) lies well inside the posterior
    sd_herd = _flat(post.named_draws().posterior["sd_herd"])[:, 0]
    lo, hi = np.quantile(sd_herd, [0.05, 0.95])
    ref_sd = CBPP["varcorr"]["herd"]["sd"]["(Intercept)"]
    assert lo < ref_sd < hi, (lo, ref_sd, hi)


@pytest.mark.slow
def test_cbpp_predictions():
    post = cbpp_post()
    data = load("cbpp")
    ml = bayesmix.glmer(CBPP_FORMULA, data, family="binomial")
    p = post.epred()  # probabilities
    assert p.shape == (post.chains * post.ndraws, len(data))
    assert np.all((p > 0) & (p < 1))
    eta = post.linpred()
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-eta)))
    # link-scale posterior means near glmer's predictions (conditional modes)
    z = (eta.mean(axis=0) - ml.predict()) / eta.std(axis=0)
    assert np.abs(z).max() < 1.0, np.abs(z).max()
    z0 = (post.linpred(re_form="~0").mean(axis=0) - ml.predict(re_form="~0")) / \
        post.linpred(re_form="~0").std(axis=0)
    assert np.abs(z0).max() < 1.0
    # expected counts with the trials; predictive draws are counts out of size
    size = data["size"].to_numpy()
    np.testing.assert_allclose(post.epred(trials="size"), p * size)
    y = post.predict(seed=3)
    assert np.all(y == np.round(y)) and np.all((y >= 0) & (y <= size))
    np.testing.assert_allclose(y.mean(axis=0), (p * size).mean(axis=0),
                               atol=5 * size.max() / np.sqrt(len(y)))
    # new data: trials from the cbind() columns, else required
    new = data.iloc[:3]
    assert post.predict(new, seed=1).shape == (len(y), 3)
    with pytest.raises(bayesmix.DataError, match="trials"):
        post.predict(new[["period", "herd"]], seed=1)
    assert post.predict(new[["period", "herd"]], trials=20, seed=1).max() <= 20


def _poisson_crossed(seed=3):
    rng = np.random.default_rng(seed)
    na, nb, reps = 16, 12, 3
    a = np.repeat(np.arange(na), nb * reps)
    b = np.tile(np.repeat(np.arange(nb), reps), na)
    x = rng.normal(size=a.size)
    truth = {"(Intercept)": 0.8, "x": 0.4, "sd_a": 0.6, "sd_b": 0.35}
    ua = rng.normal(0, truth["sd_a"], na)
    ub = rng.normal(0, truth["sd_b"], nb)
    eta = truth["(Intercept)"] + truth["x"] * x + ua[a] + ub[b]
    y = rng.poisson(np.exp(eta))
    data = pd.DataFrame({"y": y, "x": x, "a": [f"a{i}" for i in a],
                         "b": [f"b{i}" for i in b]})
    return data, truth


@lru_cache(maxsize=None)
def poisson_post():
    data, truth = _poisson_crossed()
    model = bayesmix.Model("y ~ x + (1 | a) + (1 | b)", data, family="poisson")
    return _sample(model, iter_sampling=1000, seed=5, adapt_delta=0.9), data, truth


@pytest.mark.slow
def test_poisson_crossed_recovery():
    post, data, truth = poisson_post()
    diag = post.diagnostics()
    # sd_a (16 levels) has a bulk ESS of ~550-700 at 4 x 1000 draws and its R-hat varies
    # around 1.01 from seed to seed (1.006-1.010 on the generated program, 1.011-1.012 on
    # the generic one for seeds 5-7): 1.02 is what this run length can promise
    assert diag.divergences == 0 and diag.max_rhat < 1.02, str(diag)
    fe = post.fixef()
    for name in ("(Intercept)", "x"):
        assert fe.loc[name, "Q2.5"] < truth[name] < fe.loc[name, "Q97.5"], (name, fe)
    posterior = post.named_draws().posterior
    for g in ("a", "b"):
        lo, hi = np.quantile(posterior[f"sd_{g}"], [0.025, 0.975])
        assert lo < truth[f"sd_{g}"] < hi, (g, lo, hi)


@pytest.mark.slow
def test_poisson_re_form_subset():
    post, data, _ = poisson_post()
    posterior = post.named_draws().posterior
    b = _flat(posterior["b"])
    X = np.column_stack([np.ones(len(data)), data["x"]])
    levels_a = list(post.to_arviz().posterior["1|a"].coords["a_level"].values)
    ia = np.array([levels_a.index(v) for v in data["a"]])
    r_a = _flat(posterior["r_a"])[:, :, 0]
    expect = b @ X.T + r_a[:, ia]
    np.testing.assert_allclose(post.linpred(re_form="~(1 | a)"), expect, rtol=1e-12)
    np.testing.assert_allclose(post.epred(re_form="~(1 | a)"), np.exp(expect), rtol=1e-12)
    full = post.linpred()
    assert not np.allclose(full, expect)
    # a new level of b only: fine when b is left out of re_form
    new = pd.DataFrame({"x": [0.0], "a": ["a0"], "b": ["new"]})
    np.testing.assert_allclose(post.linpred(new, re_form="~(1 | a)"),
                               expect[:, [0]] - b[:, [1]] * data["x"].iloc[0], atol=1e-12)
    with pytest.raises(bayesmix.DataError, match="'new'.*'b'"):
        post.linpred(new)


def _grouped(seed, n_groups=15, per=12):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.uniform(-1, 1, g.size)
    u = rng.normal(0, 0.4, n_groups)
    mu = np.exp(1.5 + 0.5 * x + u[g])
    return rng, pd.DataFrame({"x": x, "g": [f"g{i}" for i in g]}), mu


@pytest.mark.slow
@pytest.mark.parametrize("family", ["negbinomial", "Gamma"])
def test_negbinomial_and_gamma_sample_with_loo(family):
    rng, data, mu = _grouped(7 if family == "negbinomial" else 8)
    if family == "negbinomial":
        theta = 3.0
        data["y"] = rng.negative_binomial(theta, theta / (theta + mu))
        model = bayesmix.Model("y ~ x + (1 | g)", data, family="negbinomial")
        par, true_par = "phi", theta
    else:
        shape = 4.0
        data["y"] = rng.gamma(shape, mu / shape)
        model = bayesmix.Model("y ~ x + (1 | g)", data, family="Gamma", link="log")
        par, true_par = "shape", shape
    post = _sample(model, chains=2, iter_warmup=400, iter_sampling=400, seed=3,
                   adapt_delta=0.9)
    idata = post.to_arviz()
    ll = idata.log_likelihood["y"].values
    assert ll.shape == (2, 400, len(data)) and np.all(np.isfinite(ll))
    # Stan's log_lik against scipy.stats at every draw: mu from the draws' linear predictor,
    # negative binomial with size phi (p = phi / (phi + mu)), Gamma with scale mu / shape. The
    # draws are read back with 6 significant digits, hence 1e-4 absolute.
    mu = post.epred()
    aux = _flat(post.named_draws().posterior[par])[:, None]
    y = data["y"].to_numpy(float)[None, :]
    ref = (stats.nbinom.logpmf(y, aux, aux / (aux + mu)) if family == "negbinomial"
           else stats.gamma.logpdf(y, aux, scale=mu / aux))
    np.testing.assert_allclose(ll.reshape(-1, len(data)), ref, rtol=0, atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo) and np.isfinite(loo.se)
    assert post.diagnostics().max_rhat < 1.05
    fe = post.fixef()
    assert fe.loc["x", "Q2.5"] < 0.5 < fe.loc["x", "Q97.5"]
    lo, hi = np.quantile(post.named_draws().posterior[par], [0.005, 0.995])
    assert lo < true_par < hi, (par, lo, hi)
    # predictive draws of the right kind and scale
    y = post.predict(seed=1)
    assert np.all(np.isfinite(y)) and np.all(y >= 0)
    if family == "negbinomial":
        assert np.all(y == np.round(y))
    else:
        assert np.all(y > 0)
    e = post.epred()
    assert np.all(e > 0)
    assert y.mean() == pytest.approx(e.mean(), rel=0.05)
