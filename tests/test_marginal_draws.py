"""Exact random-effect draws of the marginal program (bayesmix.bayes.ranef_draws), blocked like
the likelihood, against the dense q x q computation they replace (kept here as the reference),
against the analytic conditional Gaussian, and against lme4's conditional modes."""

import numpy as np
import pytest

from bayesmix.bayes.marginal import cholesky_corr, marginal_layout, relative_factors
from bayesmix.bayes.ranef_draws import (cholesky_corr_batch, draw_chunk, draw_random_effects,
                                        draw_system, term_factors)
from bayesmix.datasets import load
from bayesmix.design import build_design
from bayesmix.lmm import factors_to_theta, lambda_matrix, random_design
from test_marginal import _synthetic  # the same small crossed data set


CASES = [
    ("Reaction ~ Days + (Days | Subject)", lambda: load("sleepstudy")),      # one term
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", lambda: load("Penicillin")),  # crossed
    ("extro ~ open + agree + social + (1 | school/class)", lambda: load("lmmdata")),  # nested
    ("y ~ x + (x + w | g) + (x | h)", _synthetic),   # 3 x 3 first term, correlated second
    ("y ~ x + (1 | h) + (x + w || g)", _synthetic),  # uncorrelated split terms
    ("y ~ 0 + x + (1 | g)", _synthetic),             # no intercept
    ("y ~ 0 + (1 | g) + (1 | h)", _synthetic),       # no fixed effects at all
]


def dense_draws(lay, beta, sd_all, cpc, sigma, e, prior_only=False):
    """The routine the blocked draws replaced (test-only reference): per draw, the dense q x q
    A = Lambda' Z'Z Lambda + I, its Cholesky factor C, u = A^-1 Lambda' Z'(y - X beta) +
    sigma C^-T e, b = Lambda u. Also returns the conditional means and covariances of b."""
    Z = random_design(lay.terms).toarray()
    S, q = e.shape
    out, means, covs = np.empty((S, q)), np.empty((S, q)), np.empty((S, q, q))
    for s in range(S):
        theta = factors_to_theta(relative_factors(lay, sd_all[s], cpc[s], sigma[s]))
        Lam = lambda_matrix(theta, lay.terms).toarray()
        if prior_only:
            out[s] = Lam @ (sigma[s] * e[s])
            continue
        ZL = Z @ Lam
        A = ZL.T @ ZL + np.eye(q)
        C = np.linalg.cholesky(A)
        mean = np.linalg.solve(A, ZL.T @ (lay.y_s - lay.X_s @ beta[s]))
        u = mean + sigma[s] * np.linalg.solve(C.T, e[s])
        out[s], means[s] = Lam @ u, Lam @ mean
        covs[s] = sigma[s] ** 2 * Lam @ np.linalg.solve(A, Lam.T)
    return out, means, covs


def _points(lay, rng, S):
    P = lay.X_s.shape[1]
    n_sd = sum(t.p for t in lay.terms)
    n_cpc = sum(t.p * (t.p - 1) // 2 for j, t in enumerate(lay.terms) if lay.correlated(j))
    beta = rng.normal(size=(S, P)) * 2
    if lay.intercept:
        beta[:, 0] += np.mean(lay.y_s)
    return (beta, rng.uniform(0.2, 5, (S, n_sd)), rng.normal(size=(S, n_cpc)),
            rng.uniform(0.5, 3, S))


def test_batched_cholesky_corr_is_the_per_draw_one():
    y = np.random.default_rng(0).normal(size=(5, 6))
    got = cholesky_corr_batch(y, 4)
    for s in range(5):
        np.testing.assert_allclose(got[s], cholesky_corr(y[s], 4), rtol=0, atol=1e-15)


@pytest.mark.parametrize("formula,data", CASES)
def test_blocked_draws_equal_the_dense_ones(formula, data):
    """Same normals -> the same draws (the blocked factor is the dense Cholesky factor of A in
    the same column order), and the blocked conditional mean (e = 0) and covariance (the draws
    are affine in e: unit vectors give the columns of sigma L^-T) equal the dense ones."""
    d = build_design(formula, data())
    lay = marginal_layout(d)
    sys = draw_system(lay)
    q = lay.q
    rng = np.random.default_rng(7)
    beta, sd, cpc, sigma = _points(lay, rng, 3)
    e = rng.standard_normal((3, q))
    ref, means, covs = dense_draws(lay, beta, sd, cpc, sigma, e)
    T = term_factors(lay, sd, cpc, sigma)
    got = draw_chunk(sys, T, beta, sigma, e)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8 * scale)
    for s in range(3):
        rep = np.zeros(q + 1, dtype=int) + s
        Ts = [t[rep] for t in T]
        E = np.vstack([np.zeros(q), np.eye(q)])
        b = draw_chunk(sys, Ts, beta[rep], sigma[rep], E)
        mean, F = b[0], (b[1:] - b[0]).T            # b = mean + F e
        np.testing.assert_allclose(mean, means[s], rtol=0, atol=1e-8 * np.abs(means[s]).max())
        np.testing.assert_allclose(F @ F.T, covs[s], rtol=0, atol=1e-8 * np.abs(covs[s]).max())
    # prior_only: b = Lambda sigma e
    ref0, _, _ = dense_draws(lay, beta, sd, cpc, sigma, e, prior_only=True)
    np.testing.assert_allclose(draw_chunk(sys, T, beta, sigma, e, prior_only=True), ref0,
                               rtol=0, atol=1e-12 * np.abs(ref0).max())


def test_chunking_and_seed_do_not_change_the_distribution():
    """Many draws at one hyperparameter point, in chunks of 7: sample mean and covariance of b
    against the analytic ones (Monte-Carlo tolerances: 5 standard errors for each mean; each
    correlation-scaled covariance entry within 0.05, about 7 standard errors (1 - rho^2) /
    sqrt(20,000) <= 0.007)."""
    d = build_design("y ~ x + (x | g) + (1 | h)", _synthetic(3))
    lay = marginal_layout(d)
    beta, sd, cpc, sigma = _points(lay, np.random.default_rng(1), 1)
    S = 20_000
    rep = np.zeros(S, dtype=int)
    draws = draw_random_effects(lay, beta[rep], sd[rep], cpc[rep], sigma[rep],
                                np.random.default_rng(5), chunk_bytes=7 * draw_system(lay)
                                .bytes_per_draw())
    _, means, covs = dense_draws(lay, beta, sd, cpc, sigma, np.zeros((1, lay.q)))
    sdv = np.sqrt(np.diag(covs[0]))
    z = (draws.mean(0) - means[0]) / (sdv / np.sqrt(S))
    assert np.abs(z).max() < 5
    emp = np.cov(draws.T) / np.outer(sdv, sdv)
    np.testing.assert_allclose(emp, covs[0] / np.outer(sdv, sdv), rtol=0, atol=0.05)


def test_conditional_mean_at_lme4_estimates_is_lme4_ranef():
    """At lme4's REML estimates (sleepstudy: theta, sigma, beta from lme4 1.1-31), the blocked
    conditional mean of b (e = 0) is lme4's ranef (conditional modes) to 1e-6."""
    d = build_design("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    lay = marginal_layout(d)
    sigma = 25.5917957217
    T = np.array([[0.966741773967, 0.0], [0.015169058896, 0.230909953208]])   # lme4's theta, lower
    Sig = sigma ** 2 * T @ T.T
    sd = np.sqrt(np.diag(Sig))
    r = Sig[1, 0] / (sd[0] * sd[1])
    cpc = np.array([np.arctanh(r)])                   # cholesky_corr: L[1, 0] = tanh(y)
    beta = np.array([251.4051048485, 10.4672859596])          # fixef, intercept at Days = 0
    beta_c = np.array([beta[0] + beta[1] * lay.means_X[0], beta[1]])
    sys = draw_system(lay)
    Tk = term_factors(lay, sd[None], cpc[None], np.array([sigma]))
    mean = draw_chunk(sys, Tk, beta_c[None], np.array([sigma]), np.zeros((1, lay.q)))[0]
    ranef = mean.reshape(18, 2)
    # lme4: ranef(fm)$Subject for subjects 308, 309 and 372 (levels sorted as in lme4)
    np.testing.assert_allclose(ranef[0], [2.2585509499, 9.19897576557], atol=1e-6)
    np.testing.assert_allclose(ranef[1], [-40.3987380788, -8.61968061524], atol=1e-6)
    np.testing.assert_allclose(ranef[-1], [12.3145921077, 1.28402207653], atol=1e-6)


def test_draws_do_not_depend_on_the_thread_count(monkeypatch):
    """Chunks run on a thread per core, but the normals are drawn chunk after chunk in the
    calling thread: one thread and three give the same draws, bit for bit."""
    import bayesmix.bayes.ranef_draws as rd
    d = build_design("y ~ x + (x | g) + (x | h)", _synthetic(4))
    lay = marginal_layout(d)
    beta, sd, cpc, sigma = _points(lay, np.random.default_rng(2), 40)
    step = 7 * draw_system(lay).bytes_per_draw()
    out = []
    for n in (1, 3):
        monkeypatch.setattr(rd, "cores", lambda n=n: n)
        out.append(draw_random_effects(lay, beta, sd, cpc, sigma, np.random.default_rng(9),
                                       chunk_bytes=step))
    np.testing.assert_array_equal(out[0], out[1])
