"""Posterior predictions of NUTS fits (linpred, epred, predict, intervals, new
levels) against the draws themselves and lme4-style REML predictions, and LOO
comparison of two fits."""

import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.bayes.compare import compare
from bayesmix.datasets import load
from bayesmix.errors import BayesmixError, DataError

SLOPE = "Reaction ~ Days + (Days | Subject)"
INTERCEPT = "Reaction ~ Days + (1 | Subject)"


def _sample(formula, data, **kw):
    kw = {"chains": 2, "iter_warmup": 300, "iter_sampling": 300, "seed": 7,
          "adapt_delta": 0.95, "show_progress": False, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayesmix.Model(formula, data).sample(**kw)


@lru_cache(maxsize=None)
def slope_post():
    return _sample(SLOPE, load("sleepstudy"))


@lru_cache(maxsize=None)
def joint_slope_post():
    return _sample(SLOPE, load("sleepstudy"), program="generated")


@lru_cache(maxsize=None)
def intercept_post():
    return _sample(INTERCEPT, load("sleepstudy"), seed=3)


def _flat(a):
    a = np.asarray(a)
    return a.reshape((-1,) + a.shape[2:])


@pytest.mark.slow
def test_population_level_is_x_times_b():
    post = slope_post()
    data = load("sleepstudy")
    b = _flat(post.named_draws().posterior["b"])
    X = np.column_stack([np.ones(len(data)), data["Days"].to_numpy(float)])
    for re_form in ("~0", float("nan"), "NA"):
        e = post.epred(re_form=re_form)
        assert e.shape == (post.chains * post.ndraws, len(data))
        np.testing.assert_array_equal(e, b @ X.T)
    # identity link: epred == linpred
    np.testing.assert_array_equal(post.linpred(), post.epred())


@pytest.mark.slow
def test_all_effects_match_stan_variables_and_y_rep():
    post = joint_slope_post()  # the joint program has b_Intercept, r_1 ... as Stan variables
    cf = post.cmdstan_fit
    sd = post.stan_data
    # the linear predictor rebuilt independently from Stan's own variables and data
    b0 = cf.stan_variable("b_Intercept")
    b = cf.stan_variable("b").reshape(len(b0), -1)
    r = cf.stan_variable("r_1")  # (draws, levels, coefs)
    J = np.asarray(sd["J_1"]) - 1
    mu = b0[:, None] + b @ np.asarray(sd["X"])[:, 1:].T
    mu += r[:, J, 0] * np.asarray(sd["Z_1_1"]) + r[:, J, 1] * np.asarray(sd["Z_1_2"])
    e = post.epred()
    np.testing.assert_allclose(e, mu, rtol=1e-10, atol=1e-8)
    # Stan's y_rep scatter around it with the residual sd: their mean difference is ~0
    y_rep = cf.stan_variable("y_rep")
    sigma = float(post.named_draws().posterior["sigma"].mean())
    diff = (y_rep - e).mean()
    assert abs(diff) < 4 * sigma / np.sqrt(y_rep.size)


@pytest.mark.slow
def test_epred_near_reml_predictions():
    post = slope_post()
    data = load("sleepstudy")
    ml = bayesmix.lmer(SLOPE, data)
    e = post.epred()
    z = (e.mean(axis=0) - ml.predict()) / e.std(axis=0)
    assert np.abs(z).max() < 1.0, np.abs(z).max()
    z0 = (post.epred(re_form="~0").mean(axis=0) - ml.predict(re_form="~0")) / \
        post.epred(re_form="~0").std(axis=0)
    assert np.abs(z0).max() < 1.0
    # new data with known levels: the same as the training rows
    np.testing.assert_array_equal(post.epred(data.iloc[:7]), e[:, :7])
    np.testing.assert_array_equal(post.epred(data.iloc[:7], re_form="~(Days | Subject)"),
                                  e[:, :7])


@pytest.mark.slow
def test_summary_and_intervals():
    post = slope_post()
    data = load("sleepstudy")
    s = post.epred(summary=True)
    assert list(s.columns) == ["Estimate", "Est.Error", "Q2.5", "Q97.5"]
    assert s.index.equals(data.index)
    e = post.epred()
    np.testing.assert_allclose(s["Estimate"], e.mean(axis=0))
    pi = post.predictive_interval(0.9, seed=2)
    assert list(pi.columns) == ["5%", "95%"]
    y = data["Reaction"].to_numpy()
    cover = np.mean((y >= pi["5%"]) & (y <= pi["95%"]))
    assert 0.8 < cover <= 1.0, cover
    s50 = post.predict(summary=True, probs=(0.25, 0.5, 0.75), seed=2)
    assert list(s50.columns) == ["Estimate", "Est.Error", "Q25", "Q50", "Q75"]


@pytest.mark.slow
def test_predict_adds_residual_noise():
    post = slope_post()
    e = post.epred()
    y1 = post.predict(seed=5)
    np.testing.assert_array_equal(y1, post.predict(seed=5))  # seeded
    assert not np.array_equal(y1, post.predict(seed=6))
    sigma2 = float((post.named_draws().posterior["sigma"] ** 2).mean())
    ratio = y1.var(axis=0).mean() / (e.var(axis=0).mean() + sigma2)
    assert ratio == pytest.approx(1, abs=0.05), ratio
    assert abs((y1 - e).mean()) < 4 * np.sqrt(sigma2 / y1.size)


@pytest.mark.slow
def test_new_levels():
    post = slope_post()
    new = pd.DataFrame({"Days": [0.0, 0.0, 5.0, 0.0], "Subject": ["n1", "n1", "n1", "n2"]})
    with pytest.raises(DataError, match="'n1', 'n2'.*Subject.*allow_new_levels"):
        post.epred(new)
    pop = post.epred(new, re_form="~0")  # no group-level terms: no level check
    # zero effects: the population-level prediction
    np.testing.assert_array_equal(
        post.epred(new, allow_new_levels=True, sample_new_levels=None), pop)
    g = post.epred(new, allow_new_levels=True, sample_new_levels="gaussian", seed=1)
    # one draw per new level, shared by its rows; another level gets its own
    np.testing.assert_array_equal(g[:, 0], g[:, 1])
    assert not np.array_equal(g[:, 0], g[:, 3])
    np.testing.assert_array_equal(
        g, post.epred(new, allow_new_levels=True, sample_new_levels="gaussian", seed=1))
    # the new subject's uncertainty includes the between-subject sd (about 25 ms at day 0)
    assert np.all(g.std(axis=0) > 2 * pop.std(axis=0))
    sd0 = float(post.named_draws().posterior["sd_Subject"][..., 0].mean())
    assert g[:, 0].std() == pytest.approx(np.sqrt(sd0 ** 2 + pop[:, 0].var()), rel=0.25)
    assert abs(g[:, 0].mean() - pop[:, 0].mean()) < 4 * g[:, 0].std() / np.sqrt(len(g))
    u = post.epred(new, allow_new_levels=True, sample_new_levels="uncertainty", seed=1)
    assert np.all(u.std(axis=0) > pop.std(axis=0))
    # old_levels: each new level borrows every draw of one training subject
    o = post.epred(new, allow_new_levels=True, sample_new_levels="old_levels", seed=1)
    subjects = load("sleepstudy")["Subject"].unique()
    day0 = post.epred(pd.DataFrame({"Days": 0.0, "Subject": subjects}))
    assert any(np.array_equal(o[:, 0], day0[:, j]) for j in range(len(subjects)))
    np.testing.assert_array_equal(o[:, 0], o[:, 1])
    with pytest.raises(BayesmixError, match="sample_new_levels"):
        post.epred(new, allow_new_levels=True, sample_new_levels="bogus")
    # ndraws thins evenly
    assert post.epred(new, re_form="~0", ndraws=50).shape == (50, 4)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_compare_by_loo():
    a, b = slope_post(), intercept_post()
    table = compare(slope=a, intercept=b)
    assert set(table.index) == {"slope", "intercept"}
    assert np.all(np.isfinite(table["elpd_loo"]))
    assert table.index[0] == "slope"  # random slopes clearly win on sleepstudy
    plain = compare(a, b)
    assert set(plain.index) == {"m1", "m2"}
    small = _sample(INTERCEPT, load("sleepstudy").iloc[:170], iter_warmup=100,
                    iter_sampling=100)
    with pytest.raises(BayesmixError, match="different numbers of observations"):
        compare(a, small)
    with pytest.raises(BayesmixError, match="at least two"):
        compare(a)
