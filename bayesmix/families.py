"""Response families and their links: the one home of their mathematics.

`Family(name, link)` is what a model carries (R's spellings, printed ``binomial(logit)``). Its
methods are R's ``family()`` object: ``linkfun``, ``linkinv`` and ``mu_eta`` with R's numerical
guards, ``variance``, ``dev_resids``, plus the log density and random draws of one observation,
the codes the generic Stan programs read, and which fitting methods support it. Everything is
looked up in two tables, `LINKS` and `FAMILIES`; docs/architecture.md ("Adding a family") says
how to add an entry.

Conventions (as R's glm for ``dev_resids`` and ``variance``, Stan's for densities and draws):

* ``dev_resids(y, mu, wt, phi)``: R's unsigned deviance contributions with y on R's scale (a
  proportion for binomial, ``wt`` = prior weights x trials).
* ``log_density(y, mu, trials, phi)`` and ``draw(rng, mu, trials, phi)``: y in counts for
  binomial; ``phi`` is the family parameter named by ``dispersion`` (gaussian ``sigma``, negative
  binomial ``phi`` with Var = mu + mu^2 / phi as Stan's neg_binomial_2 and lme4's glmer.nb
  theta, Gamma ``shape`` with Var = mu^2 / shape).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

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
SUPPORTS = ("real", "binary", "count", "positive")

# The fitting methods a family can declare (`Family.supports`).
METHODS = ("glm", "lmer", "glmer", "nuts_joint", "nuts_marginal", "laplace")


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


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class FamilySpec:
    """Everything bayesmix knows about one response family (an entry of `FAMILIES`)."""

    name: str
    links: tuple[str, ...]      # valid links; the first is R's default
    r_name: str                 # R's family()$family ("binomial" for bernoulli too)
    variance: Callable          # V(mu, phi)
    validmu: Callable[[np.ndarray], bool]
    dev_resids: Callable        # (y, mu, wt, phi) -> R's unsigned deviance contributions
    log_density: Callable       # (y, mu, trials, phi) -> log p(y)
    draw: Callable              # (rng, mu, trials, phi) -> one draw per mu
    aic: Callable | None        # R's family()$aic, for glm fits
    mustart: Callable           # (y, n) -> IRLS's starting means (R's initialize)
    dispersion: str | None      # the family parameter's name in Stan and the priors
    fixed_dispersion: bool      # glm: dispersion 1 (z tests) rather than estimated (t tests)
    discrete: bool              # integer response (Stan reads it as int)
    support: str                # the response the design stage accepts: SUPPORTS
    joint_code: int             # `family` data of stan/glmm_joint.stan
    glmer_code: int | None      # `family` data of stan/glmer.stan (glmm_functions.stan)
    methods: frozenset          # of METHODS; lmer / nuts_marginal: identity link only


_ALL_BUT_ML = frozenset({"nuts_joint", "laplace"})

_PROBABILITY_LINKS = ("logit", "probit", "cloglog", "log")
_COUNT_LINKS = ("log", "identity", "sqrt")

_BINOMIAL = FamilySpec(
    "binomial", _PROBABILITY_LINKS, r_name="binomial",
    variance=lambda mu, phi=1.0: mu * (1 - mu), validmu=_valid_probability,
    dev_resids=_dev_binomial, log_density=_lp_binomial, draw=_draw_binomial,
    aic=_aic_binomial, mustart=_start_binomial,
    dispersion=None, fixed_dispersion=True, discrete=True, support="binary",
    joint_code=2, glmer_code=1, methods=_ALL_BUT_ML | {"glm", "glmer"})

FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in (
    FamilySpec(
        "gaussian", ("identity", "log", "inverse"), r_name="gaussian",
        variance=lambda mu, phi=1.0: np.ones_like(mu), validmu=lambda mu: True,
        dev_resids=_dev_gaussian, log_density=_lp_gaussian, draw=_draw_gaussian,
        aic=_aic_gaussian, mustart=_start_y,
        dispersion="sigma", fixed_dispersion=False, discrete=False, support="real",
        joint_code=1, glmer_code=None,
        methods=_ALL_BUT_ML | {"glm", "lmer", "nuts_marginal"}),
    _BINOMIAL,
    # binomial with one trial per row (0/1 response): its own Stan code (bernoulli_*)
    replace(_BINOMIAL, name="bernoulli", joint_code=3),
    FamilySpec(
        "poisson", _COUNT_LINKS, r_name="poisson",
        variance=lambda mu, phi=1.0: mu, validmu=_positive_finite,
        dev_resids=_dev_poisson, log_density=_lp_poisson, draw=_draw_poisson,
        aic=_aic_poisson, mustart=_start_count,
        dispersion=None, fixed_dispersion=True, discrete=True, support="count",
        joint_code=4, glmer_code=2, methods=_ALL_BUT_ML | {"glm", "glmer"}),
    FamilySpec(
        "negbinomial", _COUNT_LINKS, r_name="Negative Binomial",
        variance=lambda mu, phi=1.0: mu + mu ** 2 / phi, validmu=_positive_finite,
        dev_resids=_dev_negbinomial, log_density=_lp_negbinomial, draw=_draw_negbinomial,
        aic=None, mustart=_start_count,
        dispersion="phi", fixed_dispersion=True, discrete=True, support="count",
        joint_code=5, glmer_code=3, methods=_ALL_BUT_ML | {"glmer"}),
    FamilySpec(
        "Gamma", ("inverse", "log", "identity"), r_name="Gamma",
        variance=lambda mu, phi=1.0: mu ** 2, validmu=_positive_finite,
        dev_resids=_dev_gamma, log_density=_lp_gamma, draw=_draw_gamma,
        aic=_aic_gamma, mustart=_start_y,
        dispersion="shape", fixed_dispersion=False, discrete=False, support="positive",
        joint_code=6, glmer_code=4, methods=_ALL_BUT_ML | {"glm", "glmer"}),
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
}
_LINKS = {name: spec.links for name, spec in FAMILIES.items()}  # family -> valid links


@dataclass(frozen=True)
class Family:
    """A family and its link, as a model carries it (``get_family`` resolves spellings)."""

    name: str
    link: str

    def __str__(self) -> str:
        return f"{self.name}({self.link})"

    @property
    def spec(self) -> FamilySpec:
        return FAMILIES[self.name]

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
        return self.spec.variance(np.asarray(mu, dtype=float), phi)

    def dev_resids(self, y, mu, wt, phi: float = 1.0):
        return self.spec.dev_resids(np.asarray(y, float), np.asarray(mu, float), wt, phi)

    def log_density(self, y, mu, trials=1.0, phi=None):
        """log p(y | mu[, phi]) per observation (y in counts for binomial)."""
        self._need_phi(phi)
        return self.spec.log_density(np.asarray(y, float), np.asarray(mu, float),
                                     np.asarray(trials, float), phi)

    def draw(self, rng: np.random.Generator, mu, trials=1.0, phi=None):
        """One random response per entry of mu (binomial: successes out of trials)."""
        self._need_phi(phi)
        return self.spec.draw(rng, np.asarray(mu, float), trials, phi)

    def _need_phi(self, phi) -> None:
        if self.spec.dispersion is not None and phi is None:
            raise FamilyError(f"the {self} density needs its {self.spec.dispersion}")

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
    for name, spec in FAMILIES.items():
        links = tuple(lk for lk in spec.links if Family(name, lk).supports(method))
        if links:
            out[name] = links
    return out


def get_family(family: str | Family = "gaussian", link: str | None = None) -> Family:
    """Resolve a family name (R spellings, case-insensitive) and link; the
    default link is R's. Raises FamilyError naming the valid choices."""
    if isinstance(family, Family):
        name = family.name
        link = family.link if link is None else link
    elif isinstance(family, str):
        name = _ALIASES.get(family.strip().lower())
        if name is None:
            raise FamilyError(
                f"unknown family {family!r}; choose one of: {', '.join(_LINKS)}"
            )
    else:
        raise FamilyError(
            f"family must be a name or a Family, not {type(family).__name__}; "
            f"choose one of: {', '.join(_LINKS)}"
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
