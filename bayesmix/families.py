"""Response families and their links: the one home of their mathematics.

`Family(name, link)` is what a model carries (R's spellings, printed ``binomial(logit)``). Its
methods are R's ``family()`` object: ``linkfun``, ``linkinv`` and ``mu_eta`` with R's numerical
guards, ``variance``, ``dev_resids``, plus the log density and random draws of one observation,
the codes the generic Stan programs read, and which fitting methods support it. Everything is
looked up in two tables, `LINKS` and `FAMILIES`; docs/architecture.md ("Adding a family") says
how to add an entry, docs/families.md lists the families and their parametrisations.

Conventions (as R's glm for ``dev_resids`` and ``variance``, Stan's for densities and draws):

* ``dev_resids(y, mu, wt, phi)``: R's unsigned deviance contributions with y on R's scale (a
  proportion for binomial, ``wt`` = prior weights x trials).
* ``log_density(y, mu, trials, phi)`` and ``draw(rng, mu, trials, phi)``: y in counts for
  binomial; ``phi`` is the family parameter named by ``dispersion`` (gaussian ``sigma``, negative
  binomial ``phi`` with Var = mu + mu^2 / phi as Stan's neg_binomial_2 and lme4's glmer.nb
  theta, Gamma ``shape`` with Var = mu^2 / shape).

The families beyond lme4's (``student``, ``lognormal``, ``beta``, ``beta_binomial``,
``cumulative``, zero-inflated and hurdle counts) live in `EXTENDED_FAMILIES`, beside lme4's
`FAMILIES` (every consumer of `FAMILIES` -- the Stan codes, glm, glmer, the generic joint
program -- sees exactly lme4's families). Only the distributional programs fit them
(`bayesmix.dist`: methods ``dist_ml`` and ``dist_nuts``), which also fit lme4's families with
distributional parameters (gaussian, negbinomial, Gamma with a ``bf()`` formula). Their densities and draws are
in brms's parametrisation (tests/reference/families/README.md) and take every parameter by
name as arrays, so a distributional parameter may vary by row:
``get_family("student", fittable=False).log_density(y, mu, sigma=s, nu=nu)``. `ALL_FAMILIES`
holds both. `FamilySpec.params` names a family's parameters besides mu (in the density's
order), `FamilySpec.dpars` the ones a distributional formula may model, in brms's names with
brms's links (`DPar`); the two differ for negbinomial, whose ``phi`` is brms's ``shape``, and
for cumulative, whose cutpoints are no distributional parameter.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, NamedTuple

import numpy as np
from scipy import special, stats

from .errors import FamilyError

_EPS = np.finfo(float).eps
_INVEPS = 1.0 / _EPS
_THRESH = 30.0                            # R's logit guards (family.c)
_PROBIT_THRESH = -stats.norm.ppf(_EPS)    # R's probit guard: qnorm(eps)

# What a family's response may be (checked by the design stage, design/build.py): any number,
# 0/1 (a factor or logical too; binomial also successes and failures by cbind()), whole numbers
# >= 0, numbers > 0.
# The extended families add (design/dist.py): numbers in (0, 1), successes out of trials
# (beta_binomial: cbind(successes, failures)), and ordered categories (cumulative).
SUPPORTS = ("real", "binary", "count", "positive", "unit", "trials", "ordinal")

# The fitting methods a family can declare (`Family.supports`).
METHODS = ("glm", "lmer", "glmer", "nuts_joint", "nuts_marginal", "laplace", "dist_ml",
           "dist_nuts")
# the distributional programs (stan/dist_ml.stan, stan/dist_nuts.stan; bayesmix.dist): every
# family with distributional parameters, and the only fits of EXTENDED_FAMILIES
_DIST = frozenset({"dist_ml", "dist_nuts"})


# ---------------------------------------------------------------- links


@dataclass(frozen=True)
class Link:
    """One link function g (mu = g^-1(eta)) with R's guards (make.link / family.c)."""

    name: str
    code: int  # `link` data of stan/glmm_functions.stan, glmm_joint.stan (same codes)
    linkfun: Callable[[np.ndarray], np.ndarray]
    linkinv: Callable[[np.ndarray], np.ndarray]
    mu_eta: Callable[[np.ndarray], np.ndarray]   # d mu / d eta
    stan_inverse: str  # the inverse link in Stan source, "{x}" the linear predictor
    valideta: Callable[[np.ndarray], bool] = lambda eta: True


def _logit_inv(eta):
    tmp = np.where(eta < -_THRESH, _EPS,
                   np.where(eta > _THRESH, _INVEPS, np.exp(np.clip(eta, -_THRESH, _THRESH))))
    return tmp / (1.0 + tmp)


def _logit_mu_eta(eta):
    e = np.exp(np.clip(eta, -_THRESH, _THRESH))
    return np.where((eta > _THRESH) | (eta < -_THRESH), _EPS, e / (1.0 + e) ** 2)


def _cloglog_mu_eta(eta):
    e = np.minimum(eta, 700.0)  # R: pmax(exp(eta) * exp(-exp(eta)), eps), no overflow
    return np.maximum(np.exp(e) * np.exp(-np.exp(e)), _EPS)


def _positive_finite(eta) -> bool:
    return bool(np.all(np.isfinite(eta)) and np.all(eta > 0))


def _nonzero_finite(eta) -> bool:
    return bool(np.all(np.isfinite(eta)) and np.all(eta != 0))


LINKS: dict[str, Link] = {link.name: link for link in (
    Link("logit", 1, lambda mu: np.log(mu / (1.0 - mu)), _logit_inv, _logit_mu_eta,
         "inv_logit({x})"),
    Link("probit", 2, stats.norm.ppf,
         lambda eta: stats.norm.cdf(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH)),
         lambda eta: np.maximum(stats.norm.pdf(eta), _EPS), "Phi({x})"),
    Link("cloglog", 3, lambda mu: np.log(-np.log1p(-mu)),
         lambda eta: np.clip(-np.expm1(-np.exp(eta)), _EPS, 1 - _EPS), _cloglog_mu_eta,
         "inv_cloglog({x})"),
    Link("log", 4, np.log, lambda eta: np.maximum(np.exp(eta), _EPS),
         lambda eta: np.maximum(np.exp(eta), _EPS), "exp({x})"),
    Link("identity", 5, lambda mu: mu, lambda eta: eta, lambda eta: np.ones_like(eta), "{x}"),
    Link("inverse", 6, lambda mu: 1.0 / mu, lambda eta: 1.0 / eta, lambda eta: -1.0 / eta ** 2,
         "inv({x})", _nonzero_finite),
    Link("sqrt", 7, np.sqrt, lambda eta: eta ** 2, lambda eta: 2.0 * eta, "square({x})",
         _positive_finite),
)}


def get_link(link: str) -> Link:
    """The `Link` named ``link``; FamilyError naming the choices otherwise."""
    try:
        return LINKS[link]
    except (KeyError, TypeError):
        raise FamilyError(f"unknown link {link!r}; choose one of: {', '.join(LINKS)}") from None


# ---------------------------------------------------------------- per-family maths


def _ylogy(y, mu):
    """y * log(y / mu), 0 where y == 0 (R's y_log_y)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)


def _xlogy(x, y):
    """x * log(y), 0 where x == 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1.0, y)))


# R's dev.resids (wt: prior weights, x trials for binomial; y a proportion for binomial)
def _dev_gaussian(y, mu, wt, phi=1.0):
    return wt * (y - mu) ** 2


def _dev_binomial(y, mu, wt, phi=1.0):
    return 2.0 * wt * (_ylogy(y, mu) + _ylogy(1.0 - y, 1.0 - mu))


def _dev_poisson(y, mu, wt, phi=1.0):
    return 2.0 * wt * (_ylogy(y, mu) - (y - mu))


def _dev_negbinomial(y, mu, wt, phi=1.0):
    # MASS::negative.binomial(theta = phi)$dev.resids
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2.0 * wt * (_ylogy(y, mu) - (y + phi) * np.log((y + phi) / (mu + phi)))


def _dev_gamma(y, mu, wt, phi=1.0):
    with np.errstate(divide="ignore"):
        return -2.0 * wt * (np.log(np.where(y == 0, 1.0, y / mu)) - (y - mu) / mu)


# log density of one observation (y in counts for binomial); written with special functions
# so that tests/test_families.py can check them against scipy.stats
def _lp_gaussian(y, mu, trials, sigma):
    return -0.5 * ((y - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2.0 * np.pi)


def _lp_binomial(y, mu, trials, phi=None):
    lchoose = special.gammaln(trials + 1) - special.gammaln(y + 1) - special.gammaln(trials - y + 1)
    return lchoose + _xlogy(y, mu) + _xlogy(trials - y, 1.0 - mu)


def _lp_poisson(y, mu, trials, phi=None):
    return _xlogy(y, mu) - mu - special.gammaln(y + 1)


def _lp_negbinomial(y, mu, trials, phi):
    with np.errstate(divide="ignore"):
        return (special.gammaln(y + phi) - special.gammaln(phi) - special.gammaln(y + 1)
                + phi * (np.log(phi) - np.log(phi + mu)) + _xlogy(y, mu / (phi + mu)))


def _lp_gamma(y, mu, trials, shape):
    with np.errstate(divide="ignore"):
        return (shape * (np.log(shape) - np.log(mu)) - special.gammaln(shape)
                + (shape - 1) * np.log(y) - shape * y / mu)


# random draws with numpy's Generator (the order of calls is part of the seeded output)
def _draw_gaussian(rng, mu, trials, sigma):
    return mu + sigma * rng.standard_normal(np.shape(mu))


def _draw_binomial(rng, mu, trials, phi=None):
    p = np.clip(mu, 0.0, 1.0)
    return rng.binomial(np.broadcast_to(np.asarray(trials).astype(np.int64), np.shape(p)),
                        p).astype(float)


def _draw_poisson(rng, mu, trials, phi=None):
    return rng.poisson(mu).astype(float)


def _draw_negbinomial(rng, mu, trials, phi):
    phi = np.broadcast_to(phi, np.shape(mu))
    lam = rng.gamma(phi, mu / phi)  # neg_binomial_2(mu, phi) as a gamma-poisson mixture
    return rng.poisson(lam).astype(float)


def _draw_gamma(rng, mu, trials, shape):
    shape = np.broadcast_to(shape, np.shape(mu))
    return rng.gamma(shape, mu / shape)


# R's family()$aic (-2 log likelihood without the parameter count); glm's AIC adds 2 * rank
def _aic_gaussian(y, n, mu, wt, dev):
    nobs = len(y)  # R: all observations count, zero weights included
    with np.errstate(divide="ignore"):
        return nobs * (np.log(2 * np.pi * dev / nobs) + 1) + 2 - np.sum(np.log(wt))


def _aic_binomial(y, n, mu, wt, dev):
    m = n if np.any(n > 1) else wt
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(m > 0, wt / np.where(m > 0, m, 1.0), 0.0)
        ll = stats.binom.logpmf(np.round(m * y), np.round(m), mu)
    return -2.0 * np.sum(np.where(scale > 0, scale * ll, 0.0))


def _aic_poisson(y, n, mu, wt, dev):
    ll = stats.poisson.logpmf(y, mu)
    return -2.0 * np.sum(np.where(wt > 0, ll * wt, 0.0))


def _aic_gamma(y, n, mu, wt, dev):
    disp = dev / np.sum(wt)
    ll = stats.gamma.logpdf(y, 1.0 / disp, scale=mu * disp)
    return -2.0 * np.sum(np.where(wt > 0, ll * wt, 0.0)) + 2.0


# R's family()$initialize: IRLS's starting means (y on R's scale; n the binomial weights,
# i.e. the trials of a cbind() response or the prior weights of a 0/1 one)
def _start_binomial(y, n):
    return (n * y + 0.5) / (n + 1)


def _start_count(y, n):
    return y + 0.1  # poisson()$initialize; glm.nb starts from the poisson fit too


def _start_y(y, n):
    return y.copy()


def _valid_probability(mu) -> bool:
    return bool(np.all(np.isfinite(mu)) and np.all((mu > 0) & (mu < 1)))


# ---------------------------------------------------------------- distributional parameters


class DPar(NamedTuple):
    """One distributional parameter: brms's name, brms's link (the scale its formula models)
    and its lower bound (logit-linked parameters also lie below 1)."""

    name: str
    link: str
    lower: float


def _logit(p):
    return np.log(p) - np.log1p(-p)


# links of distributional parameters: name -> (link, inverse). brms's ``logm1`` is
# log(x - 1), the link of student's nu (nu > 1); these are not mean links (`LINKS`).
DPAR_LINKS: dict[str, tuple[Callable, Callable]] = {
    "identity": (lambda x: x, lambda eta: eta),
    "log": (np.log, np.exp),
    "logm1": (lambda x: np.log(x - 1.0), lambda eta: 1.0 + np.exp(eta)),
    "logit": (_logit, special.expit),
}


def dpar_linkinv(link: str, eta):
    """A distributional parameter from its linear predictor (inverse of a `DPAR_LINKS` link)."""
    try:
        return DPAR_LINKS[link][1](np.asarray(eta, dtype=float))
    except KeyError:
        raise FamilyError(f"unknown distributional link {link!r}; choose one of: "
                          f"{', '.join(DPAR_LINKS)}") from None


# ---------------------------------------------------------------- extended families' maths
# brms's parametrisations (tests/reference/families/README.md). Every function takes its
# parameters as arrays broadcast against y and mu; ``trials`` is used by beta_binomial only.


def _log1mexp(x):
    """log(1 - exp(x)) for x <= 0 (Maechler's switch at -log 2)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > -np.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def _shape(*arrays):
    return np.broadcast_shapes(*(np.shape(a) for a in arrays))


def _lp_student(y, mu, trials, sigma, nu):
    z = (y - mu) / sigma
    # log Gamma((nu + 1) / 2) - log Gamma(nu / 2) by Pochhammer's symbol: no cancellation
    # for large nu (the difference of two lgammas loses ~1e-6 at nu = 1e9)
    return (np.log(special.poch(nu / 2.0, 0.5))
            - 0.5 * np.log(nu * np.pi) - np.log(sigma) - (nu + 1.0) / 2.0 * np.log1p(z * z / nu))


def _draw_student(rng, mu, trials, sigma, nu):
    shape = _shape(mu, sigma, nu)
    return mu + sigma * rng.standard_t(np.broadcast_to(nu, shape), size=shape)


def _moments_student(mu, trials, sigma, nu):
    mu, sigma, nu = np.broadcast_arrays(mu, sigma, nu)
    mean = np.where(nu > 1, mu, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(nu > 2, sigma ** 2 * nu / (nu - 2.0), np.where(nu > 1, np.inf, np.nan))
    return mean, var


def _lp_lognormal(y, mu, trials, sigma):
    with np.errstate(divide="ignore", invalid="ignore"):
        ly = np.log(np.where(y > 0, y, 1.0))
        lp = -0.5 * ((ly - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2.0 * np.pi) - ly
    return np.where(y > 0, lp, -np.inf)


def _draw_lognormal(rng, mu, trials, sigma):
    return np.exp(mu + sigma * rng.standard_normal(_shape(mu, sigma)))


def _moments_lognormal(mu, trials, sigma):
    s2 = np.asarray(sigma, float) ** 2
    return np.exp(mu + s2 / 2.0), np.expm1(s2) * np.exp(2.0 * mu + s2)


def _lp_beta(y, mu, trials, phi):
    a, b = mu * phi, (1.0 - mu) * phi
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (y > 0) & (y < 1)
        yy = np.where(inside, y, 0.5)
        lp = (a - 1.0) * np.log(yy) + (b - 1.0) * np.log1p(-yy) - special.betaln(a, b)
    return np.where(inside, lp, -np.inf)


def _draw_beta(rng, mu, trials, phi):
    shape = _shape(mu, phi)
    mu, phi = np.broadcast_to(mu, shape), np.broadcast_to(phi, shape)
    return rng.beta(mu * phi, (1.0 - mu) * phi)


def _moments_beta(mu, trials, phi):
    mu, phi = np.broadcast_arrays(np.asarray(mu, float), np.asarray(phi, float))
    return mu, mu * (1.0 - mu) / (1.0 + phi)


def _lp_beta_binomial(y, mu, trials, phi):
    a, b = mu * phi, (1.0 - mu) * phi
    ok = (y >= 0) & (y <= trials) & (y == np.round(y))
    yy = np.where(ok, y, 0.0)
    lchoose = (special.gammaln(trials + 1) - special.gammaln(yy + 1)
               - special.gammaln(trials - yy + 1))
    return np.where(ok, lchoose + special.betaln(yy + a, trials - yy + b) - special.betaln(a, b),
                    -np.inf)


def _draw_beta_binomial(rng, mu, trials, phi):
    shape = _shape(mu, phi, trials)
    mu, phi = np.broadcast_to(mu, shape), np.broadcast_to(phi, shape)
    p = rng.beta(mu * phi, (1.0 - mu) * phi)
    return rng.binomial(np.broadcast_to(np.asarray(trials).astype(np.int64), shape),
                        p).astype(float)


def _moments_beta_binomial(mu, trials, phi):
    mu, n, phi = np.broadcast_arrays(*(np.asarray(a, float) for a in (mu, trials, phi)))
    return n * mu, n * mu * (1.0 - mu) * (phi + n) / (phi + 1.0)


# cumulative: log F and log(1 - F) of the latent noise, and its draws
_CUMULATIVE_NOISE = {
    "logit": (lambda x: -np.logaddexp(0.0, -x), lambda x: -np.logaddexp(0.0, x),
              lambda rng, shape: rng.logistic(size=shape)),
    "probit": (special.log_ndtr, lambda x: special.log_ndtr(-x),
               lambda rng, shape: rng.standard_normal(shape)),
}


def _cutpoints(cutpoints):
    c = np.asarray(cutpoints, dtype=float)
    if c.ndim == 0 or c.shape[-1] < 1:
        raise FamilyError("cumulative: cutpoints must be a vector of K - 1 >= 1 values "
                          "(one row per observation, or one vector for all)")
    if np.any(~(np.diff(c, axis=-1) > 0)) or np.any(np.isnan(c)):
        raise FamilyError("cumulative: the cutpoints must be strictly increasing")
    return c


def _category_bounds(y, mu, cutpoints, disc):
    """(ok, lower, upper): P(y = k) = F(upper) - F(lower), upper = disc (c_k - eta),
    lower = disc (c_{k-1} - eta), with c_0 = -inf and c_K = inf."""
    c = _cutpoints(cutpoints)
    k_cats = c.shape[-1] + 1
    shape = np.broadcast_shapes(np.shape(y), np.shape(mu), np.shape(disc), c.shape[:-1])
    ext = np.concatenate([np.full(c.shape[:-1] + (1,), -np.inf), c,
                          np.full(c.shape[:-1] + (1,), np.inf)], axis=-1)
    ext = np.broadcast_to(ext, shape + (k_cats + 1,))
    y = np.broadcast_to(y, shape)
    ok = (y >= 1) & (y <= k_cats) & (y == np.round(y))
    k = np.where(ok, y, 1).astype(np.int64)[..., None]
    upper = np.take_along_axis(ext, k, axis=-1)[..., 0]
    lower = np.take_along_axis(ext, k - 1, axis=-1)[..., 0]
    with np.errstate(invalid="ignore"):
        return ok, disc * (lower - mu), disc * (upper - mu)


def _make_cumulative(link: str):
    log_cdf, log_sf, noise = _CUMULATIVE_NOISE[link]

    def log_density(y, mu, trials, cutpoints, disc=1.0):
        ok, a, b = _category_bounds(y, mu, cutpoints, disc)
        # log(F(b) - F(a)) from the side where it loses no digits
        with np.errstate(invalid="ignore", divide="ignore"):
            upper_tail = log_sf(a) + _log1mexp(log_sf(b) - log_sf(a))
            lower_tail = log_cdf(b) + _log1mexp(log_cdf(a) - log_cdf(b))
        return np.where(ok, np.where(a > 0, upper_tail, lower_tail), -np.inf)

    def draw(rng, mu, trials, cutpoints, disc=1.0):
        c = _cutpoints(cutpoints)
        shape = np.broadcast_shapes(np.shape(mu), np.shape(disc), c.shape[:-1])
        latent = mu + noise(rng, shape) / disc  # P(latent <= c_k) = F(disc (c_k - mu))
        return 1.0 + np.sum(np.broadcast_to(latent, shape)[..., None] > c, axis=-1)

    def moments(mu, trials, cutpoints, disc=1.0):
        c = _cutpoints(cutpoints)
        k_cats = c.shape[-1] + 1
        shape = np.broadcast_shapes(np.shape(mu), np.shape(disc), c.shape[:-1])
        ks = np.arange(1, k_cats + 1, dtype=float)
        probs = np.exp(np.stack([log_density(np.full(shape, k), mu, trials, c, disc)
                                 for k in ks], axis=-1))
        mean = probs @ ks
        return mean, probs @ ks ** 2 - mean ** 2

    return log_density, draw, moments


_CUMULATIVE = {link: _make_cumulative(link) for link in _CUMULATIVE_NOISE}


def _lp_cumulative(y, mu, trials, cutpoints, disc=1.0, *, link="logit"):
    return _CUMULATIVE[link][0](y, mu, trials, cutpoints, disc)


def _draw_cumulative(rng, mu, trials, cutpoints, disc=1.0, *, link="logit"):
    return _CUMULATIVE[link][1](rng, mu, trials, cutpoints, disc)


def _moments_cumulative(mu, trials, cutpoints, disc=1.0, *, link="logit"):
    return _CUMULATIVE[link][2](mu, trials, cutpoints, disc)


# count parts of zero-inflated and hurdle families: log f(y | mu[, shape]) and log f(0)
def _count_lp(y, mu, shape):
    if shape is None:
        return _lp_poisson(y, mu, None)
    return _lp_negbinomial(y, mu, None, shape)


def _count_log_f0(mu, shape):
    if shape is None:
        return -np.asarray(mu, float)
    return shape * (np.log(shape) - np.log(shape + mu))


def _count_draw(rng, mu, shape):
    if shape is None:
        return rng.poisson(mu).astype(float)
    return _draw_negbinomial(rng, mu, None, np.broadcast_to(shape, np.shape(mu)))


def _count_moments(mu, shape):
    """E y and E y^2 of the untruncated count part."""
    var = mu if shape is None else mu + mu ** 2 / shape
    return mu, var + mu ** 2


def _lp_zero_inflated(y, mu, shape, zi):
    ok = (y >= 0) & (y == np.round(y))
    yy = np.where(ok, y, 0.0)
    with np.errstate(divide="ignore"):
        zero = np.logaddexp(np.log(zi), np.log1p(-zi) + _count_log_f0(mu, shape))
        positive = np.log1p(-zi) + _count_lp(yy, mu, shape)
    return np.where(ok, np.where(yy == 0, zero, positive), -np.inf)


def _draw_zero_inflated(rng, mu, shape, zi):
    out_shape = _shape(mu, zi) if shape is None else _shape(mu, zi, shape)
    mu = np.broadcast_to(mu, out_shape)
    count = _count_draw(rng, mu, shape)
    return np.where(rng.random(out_shape) < zi, 0.0, count)


def _moments_zero_inflated(mu, shape, zi):
    m1, m2 = _count_moments(np.asarray(mu, float), shape)
    mean = (1.0 - zi) * m1
    return mean, (1.0 - zi) * m2 - mean ** 2


def _lp_hurdle(y, mu, shape, hu):
    ok = (y >= 0) & (y == np.round(y))
    yy = np.where(ok, y, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = (np.log1p(-hu) + _count_lp(np.maximum(yy, 1.0), mu, shape)
                    - _log1mexp(_count_log_f0(mu, shape)))
        zero = np.log(hu)
    return np.where(ok, np.where(yy == 0, zero, positive), -np.inf)


def _draw_hurdle(rng, mu, shape, hu):
    """Zero with probability hu, else the count part truncated at zero, exactly for any mu
    (no rejection loop, also where f(0) rounds to 1).

    Poisson: a Poisson process of rate mu on [0, 1] with at least one event; its first event
    time T has P(T <= t) = (1 - e^(-mu t)) / (1 - e^(-mu)), the rest are Poisson(mu (1 - T)),
    so y = 1 + Poisson(mu (1 - T)). Negative binomial: y = isf(q), q uniform on
    (0, 1 - f(0)] (scipy's nbinom.isf holds there; its poisson.isf returns nan for q < 1e-16
    relative to 1 - f(0), hence the construction above)."""
    out_shape = _shape(mu, hu) if shape is None else _shape(mu, hu, shape)
    mu = np.broadcast_to(np.asarray(mu, float), out_shape)
    p_positive = -np.expm1(_count_log_f0(mu, shape))
    if shape is None:
        first = -np.log1p(-rng.random(out_shape) * p_positive) / mu
        positive = 1.0 + rng.poisson(mu * np.clip(1.0 - first, 0.0, 1.0))
    else:
        q = (1.0 - rng.random(out_shape)) * p_positive
        size = np.broadcast_to(shape, out_shape)
        positive = np.maximum(stats.nbinom.isf(q, size, size / (size + mu)), 1.0)
    return np.where(rng.random(out_shape) < hu, 0.0, positive)


def _moments_hurdle(mu, shape, hu):
    mu = np.asarray(mu, float)
    m1, m2 = _count_moments(mu, shape)
    p_pos = -np.expm1(_count_log_f0(mu, shape))
    mean = (1.0 - hu) * m1 / p_pos
    return mean, (1.0 - hu) * m2 / p_pos - mean ** 2


def _count_family(kind: str, negbin: bool):
    """(log_density, draw, moments) of a zero-inflated or hurdle family; parameters in the
    order (shape, zi | hu) for negative binomial parts, (zi | hu) for Poisson ones."""
    lp, dr, mo = {"zi": (_lp_zero_inflated, _draw_zero_inflated, _moments_zero_inflated),
                  "hu": (_lp_hurdle, _draw_hurdle, _moments_hurdle)}[kind]
    if negbin:
        return (lambda y, mu, trials, shape, p: lp(y, mu, shape, p),
                lambda rng, mu, trials, shape, p: dr(rng, mu, shape, p),
                lambda mu, trials, shape, p: mo(mu, shape, p))
    return (lambda y, mu, trials, p: lp(y, mu, None, p),
            lambda rng, mu, trials, p: dr(rng, mu, None, p),
            lambda mu, trials, p: mo(mu, None, p))


# moments (E y, Var y) of the fitted families, for a uniform Family.moments
def _moments_gaussian(mu, trials, sigma):
    mu = np.asarray(mu, float)
    return mu, np.broadcast_to(np.asarray(sigma, float) ** 2, mu.shape)


def _moments_binomial(mu, trials, phi=None):
    return trials * mu, trials * mu * (1.0 - mu)


def _moments_poisson(mu, trials, phi=None):
    return mu, mu


def _moments_negbinomial(mu, trials, phi):
    return mu, mu + mu ** 2 / phi


def _moments_gamma(mu, trials, shape):
    return mu, mu ** 2 / shape


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class FamilySpec:
    """Everything bayesmix knows about one response family (an entry of `FAMILIES`)."""

    name: str
    links: tuple[str, ...]      # valid links; the first is R's default
    r_name: str                 # R's family()$family ("binomial" for bernoulli too)
    variance: Callable | None   # R's V(mu, phi) (None: no glm variance function)
    validmu: Callable[[np.ndarray], bool]
    dev_resids: Callable | None  # (y, mu, wt, phi) -> R's unsigned deviance contributions
    log_density: Callable       # (y, mu, trials, *params) -> log p(y)
    draw: Callable              # (rng, mu, trials, *params) -> one draw per mu
    aic: Callable | None        # R's family()$aic, for glm fits
    mustart: Callable | None    # (y, n) -> IRLS's starting means (R's initialize)
    dispersion: str | None      # the family parameter's name in Stan and the priors
    fixed_dispersion: bool      # glm: dispersion 1 (z tests) rather than estimated (t tests)
    discrete: bool              # integer response (Stan reads it as int)
    support: str                # the response the design stage accepts: SUPPORTS
    joint_code: int | None      # `family` data of stan/glmm_joint.stan
    glmer_code: int | None      # `family` data of stan/glmer.stan (glmm_functions.stan)
    methods: frozenset          # of METHODS; lmer / nuts_marginal: identity link only
    # the parameters besides mu, in the order log_density / draw / moments take them after
    # trials (the fitted families: their `dispersion`, or none)
    params: tuple[str, ...] = ()
    # the distributional parameters a formula may model (brms's names and links; bayesmix.bf)
    dpars: tuple[DPar, ...] = ()
    moments: Callable | None = None  # (mu, trials, *params) -> (E y, Var y)
    uses_link: bool = False     # log_density, draw and moments also take link= (cumulative)
    dist_code: int | None = None  # `family` data of the distributional programs
                                  # (stan/dist_functions.stan; bayesmix.design.dist)


_ALL_BUT_ML = frozenset({"nuts_joint", "laplace"})

# brms's distributional parameters: names, links (brms 2.18's defaults) and lower bounds
_SIGMA = DPar("sigma", "log", 0.0)
_SHAPE = DPar("shape", "log", 0.0)    # neg_binomial_2's phi, Gamma's shape
_PHI = DPar("phi", "log", 0.0)        # beta and beta_binomial precision
_NU = DPar("nu", "logm1", 1.0)        # brms: nu >= 1, link log(nu - 1)
_ZI = DPar("zi", "logit", 0.0)        # probability of a structural zero
_HU = DPar("hu", "logit", 0.0)        # probability of a zero (hurdle)
_DISC = DPar("disc", "log", 0.0)      # cumulative's discrimination (1 unless modelled)

_PROBABILITY_LINKS = ("logit", "probit", "cloglog", "log")
_COUNT_LINKS = ("log", "identity", "sqrt")

_BINOMIAL = FamilySpec(
    "binomial", _PROBABILITY_LINKS, r_name="binomial",
    variance=lambda mu, phi=1.0: mu * (1 - mu), validmu=_valid_probability,
    dev_resids=_dev_binomial, log_density=_lp_binomial, draw=_draw_binomial,
    aic=_aic_binomial, mustart=_start_binomial,
    dispersion=None, fixed_dispersion=True, discrete=True, support="binary",
    joint_code=2, glmer_code=1, methods=_ALL_BUT_ML | {"glm", "glmer"},
    moments=_moments_binomial)

FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in (
    FamilySpec(
        "gaussian", ("identity", "log", "inverse"), r_name="gaussian",
        variance=lambda mu, phi=1.0: np.ones_like(mu), validmu=lambda mu: True,
        dev_resids=_dev_gaussian, log_density=_lp_gaussian, draw=_draw_gaussian,
        aic=_aic_gaussian, mustart=_start_y,
        dispersion="sigma", fixed_dispersion=False, discrete=False, support="real",
        joint_code=1, glmer_code=None,
        methods=_ALL_BUT_ML | _DIST | {"glm", "lmer", "nuts_marginal"},
        params=("sigma",), dpars=(_SIGMA,), moments=_moments_gaussian, dist_code=1),
    _BINOMIAL,
    # binomial with one trial per row (0/1 response): its own Stan code (bernoulli_*)
    replace(_BINOMIAL, name="bernoulli", joint_code=3),
    FamilySpec(
        "poisson", _COUNT_LINKS, r_name="poisson",
        variance=lambda mu, phi=1.0: mu, validmu=_positive_finite,
        dev_resids=_dev_poisson, log_density=_lp_poisson, draw=_draw_poisson,
        aic=_aic_poisson, mustart=_start_count,
        dispersion=None, fixed_dispersion=True, discrete=True, support="count",
        joint_code=4, glmer_code=2, methods=_ALL_BUT_ML | {"glm", "glmer"},
        moments=_moments_poisson),
    FamilySpec(
        "negbinomial", _COUNT_LINKS, r_name="Negative Binomial",
        variance=lambda mu, phi=1.0: mu + mu ** 2 / phi, validmu=_positive_finite,
        dev_resids=_dev_negbinomial, log_density=_lp_negbinomial, draw=_draw_negbinomial,
        aic=None, mustart=_start_count,
        dispersion="phi", fixed_dispersion=True, discrete=True, support="count",
        joint_code=5, glmer_code=3, methods=_ALL_BUT_ML | _DIST | {"glmer"},
        params=("phi",), dpars=(_SHAPE,), moments=_moments_negbinomial,  # brms: shape
        dist_code=11),
    FamilySpec(
        "Gamma", ("inverse", "log", "identity"), r_name="Gamma",
        variance=lambda mu, phi=1.0: mu ** 2, validmu=_positive_finite,
        dev_resids=_dev_gamma, log_density=_lp_gamma, draw=_draw_gamma,
        aic=_aic_gamma, mustart=_start_y,
        dispersion="shape", fixed_dispersion=False, discrete=False, support="positive",
        joint_code=6, glmer_code=4, methods=_ALL_BUT_ML | _DIST | {"glm", "glmer"},
        params=("shape",), dpars=(_SHAPE,), moments=_moments_gamma, dist_code=12),
)}

# lower-cased spellings accepted for each family
_ALIASES: dict[str, str] = {
    "gaussian": "gaussian",
    "normal": "gaussian",
    "binomial": "binomial",
    "bernoulli": "bernoulli",
    "poisson": "poisson",
    "negbinomial": "negbinomial",
    "neg_binomial": "negbinomial",
    "negative_binomial": "negbinomial",
    "neg_binomial_2": "negbinomial",
    "nb": "negbinomial",
    "gamma": "Gamma",
    # beyond lme4 (bayesmix.dist)
    "student": "student",
    "student_t": "student",
    "studentt": "student",
    "t": "student",
    "lognormal": "lognormal",
    "beta": "beta",
    "beta_binomial": "beta_binomial",
    "betabinomial": "beta_binomial",
    "cumulative": "cumulative",
    "ordinal": "cumulative",
    "ordered_logistic": "cumulative",
    "zero_inflated_poisson": "zero_inflated_poisson",
    "zip": "zero_inflated_poisson",
    "zero_inflated_negbinomial": "zero_inflated_negbinomial",
    "zero_inflated_neg_binomial": "zero_inflated_negbinomial",
    "zinb": "zero_inflated_negbinomial",
    "hurdle_poisson": "hurdle_poisson",
    "hurdle_negbinomial": "hurdle_negbinomial",
    "hurdle_neg_binomial": "hurdle_negbinomial",
    "hurdle_nb": "hurdle_negbinomial",
}
# ---------------------------------------------------------------- families beyond lme4
# Densities and draws in brms's parametrisation; no fitting method yet (methods empty, no Stan
# codes), so get_family() refuses them unless asked with fittable=False.


def _extended(dist_code, name, links, log_density, draw, moments, params, dpars, discrete,
              support, validmu=lambda mu: True, uses_link=False):
    return FamilySpec(
        name, links, r_name=name, variance=None, validmu=validmu, dev_resids=None,
        log_density=log_density, draw=draw, aic=None, mustart=None, dispersion=None,
        fixed_dispersion=False, discrete=discrete, support=support, joint_code=None,
        glmer_code=None, methods=_DIST, params=params, dpars=dpars, moments=moments,
        uses_link=uses_link, dist_code=dist_code)


_ZIP, _ZINB = _count_family("zi", False), _count_family("zi", True)
_HP, _HNB = _count_family("hu", False), _count_family("hu", True)

EXTENDED_FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in (
    # student_t(nu, mu, sigma)
    _extended(2, "student", ("identity", "log", "inverse"), _lp_student, _draw_student,
             _moments_student, ("sigma", "nu"), (_SIGMA, _NU), False, "real"),
    # lognormal(mu, sigma): mu and sigma are the mean and SD of log y
    _extended(3, "lognormal", ("identity", "inverse"), _lp_lognormal, _draw_lognormal,
             _moments_lognormal, ("sigma",), (_SIGMA,), False, "positive"),
    # beta(mu phi, (1 - mu) phi) = Stan's beta_proportion(mu, phi)
    _extended(4, "beta", ("logit", "probit", "cloglog"), _lp_beta, _draw_beta, _moments_beta,
             ("phi",), (_PHI,), False, "unit", _valid_probability),
    # beta_binomial(trials, mu phi, (1 - mu) phi)
    _extended(5, "beta_binomial", ("logit", "probit", "cloglog"), _lp_beta_binomial,
             _draw_beta_binomial, _moments_beta_binomial, ("phi",), (_PHI,), True, "trials",
             _valid_probability),
    # P(y <= k) = F(disc (c_k - eta)), y in 1..K, F the link's distribution function; ``mu`` is
    # the linear predictor eta (Stan's ordered_logistic(eta, c) for logit, disc = 1)
    _extended(6, "cumulative", ("logit", "probit"), _lp_cumulative, _draw_cumulative,
             _moments_cumulative, ("cutpoints", "disc"), (_DISC,), True, "ordinal",
             uses_link=True),
    # P(0) = zi + (1 - zi) f(0), P(k) = (1 - zi) f(k); f Poisson(mu) or neg_binomial_2(mu, shape)
    _extended(7, "zero_inflated_poisson", _COUNT_LINKS, *_ZIP, ("zi",), (_ZI,), True, "count",
             _positive_finite),
    _extended(8, "zero_inflated_negbinomial", _COUNT_LINKS, *_ZINB, ("shape", "zi"),
             (_SHAPE, _ZI), True, "count", _positive_finite),
    # P(0) = hu, P(k > 0) = (1 - hu) f(k) / (1 - f(0)); mu the mean of the untruncated f
    _extended(9, "hurdle_poisson", _COUNT_LINKS, *_HP, ("hu",), (_HU,), True, "count",
             _positive_finite),
    _extended(10, "hurdle_negbinomial", _COUNT_LINKS, *_HNB, ("shape", "hu"), (_SHAPE, _HU), True,
             "count", _positive_finite),
)}
ALL_FAMILIES: dict[str, FamilySpec] = {**FAMILIES, **EXTENDED_FAMILIES}
# parameters a density may leave out, and their values
_PARAM_DEFAULTS = {"disc": 1.0}
_LINKS = {name: spec.links for name, spec in ALL_FAMILIES.items()}  # family -> valid links


@dataclass(frozen=True)
class Family:
    """A family and its link, as a model carries it (``get_family`` resolves spellings)."""

    name: str
    link: str

    def __str__(self) -> str:
        return f"{self.name}({self.link})"

    @property
    def spec(self) -> FamilySpec:
        return ALL_FAMILIES[self.name]

    @property
    def link_spec(self) -> Link:
        return LINKS[self.link]

    # R's family() functions
    def linkfun(self, mu):
        return self.link_spec.linkfun(np.asarray(mu, dtype=float))

    def linkinv(self, eta):
        return self.link_spec.linkinv(np.asarray(eta, dtype=float))

    def mu_eta(self, eta):
        return self.link_spec.mu_eta(np.asarray(eta, dtype=float))

    def variance(self, mu, phi: float = 1.0):
        if self.spec.variance is None:
            raise FamilyError(f"{self} has no glm variance function V(mu); "
                              "Family.moments gives the mean and variance of y")
        return self.spec.variance(np.asarray(mu, dtype=float), phi)

    def dev_resids(self, y, mu, wt, phi: float = 1.0):
        if self.spec.dev_resids is None:
            raise FamilyError(f"{self} has no glm deviance residuals")
        return self.spec.dev_resids(np.asarray(y, float), np.asarray(mu, float), wt, phi)

    def log_density(self, y, mu, trials=1.0, phi=None, **params):
        """log p(y | mu, parameters) per observation (y in counts for binomial and
        beta_binomial, in 1..K for cumulative, whose ``mu`` is the linear predictor).

        ``phi`` is the family's one parameter (the fitted families' convention: gaussian sigma,
        negbinomial phi, Gamma shape; beta's phi); every parameter of `FamilySpec.params` may
        also be passed by name, as arrays broadcast against y and mu
        (``log_density(y, mu, sigma=s, nu=nu)``; cumulative: ``cutpoints=`` a vector, or one
        row per observation, and optionally ``disc=``)."""
        args, kw = self._arguments(phi, params, "density needs")
        return self.spec.log_density(np.asarray(y, float), np.asarray(mu, float),
                                     np.asarray(trials, float), *args, **kw)

    def draw(self, rng: np.random.Generator, mu, trials=1.0, phi=None, **params):
        """One random response per entry of mu broadcast against the parameters (binomial,
        beta_binomial: successes out of trials; cumulative: categories 1..K)."""
        args, kw = self._arguments(phi, params, "draws need")
        return self.spec.draw(rng, np.asarray(mu, float), trials, *args, **kw)

    def moments(self, mu, trials=1.0, phi=None, **params):
        """(E y, Var y) given mu and the parameters (as `log_density`); inf or nan where a
        moment does not exist (student: mean for nu > 1, variance for nu > 2)."""
        if self.spec.moments is None:
            raise FamilyError(f"no moments for {self}")
        args, kw = self._arguments(phi, params, "moments need")
        return self.spec.moments(np.asarray(mu, float), np.asarray(trials, float), *args, **kw)

    def _arguments(self, phi, params: dict, what: str) -> tuple[tuple, dict]:
        """The positional parameters (FamilySpec.params order) of the spec's functions."""
        spec = self.spec
        names = spec.params
        if not names:  # binomial, poisson: phi passes through, ignored, as always
            if params:
                raise FamilyError(f"{self} has no parameter {', '.join(params)} (only mu)")
            return (phi,), {}
        unknown = [k for k in params if k not in names]
        if unknown:
            raise FamilyError(f"{self} has no parameter {', '.join(map(repr, unknown))}; "
                              f"its parameters besides mu: {', '.join(names)}")
        values = dict(params)
        if phi is not None:
            target = "phi" if "phi" in names else names[0] if len(names) == 1 else None
            if target is None:
                raise FamilyError(f"{self} has several parameters: pass them by name "
                                  f"({', '.join(f'{n}=' for n in names)}), not as phi")
            if target in values:
                raise FamilyError(f"{self}: {target} given twice (as phi and by name)")
            values[target] = phi
        missing = [n for n in names if n not in values and n not in _PARAM_DEFAULTS]
        if missing:
            raise FamilyError(f"the {self} {what} its {', '.join(missing)}")
        args = []
        for n in names:
            value = values.get(n, _PARAM_DEFAULTS.get(n))
            # the fitted families' parameter passes as given (their historical behaviour)
            args.append(value if self.name in FAMILIES else np.asarray(value, dtype=float))
        return tuple(args), ({"link": self.link} if spec.uses_link else {})

    # what the Stan programs read and who can fit it
    @property
    def dispersion(self) -> str | None:
        """The family parameter (Stan and prior class name): sigma, phi, shape or None."""
        return self.spec.dispersion

    def stan_codes(self, program: str = "joint") -> dict[str, int]:
        """{"family": ..., "link": ...} data of the generic program ("joint" or "glmer")."""
        code = self.spec.joint_code if program == "joint" else self.spec.glmer_code
        if code is None or program not in ("joint", "glmer"):
            raise FamilyError(f"no {program} program code for family {self.name!r}")
        return {"family": code, "link": self.link_spec.code}

    def supports(self, method: str) -> bool:
        """Whether a fitting method (one of METHODS) fits this family and link."""
        if method not in METHODS:
            raise FamilyError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
        if method in ("lmer", "nuts_marginal") and self.link != "identity":
            return False
        return method in self.spec.methods


def families_for(method: str) -> dict[str, tuple[str, ...]]:
    """family -> the links a method supports (for messages naming the choices)."""
    out = {}
    for name, spec in ALL_FAMILIES.items():
        links = tuple(lk for lk in spec.links if Family(name, lk).supports(method))
        if links:
            out[name] = links
    return out


def _fittable_choices() -> str:
    return "; ".join(f"{name} ({', '.join(spec.links)})" for name, spec in ALL_FAMILIES.items()
                     if spec.methods)


def get_family(family: str | Family = "gaussian", link: str | None = None, *,
               fittable: bool = True) -> Family:
    """Resolve a family name (R spellings, case-insensitive) and link; the
    default link is R's. Raises FamilyError naming the valid choices.

    fittable=True (the default) refuses a family no fitting method supports (a family added
    to the tables before its programs; none today), naming the fittable ones, so that a model
    fails at once rather than at fit(). fittable=False returns it anyway, for its density,
    draws and distributional parameters. Which method fits a family: `Family.supports`."""
    if isinstance(family, Family):
        name = family.name
        link = family.link if link is None else link
    elif isinstance(family, str):
        name = _ALIASES.get(family.strip().lower())
        if name is None:
            raise FamilyError(
                f"unknown family {family!r}; choose one of: {', '.join(ALL_FAMILIES)}"
            )
    else:
        raise FamilyError(
            f"family must be a name or a Family, not {type(family).__name__}; "
            f"choose one of: {', '.join(ALL_FAMILIES)}"
        )
    if fittable and not ALL_FAMILIES[name].methods:
        raise FamilyError(
            f"family {name!r} cannot be fitted yet: no fitting method (ML or Bayesian) supports "
            f"it. Fittable families (links): {_fittable_choices()}. "
            f"get_family({name!r}, fittable=False) gives its density and draws"
        )
    links = _LINKS[name]
    if link is None:
        return Family(name, links[0])
    if not isinstance(link, str) or link.strip().lower() not in links:
        raise FamilyError(
            f"link {link!r} is not available for family {name!r}; "
            f"choose one of: {', '.join(links)}"
        )
    return Family(name, link.strip().lower())
