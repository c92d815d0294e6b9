"""Exact prior draws (bayesmix.bayes.priordraws) against scipy's distributions: the
declared priors' quantiles, the LKJ marginal of a correlation, the half-distributions of
sds, and the restored intercept. Numpy only: nothing compiles or samples here."""

import numpy as np
import pytest
from scipy import stats

from bayesmix.bayes.priordraws import lkj_cholesky, prior_named_draws
from bayesmix.datasets import load
from bayesmix.design import build_design
from bayesmix.errors import BayesmixError
from bayesmix.priors import default_scales, prior

SLEEP = "Reaction ~ Days + (Days | Subject)"
PROBS = np.array([0.1, 0.25, 0.5, 0.75, 0.9])


@pytest.fixture(scope="module")
def sleep():
    return build_design(SLEEP, load("sleepstudy"))


def test_default_priors_have_the_declared_quantiles(sleep):
    nd = prior_named_draws(sleep, chains=4, ndraws=10_000, seed=1)
    post = nd.posterior
    sc = default_scales(sleep)
    assert post["b"].shape == (4, 10_000, 2) and post["r_Subject"].shape == (4, 10_000, 18, 2)
    # Days ~ normal(0, b_scale); sigma and each sd ~ student_t(3, 0, scale) restricted to > 0
    days = post["b"][..., 1].reshape(-1)
    np.testing.assert_allclose(np.quantile(days, PROBS),
                               stats.norm.ppf(PROBS, 0, sc.b_scale[0]), atol=0.03 * sc.b_scale[0])
    half_t = stats.t.ppf(0.5 + PROBS / 2, 3) * sc.sigma_scale
    for draws in (post["sigma"], post["sd_Subject"][..., 0], post["sd_Subject"][..., 1]):
        np.testing.assert_allclose(np.quantile(draws, PROBS), half_t, rtol=0.05)
    # LKJ(1) for a 2 x 2 correlation: uniform on (-1, 1)
    cor = post["cor_Subject"].reshape(-1)
    assert stats.kstest(cor, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    # the intercept's prior is at the mean of X: b_Intercept + mean(Days) * Days ~ student_t
    icpt = post["b"][..., 0].reshape(-1) + np.mean(sleep.X[:, 1]) * days
    t = stats.t(3, sc.intercept_loc, sc.intercept_scale)
    assert stats.kstest(icpt, t.cdf).pvalue > 1e-3
    # group-level effects: normal(0, sd) given the sd, correlated by the drawn matrix
    r = post["r_Subject"][..., 0].reshape(-1, 18) / post["sd_Subject"][..., 0].reshape(-1, 1)
    assert stats.kstest(r[:, 3], stats.norm.cdf).pvalue > 1e-3


def test_user_priors_and_a_flat_prior(sleep):
    nd = prior_named_draws(sleep, [prior("normal(5, 2)", cls="b", coef="Days"),
                                   prior("exponential(0.5)", cls="sd", group="Subject")],
                           chains=2, ndraws=10_000, seed=2)
    days = nd.posterior["b"][..., 1].reshape(-1)
    assert stats.kstest(days, stats.norm(5, 2).cdf).pvalue > 1e-3
    sd = nd.posterior["sd_Subject"].reshape(-1)
    assert stats.kstest(sd, stats.expon(scale=2).cdf).pvalue > 1e-3
    with pytest.raises(BayesmixError, match="flat"):
        prior_named_draws(sleep, [prior("flat", cls="b", coef="Days")], 1, 10)


@pytest.mark.parametrize("eta", [1.0, 2.5])
def test_lkj_marginal_of_a_correlation(eta):
    # LKJ(eta) in K dimensions: each correlation is 2 Beta(b, b) - 1, b = eta - 1 + K / 2
    K = 4
    L = lkj_cholesky(eta, K, 20_000, np.random.default_rng(3))
    C = L @ np.swapaxes(L, 1, 2)
    np.testing.assert_allclose(np.diagonal(C, axis1=1, axis2=2), 1.0, atol=1e-12)
    b = eta - 1 + K / 2
    for i, j in [(1, 0), (3, 0), (3, 2)]:
        assert stats.kstest((C[:, i, j] + 1) / 2, stats.beta(b, b).cdf).pvalue > 1e-3, (i, j)


def test_sample_with_prior_draws_fills_the_prior_group():
    import warnings

    import bayesmix
    m = bayesmix.Model(SLEEP, load("sleepstudy"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short chains
        post = m.sample(chains=2, iter_warmup=200, iter_sampling=200, seed=3,
                        show_progress=False, prior_draws=True)
    idata = post.to_arviz()
    assert "prior" in idata.groups() and "prior" not in post.to_arviz(prior=False).groups()
    assert list(idata.prior.data_vars) == list(idata.posterior.data_vars)
    assert idata.prior["Days|Subject"].shape == (2, 200, 18)
    assert idata.prior_predictive["Reaction"].shape == (2, 200, 180)
    # the prior draws are the numpy prior's (seeded from the run's seed), not the posterior
    nd = post.prior_draws()
    np.testing.assert_array_equal(idata.prior["sd(Days|Subject)"].values,
                                  nd.posterior["sd_Subject"][..., 1])
    assert idata.prior["Days"].std() > 10 * idata.posterior["Days"].std()


def test_readable_names_survive_netcdf(tmp_path):
    # "/" is not allowed in netCDF names: I(Days/7) is written with U+2215
    import arviz as az

    from bayesmix.bayes.idata import readable_draws
    d = build_design("Reaction ~ I(Days/7) + (I(Days/7) | Subject)", load("sleepstudy"))
    rd = readable_draws(d, prior_named_draws(d, chains=1, ndraws=5, seed=1))
    assert list(rd.variables)[:3] == ["Intercept", "I(Days \u2215 7)", "sd(1|Subject)"]
    assert "I(Days \u2215 7)|Subject" in rd.variables  # formulaic spaces the column
    idata = az.from_dict(prior=rd.variables, coords=rd.coords, dims=rd.dims)
    idata.to_netcdf(str(tmp_path / "prior.nc"))
    back = az.from_netcdf(str(tmp_path / "prior.nc"))
    assert list(back.prior.data_vars) == list(rd.variables)


def test_prior_predictive_is_the_model_at_each_prior_draw(sleep):
    from bayesmix.bayes.priordraws import prior_predictive
    nd = prior_named_draws(sleep, chains=2, ndraws=500, seed=4)
    y = prior_predictive(sleep, nd, seed=5)
    assert y.shape == (2, 500, 180) and np.isfinite(y).all()
    # the mean built here from the data frame, not from the design's Z: Subject's intercept
    # and Days slope added to the population line
    df = load("sleepstudy")
    subj = df["Subject"].cat.codes.to_numpy()
    days = df["Days"].to_numpy(float)
    b = nd.posterior["b"].reshape(-1, 2)
    r = nd.posterior["r_Subject"].reshape(-1, 18, 2)
    mu = b[:, [0]] + b[:, [1]] * days + r[:, subj, 0] + r[:, subj, 1] * days
    z = (y.reshape(-1, 180) - mu) / nd.posterior["sigma"].reshape(-1, 1)
    assert stats.kstest(z.reshape(-1)[::7], stats.norm.cdf).pvalue > 1e-3


def test_prior_predictive_counts():
    from bayesmix.bayes.priordraws import prior_predictive
    cbpp = load("cbpp")
    d = build_design("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                     family="binomial")
    y = prior_predictive(d, prior_named_draws(d, chains=1, ndraws=400, seed=6), seed=7)
    size = cbpp["size"].to_numpy()
    assert np.isfinite(y).all() and (y == np.round(y)).all()
    assert (y >= 0).all() and (y <= size).all() and (y == size).any() and (y == 0).any()


def test_prior_predictive_gamma_quietly_leaves_impossible_means_out():
    import warnings

    import pandas as pd

    from bayesmix.bayes.priordraws import prior_predictive
    from bayesmix.families import get_family
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x": rng.normal(size=60), "g": np.repeat(list("abcdef"), 10),
                       "y": rng.gamma(2.0, 1.0, 60)})
    d = build_design("y ~ x + (1 | g)", df, family=get_family("Gamma", "inverse"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from numpy
        y = prior_predictive(d, prior_named_draws(d, chains=1, ndraws=300, seed=2), seed=3)
    # under the inverse link a prior draw can give a negative mean: NaN there, as Stan rejects
    nd = prior_named_draws(d, chains=1, ndraws=300, seed=2)
    eta = nd.posterior["b"].reshape(-1, 2) @ np.column_stack([np.ones(60), df.x]).T \
        + nd.posterior["r_g"].reshape(-1, 6)[:, np.repeat(np.arange(6), 10)]
    nan, bad_mean = np.isnan(y.reshape(-1, 60)), ~(1 / eta > 0)
    assert nan[bad_mean].all() and bad_mean.any()
    # otherwise only where gamma(0.01, 0.01) drew a shape so small the scale overflows
    shape = nd.posterior["shape"].reshape(-1)
    assert (shape[(nan & ~bad_mean).any(axis=1)] < 1e-100).all()
    assert (y[np.isfinite(y)] >= 0).all()  # tiny shapes put the draws at 0 (underflow)
