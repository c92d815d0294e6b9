"""The marginal program of gaussian mixed models (bayesmix.bayes.marginal, stan/lmm_marginal.stan):
exact marginal likelihood, priors identical to the joint program's, exact random-effect draws,
agreement with the joint program's posterior."""

import warnings
from functools import lru_cache

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix
from bayesmix.bayes import marginal
from bayesmix.bayes.marginal import (MarginalPosteriorFit, choose_program, marginal_code,
                                     marginal_layout, marginal_log_density, marginal_loglik,
                                     marginal_stan_data, relative_factors)
from bayesmix.datasets import load
from bayesmix.design import build_design
from bayesmix.lmm import factors_to_theta, lambda_matrix, random_design
from bayesmix.stancode import joint_stan_data

SLEEP = "Reaction ~ Days + (Days | Subject)"
NESTED = "extro ~ open + agree + social + (1 | school/class)"


def _synthetic(seed=0, n=240):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"g": rng.integers(0, 12, n).astype(str), "h": rng.integers(0, 5, n)
                       .astype(str), "x": rng.normal(size=n), "w": rng.normal(size=n)})
    df["y"] = 3 + df.x + rng.normal(size=n) * 2 + 100
    return df


CASES = [
    (SLEEP, lambda: load("sleepstudy")),
    (NESTED, lambda: load("lmmdata")),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", lambda: load("Penicillin")),
    ("y ~ x + (x + w | g) + (1 | h)", _synthetic),       # a 3 x 3 correlation, crossed
    ("y ~ x + (x || g)", _synthetic),                   # uncorrelated split terms
    ("y ~ 0 + x + (1 | g)", _synthetic),                # no intercept (y not centred)
]


def _random_point(design, rng):
    lay = marginal_layout(design)
    P = lay.X_s.shape[1]
    n_sd = sum(t.p for t in lay.terms)
    n_cpc = sum(t.p * (t.p - 1) // 2 for j, t in enumerate(lay.terms) if lay.correlated(j))
    beta = rng.normal(size=P) * 2
    if lay.intercept:
        beta[0] += np.mean(lay.y_s)
    return beta, rng.uniform(0.2, 20, n_sd), rng.normal(size=n_cpc), float(rng.uniform(0.5, 20))


@pytest.mark.parametrize("formula,data", CASES)
def test_marginal_loglik_equals_dense_mvn(formula, data):
    d = build_design(formula, data())
    lay = marginal_layout(d)
    rng = np.random.default_rng(42)
    Z = random_design(lay.terms).toarray()
    for _ in range(4):
        beta, sd, cpc, sigma = _random_point(d, rng)
        theta = factors_to_theta(relative_factors(lay, sd, cpc, sigma))
        ZL = Z @ lambda_matrix(theta, lay.terms).toarray()
        cov = sigma ** 2 * (ZL @ ZL.T + np.eye(d.n))
        ref = stats.multivariate_normal.logpdf(lay.y_s, lay.X_s @ beta, cov)
        assert marginal_loglik(d, beta, sd, cpc, sigma) == pytest.approx(ref, rel=1e-8)


def test_relative_factor_gives_the_joint_covariance():
    # T T' sigma^2 = diag(sd) Cor diag(sd): the joint program's covariance of r
    d = build_design("y ~ x + (x + w | g)", _synthetic())
    lay = marginal_layout(d)
    sd, cpc, sigma = np.array([1.5, 0.3, 2.0]), np.array([0.4, -1.0, 0.7]), 1.7
    T = relative_factors(lay, sd, cpc, sigma)[0]
    Sigma = sigma ** 2 * T @ T.T
    cor = Sigma / np.outer(np.sqrt(np.diag(Sigma)), np.sqrt(np.diag(Sigma)))
    np.testing.assert_allclose(np.sqrt(np.diag(Sigma)), sd, rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(cor) > 0)


@lru_cache(maxsize=None)
def _model():
    from bayesmix.engine import compile_model
    return compile_model(marginal_code(), "lmm_marginal")


USER_PRIORS = [
    bayesmix.prior("cauchy(0, 5)", cls="b"),
    bayesmix.prior("normal(250, 30)", cls="Intercept"),
    bayesmix.prior("exponential(0.1)", cls="sd", coef="Days"),
    bayesmix.prior("lognormal(3, 1)", cls="sd", coef="(Intercept)"),
    bayesmix.prior("gamma(2, 0.1)", cls="sigma"),
    bayesmix.prior("lkj(2)", cls="cor"),
]


@pytest.mark.parametrize("formula,data,priors", [c + ((),) for c in CASES]
                         + [(SLEEP, lambda: load("sleepstudy"), tuple(USER_PRIORS))])
def test_stan_target_equals_numpy_mirror(formula, data, priors):
    """Stan's lp__ (optimizer, jacobian=False, a few iterations from random inits) equals the
    numpy mirror (dense likelihood + priors + LKJ) at the point the optimizer reports."""
    d = build_design(formula, data())
    sd_data = marginal_stan_data(d, priors)
    run = _model().optimize(sd_data, jacobian=False, seed=3, iter=3,
                            accept_line_search_failure=True)
    o = run.optimum()
    lay = marginal_layout(d)
    beta = ([o["Intercept[1]"]] if lay.intercept else []) + [
        o[f"b[{i}]"] for i in range(1, sd_data["P"] + 1 - lay.intercept)]
    sd = np.array([o[f"sd_all[{i}]"] for i in range(1, sd_data["n_sd"] + 1)])
    cpc = np.array([o[f"cpc_raw[{i}]"] for i in range(1, sd_data["n_cpc"] + 1)])
    lp = marginal_log_density(d, sd_data, np.array(beta), sd, cpc, o["sigma"])
    assert o["lp__"] == pytest.approx(lp, rel=1e-8)


def test_default_priors_are_the_joint_programs():
    d = build_design(SLEEP, load("sleepstudy"))
    j = joint_stan_data(d)
    m = marginal_stan_data(d)
    codes, args = m["prior_dist"], m["prior_args"]
    assert codes == [2, 1, 2, 2, 2]  # Intercept t, b normal, sd t, sd t, sigma t
    assert args[0] == [3.0, j["prior_Intercept_loc"], j["prior_Intercept_scale"]]
    assert args[1][:2] == [0.0, float(j["prior_b_scale"][0])]
    assert args[2] == [3.0, 0.0, j["prior_sd_scale"]] == args[3]
    assert args[4] == [3.0, 0.0, j["prior_sigma_scale"]]
    assert m["lkj_eta"] == [1.0]
    pm = marginal_stan_data(d, USER_PRIORS)
    assert pm["prior_dist"] == [1, 3, 10, 7, 8] and pm["lkj_eta"] == [2.0]


def test_program_choice():
    sleep = load("sleepstudy")
    g = build_design(SLEEP, sleep)
    assert choose_program(g) == ("marginal", None)
    assert choose_program(g, program="joint") == ("joint", None)
    which, why = choose_program(g, centered=True)
    assert which == "joint" and why.code == marginal.CENTERED and not why.slower_only
    sleep = sleep.assign(hi=(sleep.Reaction > 300).astype(int))
    b = build_design("hi ~ Days + (1 | Subject)", sleep, family=bayesmix.families.get_family(
        "binomial"))
    assert choose_program(b)[0] == "joint"
    with pytest.raises(bayesmix.errors.BayesmixError, match="marginal"):
        choose_program(b, program="marginal")
    # many crossed levels: the dense block is too large, "auto" falls back
    n = 3000
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"y": rng.normal(size=n), "a": rng.integers(0, 1500, n).astype(str),
                       "b": rng.integers(0, 1200, n).astype(str)})
    big = build_design("y ~ 1 + (1 | a) + (1 | b)", df)
    which, why = choose_program(big)
    assert which == "joint" and why.code == marginal.DENSE_BLOCK and "Q2" in str(why)
    # many levels of one term only: no dense block, and the exact draws are blocked per level
    one = build_design("y ~ 1 + (1 | a)", df.assign(a=(np.arange(n) % 2500).astype(str)))
    assert choose_program(one) == ("marginal", None)
    code = bayesmix.Model(SLEEP, load("sleepstudy")).stan_code("marginal")
    assert "lmm_reduce" in code and "Formula: " + SLEEP in code


# ---------------------------------------------------------------- posterior agreement


def _sample(formula, data, program, **kw):
    kw = {"chains": 4, "iter_warmup": 400, "iter_sampling": 400, "seed": 11,
          "show_progress": False, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bayesmix.Model(formula, data).sample(program=program, **kw)


def _compare(marg, joint, names):
    assert isinstance(marg, MarginalPosteriorFit) and not isinstance(joint,
                                                                     MarginalPosteriorFit)
    im, ij = marg.to_arviz(), joint.to_arviz()
    assert int(im.sample_stats["diverging"].sum()) == 0
    for name in names:
        a, b = im.posterior[name], ij.posterior[name]
        # 4 x 400 draws: R-hat's own sampling noise is a few thousandths here, so the bar is
        # 1.02 (1.01 is the target for runs of 1,000+ draws per chain)
        assert float(az.rhat(im, var_names=[name])[name].max()) < 1.02, name
        ma = az.mcse(im, var_names=[name])[name]
        mb = az.mcse(ij, var_names=[name])[name]
        diff = np.abs(a.mean(("chain", "draw")) - b.mean(("chain", "draw")))
        bound = 4 * np.sqrt(ma ** 2 + mb ** 2)
        assert bool((diff < bound).all()), (name, diff.values, bound.values)
        ratio = a.std(("chain", "draw")) / b.std(("chain", "draw"))
        assert bool(((ratio > 0.8) & (ratio < 1.25)).all()), (name, ratio.values)
    # same InferenceData layout as the joint program
    for grp in ("posterior", "log_likelihood", "posterior_predictive", "observed_data"):
        assert set(im[grp].data_vars) == set(ij[grp].data_vars), grp


@pytest.mark.slow
def test_sleepstudy_marginal_agrees_with_joint():
    sleep = load("sleepstudy")
    marg = _sample(SLEEP, sleep, "marginal")
    joint = _sample(SLEEP, sleep, "joint", adapt_delta=0.95)
    _compare(marg, joint, ["Intercept", "Days", "sd(1|Subject)", "sd(Days|Subject)",
                           "cor(1,Days|Subject)", "sigma", "1|Subject", "Days|Subject"])
    # the random effects are seeded from the run: rebuilding the fit gives the same draws
    again = MarginalPosteriorFit(marg.design, marg.priors, marg.run, marg.program,
                                 marg.stan_data)
    np.testing.assert_array_equal(again.draws("r_1"), marg.draws("r_1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(az.loo(marg.to_arviz()).elpd_loo)


@pytest.mark.slow
def test_lmmdata_nested_marginal_agrees_with_joint():
    data = load("lmmdata")
    marg = _sample(NESTED, data, "marginal")
    joint = _sample(NESTED, data, "joint", centered=True, metric="dense_e")
    _compare(marg, joint, ["Intercept", "open", "agree", "social", "sd(1|school)",
                           "sd(1|class:school)", "sigma", "1|school"])


@pytest.mark.slow
def test_penicillin_crossed_marginal_agrees_with_joint():
    data = load("Penicillin")
    formula = "diameter ~ 1 + (1 | plate) + (1 | sample)"
    marg = _sample(formula, data, "marginal")
    joint = _sample(formula, data, "joint", adapt_delta=0.95)
    _compare(marg, joint, ["Intercept", "sd(1|plate)", "sd(1|sample)", "sigma", "1|sample"])
