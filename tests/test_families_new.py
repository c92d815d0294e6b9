"""The families planned for issue #17 (student, lognormal, beta, beta_binomial, cumulative,
zero-inflated and hurdle counts) against independent references.

* log densities: scipy.stats (t, lognorm, beta, betabinom, poisson, nbinom) or closed forms
  written here from scipy's distribution functions (cumulative: differences of logistic /
  normal CDFs; zero-inflated: mixtures of scipy pmfs; hurdle: the scipy pmf renormalised by
  scipy's P(y > 0)), at several parameter values, including parameters that vary by row.
* normalisation: pmfs summed over a range whose tail is below 1e-12, pdfs integrated with
  scipy.integrate.quad (tolerance 1e-7).
* draws: 200 000 seeded draws per parameter set; sample mean within 4 standard errors of the
  mean computed independently (scipy's .stats() or sums over the pmf), sample variance within
  4 standard errors of the variance (SE from the sample's fourth central moment); category and
  zero frequencies within 4 binomial standard errors.
* brms's links of the distributional parameters: tests/reference/families/brms_priors.json
  (brms 2.18's family objects, written by R).
* the planned families are refused for fitting, with a message naming them and the choices.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

import bayesmix as bm
from bayesmix.errors import FamilyError
from bayesmix.families import (ALL_FAMILIES, FAMILIES, EXTENDED_FAMILIES, SUPPORTS, DPar,
                               Family, dpar_linkinv, families_for, get_family)

ROOT = Path(__file__).resolve().parents[1]
N_DRAWS = 200_000


def fam(name, link=None):
    return get_family(name, link, fittable=False)


# ---------------------------------------------------------------- references


def ref_cumulative(y, eta, cut, disc, link):
    """log P(y = k) = log(F(b) - F(a)), b = disc (c_k - eta), a = disc (c_{k-1} - eta): scipy's
    cdf differences, or its survival functions' S(a) - S(b) when a > 0 (no cancellation)."""
    dist = stats.logistic if link == "logit" else stats.norm
    cut = np.broadcast_to(np.asarray(cut, float), (len(y), np.shape(cut)[-1]))
    ext = np.column_stack([np.full(len(y), -np.inf), cut, np.full(len(y), np.inf)])
    k = np.asarray(y, int)
    rows = np.arange(len(y))
    b, a = disc * (ext[rows, k] - eta), disc * (ext[rows, k - 1] - eta)
    return np.log(np.where(a > 0, dist.sf(a) - dist.sf(b), dist.cdf(b) - dist.cdf(a)))


def nb_pmf(y, mu, shape):
    return stats.nbinom.pmf(y, shape, shape / (shape + mu))


def ref_zero_inflated(y, mu, zi, shape=None):
    f = stats.poisson.pmf(y, mu) if shape is None else nb_pmf(y, mu, shape)
    with np.errstate(divide="ignore"):
        return np.log(zi * (y == 0) + (1 - zi) * f)


def ref_hurdle(y, mu, hu, shape=None):
    if shape is None:
        logf, pos = stats.poisson.logpmf(y, mu), stats.poisson.sf(0, mu)
    else:
        p = shape / (shape + mu)
        logf, pos = stats.nbinom.logpmf(y, shape, p), stats.nbinom.sf(0, shape, p)
    return np.where(y == 0, np.log(hu), np.log1p(-hu) + logf - np.log(pos))


# ---------------------------------------------------------------- log densities vs scipy


def test_student_matches_scipy():
    y = np.array([-3.0, -0.2, 0.0, 1.7, 12.0])
    mu = np.array([0.0, 0.5, -1.0, 1.7, 2.0])
    sigma = np.array([1.0, 0.3, 2.5, 1.0, 4.0])     # by row
    nu = np.array([1.2, 3.0, 7.5, 30.0, 2.0])
    got = fam("student").log_density(y, mu, sigma=sigma, nu=nu)
    np.testing.assert_allclose(got, stats.t.logpdf(y, nu, mu, sigma), rtol=1e-12)
    # scalar parameters broadcast
    got = fam("t").log_density(y, mu, sigma=1.3, nu=4.0)
    np.testing.assert_allclose(got, stats.t.logpdf(y, 4.0, mu, 1.3), rtol=1e-12)
    # large nu: the normal
    np.testing.assert_allclose(fam("student").log_density(y, mu, sigma=sigma, nu=1e9),
                               stats.norm.logpdf(y, mu, sigma), rtol=1e-7)


def test_lognormal_matches_scipy():
    y = np.array([0.01, 0.5, 1.0, 3.0, 40.0])
    mu = np.array([-1.0, 0.0, 0.2, 1.0, 3.0])       # mean of log y
    sigma = np.array([0.3, 1.0, 2.0, 0.7, 0.5])
    got = fam("lognormal").log_density(y, mu, sigma=sigma)
    np.testing.assert_allclose(got, stats.lognorm.logpdf(y, sigma, scale=np.exp(mu)), rtol=1e-12)
    np.testing.assert_allclose(fam("lognormal").log_density(y, mu, phi=0.8),  # phi: the one
                               stats.lognorm.logpdf(y, 0.8, scale=np.exp(mu)), rtol=1e-12)
    assert np.all(fam("lognormal").log_density([0.0, -1.0], 0.0, sigma=1.0) == -np.inf)


def test_beta_matches_scipy():
    y = np.array([0.001, 0.2, 0.5, 0.77, 0.999])
    mu = np.array([0.1, 0.3, 0.5, 0.8, 0.95])
    phi = np.array([0.8, 5.0, 20.0, 2.0, 150.0])
    got = fam("beta").log_density(y, mu, phi=phi)
    np.testing.assert_allclose(got, stats.beta.logpdf(y, mu * phi, (1 - mu) * phi), rtol=1e-11)
    got = fam("beta", "probit").log_density(y, mu, phi=3.0)   # the link does not enter
    np.testing.assert_allclose(got, stats.beta.logpdf(y, mu * 3.0, (1 - mu) * 3.0), rtol=1e-11)
    assert np.all(fam("beta").log_density([0.0, 1.0, 1.5], 0.5, phi=2.0) == -np.inf)


def test_beta_binomial_matches_scipy():
    y = np.array([0.0, 3.0, 7.0, 10.0, 20.0])
    trials = np.array([4.0, 10.0, 7.0, 12.0, 20.0])
    mu = np.array([0.05, 0.3, 0.66, 0.9, 0.5])
    phi = np.array([0.5, 3.0, 40.0, 8.0, 1.0])
    got = fam("beta_binomial").log_density(y, mu, trials, phi=phi)
    ref = stats.betabinom.logpmf(y, trials, mu * phi, (1 - mu) * phi)
    np.testing.assert_allclose(got, ref, rtol=1e-11)
    out = fam("betabinomial").log_density([-1.0, 5.0, 2.5], 0.4, 4.0, phi=2.0)
    assert np.all(out == -np.inf)


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_cumulative_matches_the_cdf_differences(link):
    y = np.array([1, 2, 3, 4, 5, 3, 1, 5])
    eta = np.array([-1.5, 0.0, 0.4, 2.0, 3.0, -0.7, 1.2, -2.0])
    cut = np.array([-1.0, 0.0, 0.8, 2.2])           # K = 5
    got = fam("cumulative", link).log_density(y, eta, cutpoints=cut)
    np.testing.assert_allclose(got, ref_cumulative(y, eta, cut, 1.0, link), rtol=1e-10)
    # cutpoints and disc varying by row
    rows = cut + np.linspace(-0.5, 0.5, len(y))[:, None] * np.array([1.0, 0.5, 1.5, 2.0])
    disc = np.linspace(0.5, 2.0, len(y))
    got = fam("ordinal", link).log_density(y, eta, cutpoints=rows, disc=disc)
    np.testing.assert_allclose(got, ref_cumulative(y, eta, rows, disc, link), rtol=1e-10)


def test_cumulative_logit_is_stans_ordered_logistic_and_stable_in_the_tails():
    # P(y <= k) = inv_logit(c_k - eta): P(y = 1) at eta = 0, c_1 = -1 is 1 / (1 + e)
    lp = fam("cumulative").log_density([1], [0.0], cutpoints=[-1.0, 1.0])
    np.testing.assert_allclose(lp, -np.log1p(np.e), rtol=1e-14)
    # far in the tails the naive differences lose every digit; closed forms:
    # eta = 40, cutpoints (-1, 0): P(y = 2) = e^-40 / (1 + e^-40) - e^-41 / (1 + e^-41)
    p2 = special.expit(-40.0) - special.expit(-41.0)  # exact to double here (no cancellation
    lp = fam("cumulative").log_density([2], [40.0], cutpoints=[-1.0, 0.0])  # of leading digits)
    np.testing.assert_allclose(lp, np.log(p2), rtol=1e-12)
    # eta = -40: P(y = 2) = P(latent > 0) - ... mirrored: 1 - F(-1 + 40) - (1 - F(0 + 40))
    lp = fam("cumulative").log_density([2], [-40.0], cutpoints=[-1.0, 0.0, 1.0])
    np.testing.assert_allclose(lp, np.log(special.expit(-39.0) - special.expit(-40.0)),
                               rtol=1e-12)
    # probit, outer categories: scipy's log cdf / log sf
    lp = fam("cumulative", "probit").log_density([1, 3], [40.0, -40.0], cutpoints=[-1.0, 0.5])
    np.testing.assert_allclose(lp, [stats.norm.logcdf(-41.0), stats.norm.logsf(40.5)],
                               rtol=1e-10)


def test_cumulative_rejects_bad_input():
    lp = fam("cumulative").log_density([0, 4, 2.5], 0.0, cutpoints=[-1.0, 1.0])
    assert np.all(lp == -np.inf)
    with pytest.raises(FamilyError, match="strictly increasing"):
        fam("cumulative").log_density([1], 0.0, cutpoints=[1.0, 0.5])
    with pytest.raises(FamilyError, match="needs its cutpoints"):
        fam("cumulative").log_density([1], 0.0)


@pytest.mark.parametrize("negbin", [False, True])
def test_zero_inflated_matches_the_mixture(negbin):
    y = np.array([0.0, 0.0, 1.0, 4.0, 25.0, 0.0])
    mu = np.array([0.3, 5.0, 1.0, 6.5, 20.0, 2.0])
    zi = np.array([0.0, 0.2, 0.5, 0.05, 0.9, 0.999])
    shape = np.array([0.7, 2.0, 10.0, 1.0, 3.0, 50.0]) if negbin else None
    name = "zero_inflated_negbinomial" if negbin else "zero_inflated_poisson"
    kw = {"zi": zi} | ({"shape": shape} if negbin else {})
    got = fam(name).log_density(y, mu, **kw)
    np.testing.assert_allclose(got, ref_zero_inflated(y, mu, zi, shape), rtol=1e-11)
    # zi = 0: the count distribution itself
    base = fam(name).log_density(y, mu, **(kw | {"zi": 0.0}))
    ref = stats.poisson.logpmf(y, mu) if not negbin else np.log(nb_pmf(y, mu, shape))
    np.testing.assert_allclose(base, ref, rtol=1e-11)


@pytest.mark.parametrize("negbin", [False, True])
def test_hurdle_matches_the_renormalised_pmf(negbin):
    y = np.array([0.0, 1.0, 1.0, 4.0, 25.0, 2.0])
    mu = np.array([0.3, 0.01, 1.0, 6.5, 20.0, 2.0])
    hu = np.array([0.1, 0.2, 0.5, 0.05, 0.9, 0.999])
    shape = np.array([0.7, 2.0, 10.0, 1.0, 3.0, 50.0]) if negbin else None
    name = "hurdle_negbinomial" if negbin else "hurdle_poisson"
    kw = {"hu": hu} | ({"shape": shape} if negbin else {})
    got = fam(name).log_density(y, mu, **kw)
    np.testing.assert_allclose(got, ref_hurdle(y, mu, hu, shape), rtol=1e-10)
    # zero-truncated Poisson at small mu: P(1 | y > 0) -> 1
    if not negbin:
        lp = fam(name).log_density([1.0], [1e-8], hu=0.0)
        assert abs(lp[0]) < 1e-8


def test_count_families_reject_non_counts():
    for name, kw in [("zip", {"zi": 0.3}), ("hurdle_poisson", {"hu": 0.3}),
                     ("zinb", {"zi": 0.3, "shape": 2.0}),
                     ("hurdle_negbinomial", {"hu": 0.3, "shape": 2.0})]:
        assert np.all(fam(name).log_density([-1.0, 1.5], 2.0, **kw) == -np.inf), name


# ---------------------------------------------------------------- normalisation


DISCRETE_CASES = [
    ("zero_inflated_poisson", 3.5, {"zi": 0.3}),
    ("zero_inflated_poisson", 40.0, {"zi": 0.01}),
    ("zero_inflated_negbinomial", 20.0, {"zi": 0.4, "shape": 0.7}),
    ("hurdle_poisson", 0.05, {"hu": 0.6}),
    ("hurdle_poisson", 12.0, {"hu": 0.2}),
    ("hurdle_negbinomial", 5.0, {"hu": 0.25, "shape": 1.5}),
]


@pytest.mark.parametrize("name,mu,kw", DISCRETE_CASES)
def test_count_pmfs_sum_to_one(name, mu, kw):
    y = np.arange(0.0, 3000.0)
    total = np.exp(fam(name).log_density(y, np.full_like(y, mu), **kw)).sum()
    assert total == pytest.approx(1.0, abs=1e-10)


def test_beta_binomial_and_cumulative_sum_to_one():
    for n, mu, phi in [(1, 0.3, 2.0), (12, 0.8, 0.3), (50, 0.5, 100.0)]:
        y = np.arange(0.0, n + 1)
        p = np.exp(fam("beta_binomial").log_density(y, np.full_like(y, mu), n, phi=phi))
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
    cut = np.array([-2.0, -0.5, 0.3, 3.0])
    for link in ("logit", "probit"):
        for eta, disc in [(-6.0, 1.0), (0.0, 0.4), (1.3, 2.5), (25.0, 1.0)]:
            y = np.arange(1, 6)
            p = np.exp(fam("cumulative", link).log_density(y, np.full(5, eta), cutpoints=cut,
                                                           disc=disc))
            assert p.sum() == pytest.approx(1.0, abs=1e-12), (link, eta)


@pytest.mark.parametrize("name,mu,kw,bounds", [
    ("student", 1.0, {"sigma": 2.0, "nu": 1.5}, (-np.inf, np.inf)),
    ("student", -3.0, {"sigma": 0.2, "nu": 30.0}, (-np.inf, np.inf)),
    ("lognormal", 0.5, {"sigma": 0.8}, (0.0, np.inf)),
    ("lognormal", -2.0, {"sigma": 2.0}, (0.0, np.inf)),
    ("beta", 0.3, {"phi": 8.0}, (0.0, 1.0)),
    ("beta", 0.9, {"phi": 1.5}, (0.0, 1.0)),   # a > 1 > b: integrable pole at 1
])
def test_pdfs_integrate_to_one(name, mu, kw, bounds):
    f = fam(name)

    def pdf(y):
        return float(np.exp(f.log_density(np.array([y]), np.array([mu]), **kw))[0])

    if name == "student" or bounds[1] == np.inf:
        total = integrate.quad(pdf, *bounds, limit=200)[0]
    else:
        total = integrate.quad(pdf, *bounds, limit=200, points=[mu])[0]
    assert total == pytest.approx(1.0, abs=1e-7)


# ---------------------------------------------------------------- moments and draws


def pmf_moments(name, mu, kw, y_max=4000):
    """(E y, Var y) by summing y^k p(y) with scipy's pmfs (not the family's)."""
    y = np.arange(0.0, y_max)[:, None]
    mu = np.asarray(mu, float)
    shape = kw.get("shape")
    if name.startswith("zero_inflated"):
        p = np.exp(ref_zero_inflated(y, mu, kw["zi"], shape))
    else:
        p = np.exp(ref_hurdle(y, mu, kw["hu"], shape))
    mean = (y * p).sum(axis=0)
    return mean, (y ** 2 * p).sum(axis=0) - mean ** 2


def reference_moments(name, link, mu, trials, kw):
    """Independent (E y, Var y) for each column."""
    if name == "student":
        m, v = stats.t.stats(kw["nu"], mu, kw["sigma"], moments="mv")
    elif name == "lognormal":
        m, v = stats.lognorm.stats(kw["sigma"], scale=np.exp(mu), moments="mv")
    elif name == "beta":
        m, v = stats.beta.stats(mu * kw["phi"], (1 - mu) * kw["phi"], moments="mv")
    elif name == "beta_binomial":
        m, v = stats.betabinom.stats(trials, mu * kw["phi"], (1 - mu) * kw["phi"], moments="mv")
    elif name == "cumulative":
        k = kw["cutpoints"].shape[-1] + 1
        ks = np.arange(1, k + 1)
        p = np.exp(np.column_stack([ref_cumulative(np.full(len(mu), j), mu, kw["cutpoints"],
                                                   kw.get("disc", 1.0), link) for j in ks]))
        m = p @ ks
        v = p @ ks ** 2 - m ** 2
    else:
        m, v = pmf_moments(name, mu, kw)
    return np.asarray(m, float), np.asarray(v, float)


DRAW_CASES = [  # (family, link, mu by column, trials, parameters by column)
    ("student", "identity", [0.0, 2.0, -1.0], 1.0,
     {"sigma": np.array([1.0, 0.5, 3.0]), "nu": np.array([6.0, 10.0, 30.0])}),
    ("lognormal", "identity", [0.0, 1.0, -1.0], 1.0, {"sigma": np.array([0.3, 0.5, 0.2])}),
    ("beta", "logit", [0.2, 0.5, 0.9], 1.0, {"phi": np.array([2.0, 10.0, 50.0])}),
    ("beta_binomial", "logit", [0.2, 0.5, 0.9], np.array([5.0, 12.0, 20.0]),
     {"phi": np.array([1.0, 5.0, 30.0])}),
    ("cumulative", "logit", [-1.0, 0.0, 1.5], 1.0,
     {"cutpoints": np.array([-1.0, 0.0, 0.8, 2.2])}),
    ("cumulative", "probit", [-1.0, 0.0, 1.5], 1.0,
     {"cutpoints": np.array([-1.0, 0.0, 0.8, 2.2]), "disc": np.array([0.5, 1.0, 2.0])}),
    ("zero_inflated_poisson", "log", [0.5, 3.0, 12.0], 1.0, {"zi": np.array([0.1, 0.4, 0.7])}),
    ("zero_inflated_negbinomial", "log", [0.5, 3.0, 12.0], 1.0,
     {"zi": np.array([0.1, 0.4, 0.7]), "shape": np.array([5.0, 2.0, 4.0])}),
    ("hurdle_poisson", "log", [0.2, 3.0, 12.0], 1.0, {"hu": np.array([0.1, 0.4, 0.7])}),
    ("hurdle_negbinomial", "log", [0.2, 3.0, 12.0], 1.0,
     {"hu": np.array([0.1, 0.4, 0.7]), "shape": np.array([5.0, 2.0, 4.0])}),
]


@pytest.mark.parametrize("name,link,mu,trials,kw", DRAW_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in DRAW_CASES])
def test_moments_match_independent_references(name, link, mu, trials, kw):
    mu = np.array(mu)
    want_m, want_v = reference_moments(name, link, mu, trials, kw)
    got_m, got_v = fam(name, link).moments(mu, trials, **kw)
    np.testing.assert_allclose(got_m, want_m, rtol=1e-9)
    np.testing.assert_allclose(got_v, want_v, rtol=1e-8)


@pytest.mark.parametrize("name,link,mu,trials,kw", DRAW_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in DRAW_CASES])
def test_draws_match_the_distribution(name, link, mu, trials, kw):
    mu = np.array(mu)
    rng = np.random.default_rng(20261202)
    draws = fam(name, link).draw(rng, np.broadcast_to(mu, (N_DRAWS, 3)),
                                 np.broadcast_to(trials, (N_DRAWS, 3)), **kw)
    assert draws.shape == (N_DRAWS, 3)
    mean, var = reference_moments(name, link, mu, trials, kw)
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 4 * np.sqrt(var / N_DRAWS))
    centred = draws - draws.mean(axis=0)
    s2 = (centred ** 2).mean(axis=0)
    se_var = np.sqrt(((centred ** 4).mean(axis=0) - s2 ** 2) / N_DRAWS)
    assert np.all(np.abs(s2 - var) < 4 * se_var), (s2, var, se_var)
    if fam(name).spec.discrete:
        assert np.all(draws == np.round(draws))
    if name == "cumulative":  # every category's frequency
        for k in range(1, 6):
            p = np.exp(ref_cumulative(np.full(3, k), mu, kw["cutpoints"], kw.get("disc", 1.0),
                                      link))
            freq = (draws == k).mean(axis=0)
            assert np.all(np.abs(freq - p) < 4 * np.sqrt(p * (1 - p) / N_DRAWS) + 1e-12), k
    if name.startswith(("zero_inflated", "hurdle")):  # P(0)
        lp0 = fam(name).log_density(np.zeros(3), mu, **kw)
        p0 = (np.exp(ref_zero_inflated(0.0, mu, kw["zi"], kw.get("shape")))
              if "zi" in kw else kw["hu"])
        np.testing.assert_allclose(np.exp(lp0), p0, rtol=1e-12)
        freq = (draws == 0).mean(axis=0)
        assert np.all(np.abs(freq - p0) < 4 * np.sqrt(p0 * (1 - p0) / N_DRAWS))
    if name.startswith("hurdle"):
        assert np.all((draws == 0) | (draws >= 1))


@pytest.mark.parametrize("negbin", [False, True])
def test_hurdle_draws_at_tiny_means(negbin):
    """The zero-truncated part where f(0) is (nearly) 1: P(y = 2 | y > 0) from scipy's pmf
    renormalised by its survival function; every draw is a positive count."""
    name, kw = ("hurdle_negbinomial", {"shape": 2.0}) if negbin else ("hurdle_poisson", {})
    rng = np.random.default_rng(5)
    tiny = fam(name).draw(rng, np.full(N_DRAWS, 1e-12), hu=0.0, **kw)
    assert np.all(tiny == 1.0)
    mu = 2e-3
    y = fam(name).draw(rng, np.full(N_DRAWS, mu), hu=0.0, **kw)
    if negbin:
        p2 = nb_pmf(2, mu, 2.0) / stats.nbinom.sf(0, 2.0, 2.0 / (2.0 + mu))
    else:
        p2 = stats.poisson.pmf(2, mu) / stats.poisson.sf(0, mu)
    assert np.all(y >= 1)
    assert abs((y == 2).mean() - p2) < 4 * np.sqrt(p2 * (1 - p2) / N_DRAWS)


def test_draws_with_parameters_varying_by_row():
    """One parameter value per row (a distributional formula's case): each row's draws follow
    its own parameters (rows repeated, compared with scipy's moments)."""
    rng = np.random.default_rng(7)
    sigma = np.repeat([0.5, 2.0], N_DRAWS // 2)
    y = fam("student").draw(rng, np.zeros(N_DRAWS), sigma=sigma, nu=8.0)
    for s, part in ((0.5, y[: N_DRAWS // 2]), (2.0, y[N_DRAWS // 2:])):
        var = stats.t.var(8.0, scale=s)
        assert abs(part.var() - var) < 0.05 * var


def test_student_moments_where_undefined():
    m, v = fam("student").moments([0.0, 0.0, 0.0], sigma=1.0, nu=[0.8, 1.5, 3.0])
    assert np.isnan(m[0]) and m[1] == 0.0 and m[2] == 0.0
    assert np.isnan(v[0]) and v[1] == np.inf and v[2] == pytest.approx(3.0)


# ---------------------------------------------------------------- the table


BRMS = json.loads((ROOT / "tests" / "reference" / "families" / "brms_priors.json")
                  .read_text())["cases"]


@pytest.mark.parametrize("case", sorted(BRMS))
def test_links_are_brms(case):
    """brms 2.18's family object: the mean link is one of ours, and every link_<dpar> it lists
    is our DPar's link (brms's hurdle_poisson lists no link_hu: see the README)."""
    ref = BRMS[case]
    spec = ALL_FAMILIES[ref["family"]]
    assert ref["links"]["link"] in spec.links
    if case in EXTENDED_FAMILIES or case.startswith("cumulative"):
        assert ref["links"]["link"] == spec.links[0] or case == "cumulative_probit"
    dpars = {d.name: d.link for d in spec.dpars}
    for key, link in ref["links"].items():
        if key != "link":
            assert dpars[key.removeprefix("link_")] == link, (case, key)


def test_dpar_table():
    table = {name: tuple(spec.dpars) for name, spec in ALL_FAMILIES.items()}
    assert table["student"] == (("sigma", "log", 0.0), ("nu", "logm1", 1.0))
    assert table["zero_inflated_negbinomial"] == (("shape", "log", 0.0), ("zi", "logit", 0.0))
    assert table["hurdle_poisson"] == (("hu", "logit", 0.0),)
    assert table["cumulative"] == (("disc", "log", 0.0),)
    assert table["gaussian"] == (("sigma", "log", 0.0),)
    assert table["poisson"] == () and table["binomial"] == ()
    # negbinomial keeps phi as its parameter; brms calls the same parameter shape
    assert FAMILIES["negbinomial"].params == ("phi",) and table["negbinomial"][0].name == "shape"
    assert all(isinstance(d, DPar) for spec in ALL_FAMILIES.values() for d in spec.dpars)
    # the fitted families' parameter and dispersion did not change
    assert {n: s.dispersion for n, s in FAMILIES.items()} == {
        "gaussian": "sigma", "binomial": None, "bernoulli": None, "poisson": None,
        "negbinomial": "phi", "Gamma": "shape"}
    assert {s.support for s in ALL_FAMILIES.values()} <= set(SUPPORTS)
    assert {n: (s.support, s.discrete) for n, s in EXTENDED_FAMILIES.items()} == {
        "student": ("real", False), "lognormal": ("positive", False), "beta": ("unit", False),
        "beta_binomial": ("trials", True), "cumulative": ("ordinal", True),
        "zero_inflated_poisson": ("count", True), "zero_inflated_negbinomial": ("count", True),
        "hurdle_poisson": ("count", True), "hurdle_negbinomial": ("count", True)}


def test_dpar_links_invert():
    eta = np.array([-3.0, 0.0, 2.5])
    np.testing.assert_allclose(dpar_linkinv("logm1", eta), 1.0 + np.exp(eta), rtol=1e-15)
    np.testing.assert_allclose(dpar_linkinv("logit", eta), 1 / (1 + np.exp(-eta)), rtol=1e-15)
    np.testing.assert_allclose(dpar_linkinv("log", eta), np.exp(eta), rtol=1e-15)
    with pytest.raises(FamilyError, match="unknown distributional link 'softplus'"):
        dpar_linkinv("softplus", eta)


def test_fitted_families_also_take_their_parameter_by_name():
    y, mu = np.array([0.0, 2.0, 7.0]), np.array([1.0, 2.0, 3.0])
    g = get_family("gaussian")
    np.testing.assert_array_equal(g.log_density(y, mu, sigma=1.5), g.log_density(y, mu, 1, 1.5))
    nb = get_family("negbinomial")
    np.testing.assert_allclose(nb.log_density(y, mu, phi=2.0),
                               stats.nbinom.logpmf(y, 2.0, 2.0 / (2.0 + mu)), rtol=1e-12)
    m, v = nb.moments(mu, phi=2.0)
    np.testing.assert_allclose(v, stats.nbinom.var(2.0, 2.0 / (2.0 + mu)), rtol=1e-12)
    with pytest.raises(FamilyError, match="no parameter 'shape'"):
        nb.log_density(y, mu, shape=2.0)
    with pytest.raises(FamilyError, match="pass them by name"):
        fam("student").log_density(y, mu, 1, 2.0)
    with pytest.raises(FamilyError, match="needs its nu"):
        fam("student").log_density(y, mu, sigma=1.0)


# ---------------------------------------------------------------- not fittable yet


def test_aliases():
    assert {alias: fam(alias).name for alias in
            ("t", "Student_T", "zip", "ZINB", "ordinal", "cumulative", "betabinomial",
             "hurdle_nb", "lognormal")} == {
        "t": "student", "Student_T": "student", "zip": "zero_inflated_poisson",
        "ZINB": "zero_inflated_negbinomial", "ordinal": "cumulative",
        "cumulative": "cumulative", "betabinomial": "beta_binomial",
        "hurdle_nb": "hurdle_negbinomial", "lognormal": "lognormal"}
    assert fam("beta") == Family("beta", "logit")
    assert fam("cumulative", "probit") == Family("cumulative", "probit")
    with pytest.raises(FamilyError, match="choose one of: logit, probit$"):
        fam("cumulative", "cloglog")


@pytest.mark.parametrize("name", sorted(EXTENDED_FAMILIES))
def test_extended_families_are_fitted_by_the_distributional_programs_only(name):
    f = get_family(name)  # fittable now
    assert f.supports("dist_ml") and f.supports("dist_nuts")
    assert not any(f.supports(m) for m in ("glm", "lmer", "glmer", "nuts_joint", "laplace",
                                           "nuts_marginal"))
    with pytest.raises(FamilyError, match="no joint program code"):
        f.stan_codes("joint")
    with pytest.raises(FamilyError, match="no glm variance function"):
        f.variance([0.5])
    assert all(name not in families_for(m) for m in ("glm", "glmer", "nuts_joint", "laplace"))
    assert name in families_for("dist_ml") and name in families_for("dist_nuts")


def test_lme4_families_with_parameters_also_run_on_the_distributional_programs():
    assert {n for n in families_for("dist_ml")} == set(EXTENDED_FAMILIES) | {
        "gaussian", "negbinomial", "Gamma"}


def test_model_refuses_bad_family_input_early():
    data = pd.DataFrame({"y": [0.1, 0.5, 0.7, 0.2], "x": [1.0, 2.0, 3.0, 4.0],
                         "g": ["a", "a", "b", "b"]})
    with pytest.raises(FamilyError, match="unknown family 'tweedie'.*zero_inflated_poisson"):
        bm.Model("y ~ x", data, family="tweedie")
    with pytest.raises(FamilyError, match="build its design with bayesmix.design.dist"):
        bm.build_design("y ~ x + (1 | g)", data, family="beta")
    with pytest.raises(FamilyError, match="link 'log' is not available for family 'beta'"):
        bm.Model("y ~ x + (1 | g)", data, family="beta", link="log")
