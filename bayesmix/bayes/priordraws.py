"""Exact draws from a joint model's declared priors, in numpy (no sampler).

The priors are read exactly as the generic joint program reads them
(`bayesmix.priors.prior_data`: one (code, arguments) per scalar in the order
Intercept, slopes, sds, family parameter, and one LKJ shape per term), so the draws are
from the prior the posterior was computed under. As in the program, the intercept's prior
is on the intercept at the mean of X (b_Intercept = Intercept - means_X . b), sds and the
family parameter are restricted to (0, inf) (Stan's <lower=0>), correlation matrices are
LKJ(eta) (Stan's lkj_corr_cholesky_rng construction) and the group-level effects are
normal around zero with those sds and correlations."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..errors import BayesmixError
from ..priors import prior_data
from .idata import NamedDraws, named_draws

_FAMILY_PARAMS = {"gaussian": "sigma", "negbinomial": "phi", "Gamma": "shape"}


def _dist(code: int, a, what: str):
    from scipy import stats
    makers = {1: lambda: stats.norm(a[0], a[1]),
              2: lambda: stats.t(a[0], a[1], a[2]),
              3: lambda: stats.cauchy(a[0], a[1]),
              4: lambda: stats.laplace(a[0], a[1]),
              5: lambda: stats.logistic(a[0], a[1]),
              6: lambda: stats.norm(),
              7: lambda: stats.expon(scale=1 / a[0]),
              8: lambda: stats.gamma(a[0], scale=1 / a[1]),
              9: lambda: stats.invgamma(a[0], scale=a[1]),
              10: lambda: stats.lognorm(a[1], scale=np.exp(a[0])),
              11: lambda: stats.weibull_min(a[0], scale=a[1])}
    if code == 0:
        raise BayesmixError(f"the prior of {what} is flat (improper): no prior draws; "
                            "declare a proper prior for it")
    return makers[code]()


def _draw(code: int, a, what: str, size, rng, positive: bool) -> np.ndarray:
    """Inverse-CDF draws; `positive` restricts the distribution to (0, inf)."""
    d = _dist(code, a, what)
    u = rng.uniform(size=size)
    if positive:
        lo = float(d.cdf(0.0))
        u = lo + u * (1.0 - lo)
    return np.asarray(d.ppf(u), dtype=float)


def lkj_cholesky(eta: float, K: int, size: int, rng) -> np.ndarray:
    """(size, K, K) Cholesky factors of LKJ(eta) correlation matrices: canonical partial
    correlations 2 Beta(a, a) - 1 with a = eta + (K - 2 - i) / 2 in column i, assembled
    column by column (Stan's lkj_corr_cholesky_rng and read_corr_L)."""
    L = np.zeros((size, K, K))
    L[:, 0, 0] = 1.0
    acc = np.ones((size, K))  # remaining squared length of each row
    for i in range(K - 1):
        a = eta + 0.5 * (K - 2 - i)
        z = 2.0 * rng.beta(a, a, size=(size, K - 1 - i)) - 1.0
        if i > 0:
            L[:, i, i] = np.sqrt(acc[:, i])
        L[:, i + 1:, i] = z * np.sqrt(acc[:, i + 1:])
        acc[:, i + 1:] *= 1.0 - z ** 2
    L[:, K - 1, K - 1] = np.sqrt(acc[:, K - 1])
    return L


def prior_named_draws(design, priors: Iterable = (), chains: int = 4, ndraws: int = 1000,
                      seed: int | None = None) -> NamedDraws:
    """`chains` x `ndraws` independent draws from the priors, under `named_draws`'s names."""
    data = prior_data(design, tuple(priors))
    rng = np.random.default_rng(seed)
    S = chains * ndraws
    rows = iter(zip(data["prior_dist"], data["prior_args"]))
    names = list(design.X_names)
    has_icpt = bool(names) and names[0] == "(Intercept)"
    stan: dict[str, np.ndarray] = {}
    icpt = None
    if has_icpt:
        code, a = next(rows)
        icpt = _draw(code, a, "the Intercept", S, rng, False)
    slopes = names[1:] if has_icpt else names
    b = np.column_stack([_draw(*next(rows), f"the coefficient {n!r}", S, rng, False)
                         for n in slopes]) if slopes else np.zeros((S, 0))
    stan["b"] = b
    if has_icpt:
        X = np.asarray(design.X, dtype=float).reshape(design.n, -1)
        stan["b_Intercept"] = icpt - b @ X[:, 1:].mean(axis=0)
    for k, t in enumerate(design.terms, 1):
        sd = np.column_stack([_draw(*next(rows), f"sd({c} | {t.group})", S, rng, True)
                              for c in t.coef_names])
        z = rng.standard_normal((S, t.n_levels, t.p))
        if t.correlated and t.p > 1:
            L = lkj_cholesky(float(data["lkj_eta"][k - 1]), t.p, S, rng)
            stan[f"Cor_{k}"] = L @ np.swapaxes(L, 1, 2)
            z = np.einsum("sij,slj->sli", L, z)
        stan[f"sd_{k}"] = sd
        stan[f"r_{k}"] = z * sd[:, None, :]
    par = _FAMILY_PARAMS.get(design.family.name)
    if par is not None:
        stan[par] = _draw(*next(rows), par, S, rng, True)
    shaped = {k: v.reshape((chains, ndraws) + v.shape[1:]) for k, v in stan.items()}
    return named_draws(design, shaped.__getitem__)


_MEAN_CAP = 1e12  # count families: prior means beyond this (exp of a wild draw) are capped


def prior_predictive(design, nd: NamedDraws, seed: int | None = None) -> np.ndarray:
    """Responses (chain, draw, n) simulated from the prior draws `nd` (`prior_named_draws`):
    the linear predictor X b + Z r + offset at each draw, its mean through the inverse link,
    one response per observation from the family (`Family.draw`; binomial: successes out of
    the trials). A draw whose mean the family cannot take (a negative Gamma mean under the
    inverse link, a non-finite one) gives NaN there, as Stan would reject that state;
    count-family means are capped at 1e12."""
    post = nd.posterior
    C, D = post["b"].shape[:2]
    S = C * D
    X = np.asarray(design.X, dtype=float).reshape(design.n, -1)
    eta = post["b"].reshape(S, -1) @ X.T
    for lay in nd.layouts:
        r = post[f"r_{lay.group}"].reshape(S, len(lay.levels), -1)
        m = 0
        for k in lay.terms:
            t = design.terms[k - 1]
            Z = np.asarray(t.Z, dtype=float).reshape(design.n, t.p)
            idx = np.asarray(t.index)
            eta += np.einsum("snj,nj->sn", r[:, idx, m:m + t.p], Z)
            m += t.p
    if design.offset is not None:
        eta += np.asarray(design.offset, dtype=float)[None, :]
    fam = design.family
    with np.errstate(over="ignore", invalid="ignore"):
        mu = np.asarray(fam.linkinv(eta), dtype=float)
    valid = np.isfinite(mu)
    if fam.name in ("poisson", "negbinomial"):
        valid &= mu >= 0
        mu = np.minimum(mu, _MEAN_CAP)
    elif fam.name == "Gamma":
        valid &= mu > 0
    par = _FAMILY_PARAMS.get(fam.name)
    phi = None if par is None else np.broadcast_to(post[par].reshape(S, 1), mu.shape)[valid]
    trials = np.broadcast_to(np.asarray(design.trials if design.trials is not None else 1.0,
                                        dtype=float), mu.shape)[valid]
    y = np.full(mu.shape, np.nan)
    with np.errstate(all="ignore"):  # e.g. a Gamma shape drawn as 0 from gamma(0.01, 0.01)
        y[valid] = fam.draw(np.random.default_rng(seed), mu[valid], trials, phi)
    return y.reshape(C, D, design.n)


__all__ = ["lkj_cholesky", "prior_named_draws", "prior_predictive"]
