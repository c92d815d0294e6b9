"""glmer's Laplace approximation in numpy (lme4's PIRLS at nAGQ = 1), mirroring the generic
program `stan/glmer.stan`: the per-observation terms, the problem's arrays, the conditional mode
by Newton's method with the first term's blocks eliminated (`BlockedCholesky`), the deviance,
GLM starting values, and the estimates at the optimum (conditional modes and variances, the
finite-difference Hessian behind lme4's Wald standard errors). The fitting method (Stan code,
data, inits, the run, the result) is `bayesmix.glmerfit`; the mathematics is docs/math.md."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy import optimize, special

from ..design import Design
from ..errors import FamilyError, user_stacklevel
from ..families import FAMILIES, Family, families_for, get_link
from ..irls import irls
from ..optimizer import one_blas_thread
from .suffstats import as_terms, normalize_theta, random_design, theta_to_factors
from .theta import singular_factors, varcorr

# family -> links glmer supports (the first is the default), from bayesmix.families
GLMER_LINKS: dict[str, tuple[str, ...]] = families_for("glmer")

NEWTON_STEPS = 50       # at most, per evaluation of glmer.stan's Laplace likelihood
# Newton (in C++, off the tape: stan/glmm_mode.hpp) stops once a step is below 1e-10
# (relative). The program's gradient is exact only at the exact mode, and the driver's
# Hessian differences that gradient, so the mode is cheap to make tight: one more step.
NEWTON_TOL = 1e-10
HESSIAN_STEP = 1e-4     # lme4's deriv12 delta


def check_glmer_family(family) -> None:
    """Raise FamilyError unless glmer supports the family and link (naming the choices)."""
    links = GLMER_LINKS.get(family.name)
    if links is None or not family.supports("glmer"):
        choices = "; ".join(f"{f} ({', '.join(ls)})" for f, ls in GLMER_LINKS.items())
        hint = (" (gaussian identity-link models are fitted by lmer)"
                if family.name == "gaussian" else "")
        raise FamilyError(f"glmer does not support family {family.name!r} with link "
                          f"{family.link!r}{hint}; valid families (links): {choices}")
    if family.link not in links:
        raise FamilyError(f"glmer does not support link {family.link!r} for family "
                          f"{family.name!r}; choose one of: {', '.join(links)}")

# ---------------------------------------------------------------------------------------------
# The Laplace problem's per-observation terms (numpy mirror of glmm_obs in glmm_functions.stan);
# links, variances and deviance residuals are bayesmix.families'
# ---------------------------------------------------------------------------------------------


def linkinv(link: str, eta: np.ndarray) -> np.ndarray:
    """The inverse link (R's, with its guards): `bayesmix.families.Link.linkinv`."""
    return get_link(link).linkinv(np.asarray(eta, dtype=float))


def _link_parts(link: str, eta: np.ndarray):
    """mu, mu' = dmu/deta, h = mu''/mu', log mu."""
    if link == "log":
        mu = np.exp(eta)
        return mu, mu, np.ones_like(eta), eta
    if link == "identity":
        return eta, np.ones_like(eta), np.zeros_like(eta), np.log(eta)
    if link == "inverse":
        mu = 1.0 / eta
        return mu, -mu ** 2, -2.0 * mu, np.log(mu)
    if link == "sqrt":
        mu = eta ** 2
        return mu, 2.0 * eta, 1.0 / eta, np.log(mu)
    raise FamilyError(f"link {link!r} is not available here")


def _xlogy(x, y):
    return np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1.0, y)))


def obs_terms(family: str, link: str, eta, y, ntr, phi: float = 1.0):
    """Per observation: full log density, score d lp/d eta, Newton weight (observed
    information, Fisher weights if any is negative) and Fisher weight mu'^2 / Var(y)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if family in ("binomial", "bernoulli"):
            if link == "logit":
                lmu, l1mu = special.log_expit(eta), special.log_expit(-eta)
                r1, r0 = np.exp(l1mu), np.exp(lmu)
                h = r1 - r0
            elif link == "probit":
                lphi = -0.5 * eta ** 2 - 0.5 * np.log(2 * np.pi)
                lmu, l1mu = special.log_ndtr(eta), special.log_ndtr(-eta)
                r1, r0 = np.exp(lphi - lmu), np.exp(lphi - l1mu)
                h = -eta
            elif link == "cloglog":
                ee = np.exp(eta)
                l1mu = -ee
                lmu = np.log(-np.expm1(-ee))
                r0 = ee
                r1 = ee / np.expm1(ee)
                h = 1.0 - ee
            elif link == "log":
                lmu = eta
                l1mu = np.log(-np.expm1(eta))
                r1 = np.ones_like(eta)
                r0 = np.exp(eta - l1mu)
                h = np.ones_like(eta)
            else:
                raise FamilyError(f"link {link!r} is not available for the binomial family")
            lchoose = special.gammaln(ntr + 1) - special.gammaln(y + 1) - special.gammaln(ntr - y + 1)
            lp = lchoose + np.where(y > 0, y * lmu, 0.0) + np.where(ntr - y > 0, (ntr - y) * l1mu, 0.0)
            s = y * r1 - (ntr - y) * r0
            wf = ntr * r1 * r0
            wn = y * r1 ** 2 + (ntr - y) * r0 ** 2 - s * h
        else:
            mu, dmu, h, lmu = _link_parts(link, eta)
            if family == "poisson":
                V = mu
                dlogV = 1.0 / mu
                lp = _xlogy(y, mu) - mu - special.gammaln(y + 1)
            elif family == "negbinomial":
                lpm = np.log(phi + mu)
                V = mu + mu ** 2 / phi
                dlogV = (1 + 2 * mu / phi) / V
                lp = (special.gammaln(y + phi) - special.gammaln(phi) - special.gammaln(y + 1)
                      + phi * (np.log(phi) - lpm) + np.where(y > 0, y * (lmu - lpm), 0.0))
            elif family == "Gamma":
                V = mu ** 2 / phi
                dlogV = 2.0 / mu
                lp = phi * (np.log(phi) - lmu - y / mu) - special.gammaln(phi) + (phi - 1) * np.log(y)
            else:
                raise FamilyError(f"family {family!r} is not available for glmer")
            s = (y - mu) * dmu / V
            wf = dmu ** 2 / V
            wn = wf - s * (h - dmu * dlogV)
            lp = np.where(mu > 0, lp, np.nan)  # outside the family's range
        if family in ("binomial", "bernoulli") and link == "log":
            lp = np.where(eta < 0, lp, np.nan)
        if np.any(wn < 0):
            wn = wf
    return lp, s, wn, wf


def _r_scale(family: str, y, ntr):
    """(y, weights) on R's glm scale: a proportion with the trials as weights for binomial."""
    if family in ("binomial", "bernoulli"):
        with np.errstate(divide="ignore", invalid="ignore"):
            return y / ntr, ntr
    return y, np.ones_like(y)


def deviance_residuals(family: str, y, mu, ntr, phi: float = 1.0) -> np.ndarray:
    """Signed deviance residuals (R's residuals(type = "deviance"), y in counts)."""
    yr, wt = _r_scale(family, np.asarray(y, float), np.asarray(ntr, float))
    d = FAMILIES[family].dev_resids(yr, mu, wt, phi)
    return np.sign(yr - mu) * np.sqrt(np.maximum(d, 0.0))


def pearson_residuals(family: str, y, mu, ntr, phi: float = 1.0) -> np.ndarray:
    """(y - mu) / sqrt(Var(y) / weight) on R's scale (R's residuals(type = "pearson"))."""
    yr, wt = _r_scale(family, np.asarray(y, float), np.asarray(ntr, float))
    return (yr - mu) * np.sqrt(wt) / np.sqrt(FAMILIES[family].variance(mu, phi))


# ---------------------------------------------------------------------------------------------
# The problem and its Laplace approximation in numpy
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GlmmProblem:
    """Arrays of a glmer fit: response, trials, X, offset, random-effects terms."""
    family: str
    link: str
    y: np.ndarray
    ntr: np.ndarray          # binomial trials (ones otherwise)
    X: np.ndarray
    offset: np.ndarray
    terms: list              # LmmTerm (index, Z, n_levels), lme4's order
    Z: sp.csc_matrix         # n x q, lme4's column order

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def q(self) -> int:
        return self.Z.shape[1]

    @property
    def n_theta(self) -> int:
        return sum(t.n_theta for t in self.terms)

    @cached_property
    def zl_cols(self) -> np.ndarray:
        """(n, sum p_k): the column of Z Lambda of each row's non-zeros (lme4's order)."""
        cols, q0 = [], 0
        for t in self.terms:
            cols.append(q0 + t.index[:, None] * t.p + np.arange(t.p)[None, :])
            q0 += t.q
        return np.column_stack(cols)

    @cached_property
    def zl_pairs(self) -> np.ndarray:
        """(n, R^2): flat indices c_r * q + c_s of each row's pairs of non-zero columns."""
        c = self.zl_cols
        return (c[:, :, None] * self.q + c[:, None, :]).reshape(len(c), -1)

    @property
    def has_phi(self) -> bool:
        """Whether phi (glmer.nb's theta) is a parameter."""
        return self.family == "negbinomial"

    # The glmer result (results/glmm.py) holds its problem and asks it for these, so the
    # results layer imports no fitting module.
    def linkinv(self, eta: np.ndarray) -> np.ndarray:
        return linkinv(self.link, eta)

    def pearson_residuals(self, mu: np.ndarray, phi: float = 1.0) -> np.ndarray:
        return pearson_residuals(self.family, self.y, mu, self.ntr, phi)

    def working_residuals(self, eta: np.ndarray, phi: float = 1.0) -> np.ndarray:
        _, s, _, wf = obs_terms(self.family, self.link, eta, self.y, self.ntr, phi)
        return s / wf

    @classmethod
    def from_design(cls, design: Design) -> "GlmmProblem":
        check_glmer_family(design.family)
        if design.weights is not None:
            raise NotImplementedError("prior weights are not yet supported for glmer fits")
        if not design.terms:
            raise FamilyError("glmer needs at least one random-effects term")
        n = design.n
        ntr = np.ones(n) if design.trials is None else np.asarray(design.trials, float)
        offset = np.zeros(n) if design.offset is None else np.asarray(design.offset, float)
        terms = as_terms(design.terms)
        return cls(design.family.name, design.family.link, np.asarray(design.y, float), ntr,
                   np.asarray(design.X, float), offset, terms, random_design(terms))


@dataclass(frozen=True, eq=False)
class LaplaceFit:
    """The Laplace approximation at (beta, theta, phi)."""
    loglik: float            # Laplace log likelihood (lme4's logLik)
    u: np.ndarray            # conditional mode of the spherical random effects
    eta: np.ndarray
    mu: np.ndarray
    cond_loglik: float       # log p(y | u*)
    ussq: float              # ||u*||^2
    ldL2: float              # log|L|^2 (Fisher weights)
    factor: "BlockedCholesky"  # of Lambda'Z'WZ Lambda + I (Fisher weights)
    ZL: "ZLambda"              # Z Lambda by rows
    iterations: int

    @cached_property
    def L(self) -> np.ndarray:
        """Lower Cholesky factor of Lambda'Z'WZ Lambda + I (dense, built on first use)."""
        return self.factor.dense()

    @property
    def deviance(self) -> float:
        """The Laplace deviance -2 log L."""
        return -2.0 * self.loglik


class ZLambda:
    """Z Lambda_theta by rows: row i has the values vals[i] in the columns cols[i] (the
    terms' covariates times T_k, at the row's level of each term). Products and the
    weighted cross-product cost O(n R^2) (R = sum p_k) without a dense n x q matrix."""

    def __init__(self, prob: GlmmProblem, theta):
        factors = theta_to_factors(np.asarray(theta, float), prob.terms)
        self.vals = np.column_stack([t.Z @ T for t, T in zip(prob.terms, factors)])
        self.cols = prob.zl_cols
        self.pairs = prob.zl_pairs
        self.n, self.q = prob.n, prob.q
        R = self.vals.shape[1]
        self.outer = (self.vals[:, :, None] * self.vals[:, None, :]).reshape(self.n, R * R)

    def __matmul__(self, u):                       # (Z Lambda) u
        return np.einsum("ir,ir->i", self.vals, u[self.cols])

    def rmatvec(self, v):                          # (Z Lambda)' v
        return np.bincount(self.cols.ravel(), weights=(self.vals * v[:, None]).ravel(),
                           minlength=self.q)

    def crossprod(self, w):                        # (Z Lambda)' diag(w) (Z Lambda) + I
        H = np.bincount(self.pairs.ravel(), weights=(self.outer * w[:, None]).ravel(),
                        minlength=self.q * self.q).reshape(self.q, self.q)
        H[np.diag_indices(self.q)] += 1.0
        return H

    def sparse(self) -> sp.csr_matrix:
        R = self.cols.shape[1]
        return sp.csr_matrix((self.vals.ravel(), self.cols.ravel(),
                              np.arange(0, self.n * R + 1, R)), shape=(self.n, self.q))


def laplace(prob: GlmmProblem, beta, theta, phi: float = 1.0, u0=None, tol: float = 1e-12,
            max_iter: int = 200) -> LaplaceFit:
    """Laplace approximation by penalized Newton iterations (with step halving) for u*."""
    beta = np.asarray(beta, float)
    ZL = ZLambda(prob, theta)
    eta0 = prob.X @ beta + prob.offset
    q = prob.q
    u = np.zeros(q) if u0 is None else np.array(u0, float)

    def evaluate(u):
        eta = eta0 + ZL @ u
        lp, s, wn, wf = obs_terms(prob.family, prob.link, eta, prob.y, prob.ntr, phi)
        return eta, lp, s, wn, wf, float(np.sum(lp) - 0.5 * u @ u)

    eta, lp, s, wn, wf, g = evaluate(u)
    q1, p1 = prob.terms[0].q, prob.terms[0].p
    it = 0
    for it in range(1, max_iter + 1):
        grad = ZL.rmatvec(s) - u
        delta = BlockedCholesky(ZL.crossprod(wn), q1, p1).solve(grad)
        step = 1.0
        for _ in range(40):
            cand = evaluate(u + step * delta)
            if cand[-1] >= g - 1e-12 * (1 + abs(g)):
                break
            step *= 0.5
        u = u + step * delta
        eta, lp, s, wn, wf, g = cand
        if step * np.max(np.abs(delta), initial=0.0) < tol * (1 + np.max(np.abs(u), initial=0.0)):
            break
    factor = BlockedCholesky(ZL.crossprod(wf), q1, p1)
    ldL2 = factor.logdet
    mu = linkinv(prob.link, eta)
    cond = float(np.sum(lp))
    if prob.family == "Gamma":
        # lme4: mode and weights with shape 1, the density at dispersion dev / n, aic's + 2
        disp = gamma_dispersion(prob.y, mu)
        cond = float(np.sum(obs_terms("Gamma", prob.link, eta, prob.y, prob.ntr, 1 / disp)[0]))
        g = cond - 1.0 - 0.5 * float(u @ u)
    return LaplaceFit(loglik=g - 0.5 * ldL2, u=u, eta=eta, mu=mu, cond_loglik=cond,
                      ussq=float(u @ u), ldL2=ldL2, factor=factor, ZL=ZL, iterations=it)


class BlockedCholesky:
    """Cholesky factor of H = Lambda'Z'WZ Lambda + I by elimination of the first term.

    The first term's block of H is block diagonal (one p1 x p1 block per level), so the factor
    is [[L_A, 0], [L21, L_S]] with L_A the per-level factors, L21 = B L_A^-T (B = H[q1:, :q1])
    and L_S the factor of the Schur complement S = C - L21 L21': one dense factorization of the
    q - q1 columns of the other terms instead of all q. Solves and the log-determinant use the
    blocks; ``dense()`` assembles the full lower factor."""

    def __init__(self, H: np.ndarray, q1: int, p1: int):
        q = H.shape[0]
        self.q, self.q1, self.p1 = q, q1, p1
        self.l1 = l1 = q1 // p1
        lev = np.arange(l1)
        if p1 == 1:
            la = np.sqrt(np.diagonal(H)[:q1].copy())
            if not np.all(np.isfinite(la)) or np.any(la <= 0):
                raise np.linalg.LinAlgError("matrix is not positive definite")
            self.LA = la.reshape(l1, 1, 1)
            self.L21 = H[q1:, :q1] / la[None, :]
        else:
            A = H[:q1, :q1].reshape(l1, p1, l1, p1)[lev, :, lev, :]  # (l1, p1, p1)
            self.LA = np.linalg.cholesky(A)
            LAinv = np.linalg.inv(self.LA)
            self.L21 = np.einsum("qjr,jsr->qjs", H[q1:, :q1].reshape(q - q1, l1, p1),
                                 LAinv).reshape(q - q1, q1)
        self.LS = (np.linalg.cholesky(H[q1:, q1:] - self.L21 @ self.L21.T) if q > q1
                   else np.zeros((0, 0)))
        self.logdet = 2.0 * float(np.sum(np.log(np.diagonal(self.LA, axis1=1, axis2=2)))
                                  + np.sum(np.log(np.diag(self.LS))))

    def _la_solve(self, r: np.ndarray, trans: bool) -> np.ndarray:
        if self.p1 == 1:
            return r / self.LA[:, 0, 0]
        R = r.reshape(self.l1, self.p1, 1)
        LA = np.swapaxes(self.LA, 1, 2) if trans else self.LA
        return np.linalg.solve(LA, R).reshape(-1)

    def solve(self, r: np.ndarray) -> np.ndarray:
        """H^-1 r."""
        q1 = self.q1
        y1 = self._la_solve(r[:q1], trans=False)
        if self.q == q1:
            return self._la_solve(y1, trans=True)
        y2 = sla.solve_triangular(self.LS, r[q1:] - self.L21 @ y1, lower=True)
        x2 = sla.solve_triangular(self.LS, y2, lower=True, trans="T")
        x1 = self._la_solve(y1 - self.L21.T @ x2, trans=True)
        return np.concatenate([x1, x2])

    def dense(self) -> np.ndarray:
        q, q1, p1 = self.q, self.q1, self.p1
        L = np.zeros((q, q))
        blk = np.arange(self.l1)[:, None] * p1 + np.arange(p1)[None, :]
        L[blk[:, :, None], blk[:, None, :]] = self.LA
        L[q1:, :q1] = self.L21
        L[q1:, q1:] = self.LS
        return L


def blocked_cholesky(H: np.ndarray, q1: int, p1: int) -> np.ndarray:
    """The dense lower Cholesky factor of H by elimination of the first term (BlockedCholesky)."""
    return BlockedCholesky(H, q1, p1).dense()


def gamma_dispersion(y, mu) -> float:
    """lme4's (R's Gamma()$aic) dispersion: the residual deviance over n."""
    return float(2 * np.sum((y - mu) / mu - np.log(y / mu)) / len(y))


def split_params(prob: GlmmProblem, params):
    params = np.asarray(params, float)
    p, nt = prob.p, prob.n_theta
    beta, theta = params[:p], params[p:p + nt]
    phi = float(np.exp(params[p + nt])) if prob.has_phi else 1.0
    return beta, theta, phi


def laplace_deviance(prob: GlmmProblem, params, u0=None) -> float:
    """-2 log L at params = (beta, theta[, log phi])."""
    beta, theta, phi = split_params(prob, params)
    return laplace(prob, beta, theta, phi, u0=u0).deviance


# ---------------------------------------------------------------------------------------------
# GLM starting values (IRLS)
# ---------------------------------------------------------------------------------------------


def glm_irls(prob: GlmmProblem, phi: float = 1.0, epsilon: float = 1e-10, maxit: int = 100):
    """Fixed effects of the GLM without random effects: R's glm.fit (`bayesmix.irls.irls`)
    from R's starting values, at a fixed negative binomial size phi."""
    if prob.p == 0:
        return np.zeros(0)
    y, wt = _r_scale(prob.family, prob.y, prob.ntr)
    mu0 = FAMILIES[prob.family].mustart(y, wt)  # R's initialize
    with warnings.catch_warnings():       # only a start: glm.fit's own warnings do not apply
        warnings.simplefilter("ignore")
        return irls(prob.X, y, wt, prob.offset, Family(prob.family, prob.link), mu0,
                    epsilon, maxit, phi=phi).beta


def _phi_ml(prob: GlmmProblem, eta) -> float:
    """ML dispersion parameter (NB theta or Gamma shape) given the linear predictor."""
    def negll(lphi):
        return -float(np.sum(obs_terms(prob.family, prob.link, eta, prob.y, prob.ntr,
                                       np.exp(lphi))[0]))
    res = optimize.minimize_scalar(negll, bounds=(-10, 15), method="bounded",
                                   options={"xatol": 1e-8})
    return float(np.exp(res.x))


def glm_start(prob: GlmmProblem) -> tuple[np.ndarray, float]:
    """beta (and phi) of the GLM fit without random effects: lme4's starting values."""
    if not prob.has_phi:
        return glm_irls(prob), 1.0
    phi = 1.0
    beta = glm_irls(prob, phi)
    for _ in range(25):
        phi_new = _phi_ml(prob, prob.X @ beta + prob.offset)
        beta = glm_irls(prob, phi_new)
        done = abs(np.log(phi_new) - np.log(phi)) < 1e-6
        phi = phi_new
        if done:
            break
    return beta, phi


# ---------------------------------------------------------------------------------------------
# Estimates at the optimum
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GlmmEstimates:
    """glmer estimates at (beta, theta, phi); per-term lists follow the term order."""
    beta: np.ndarray
    theta: np.ndarray           # lme4's representative (non-negative diagonals)
    phi: float                  # NB theta / Gamma shape; 1 otherwise
    vcov: np.ndarray
    se: np.ndarray
    hessian: np.ndarray         # deviance Hessian in (theta, beta), lme4's derivs$Hessian
    gradient: np.ndarray        # deviance gradient in (beta, theta[, log phi])
    laplace: LaplaceFit
    logLik: float
    deviance_resid: np.ndarray  # deviance residuals at the conditional modes
    n_params: int
    ranef: list
    factors: list
    varcorr_cov: list
    varcorr_sd: list
    varcorr_cor: list
    singular: bool
    sigma: float = 1.0          # Gamma: lme4's sqrt(pwrss / n); 1 otherwise
    extra: dict = field(default_factory=dict)
    # the terms the conditional variances are computed for, on first use: as lme4 computes
    # them in ranef(condVar = TRUE) only (they need L^-1, q x q: 0.6 s of a 10^5-row fit)
    cv_terms: Any = field(default=None, repr=False)

    @cached_property
    def condvar(self) -> list:
        """Per term, the conditional covariance of each level's effects: Lambda (L L')^-1
        Lambda' scaled by sigma^2, level by level (levels x p x p)."""
        Linv = sla.solve_triangular(self.laplace.L, np.eye(self.laplace.L.shape[0]), lower=True)
        out, start = [], 0
        for t, T in zip(self.cv_terms, self.factors):
            ql = t.p * t.n_levels
            cols = Linv[:, start:start + ql].reshape(len(Linv), t.n_levels, t.p)  # L^-1's
            G = np.einsum("mji,mjk->jik", cols, cols)  # per level: C_j'C_j
            out.append(self.sigma ** 2 * np.einsum("ri,jik,sk->jrs", T, G, T))
            start += ql
        return out

    @cached_property
    def condsd(self) -> list:
        return [np.sqrt(np.einsum("jii->ji", cv)) for cv in self.condvar]

    @property
    def u(self) -> np.ndarray:
        return self.laplace.u

    @property
    def eta(self) -> np.ndarray:
        return self.laplace.eta

    @property
    def mu(self) -> np.ndarray:
        return self.laplace.mu


def _fd_hessian(f, x, h):
    """Central-difference Hessian (lme4's deriv12 layout)."""
    k = len(x)
    f0 = f(x)
    H = np.empty((k, k))
    fp = np.empty(k)
    fm = np.empty(k)
    for i in range(k):
        e = np.zeros(k)
        e[i] = h
        fp[i], fm[i] = f(x + e), f(x - e)
        H[i, i] = (fp[i] - 2 * f0 + fm[i]) / h ** 2
    for i in range(k):
        for j in range(i):
            ei = np.zeros(k)
            ej = np.zeros(k)
            ei[i] = h
            ej[j] = h
            H[i, j] = H[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej)
                                 + f(x - ei - ej)) / (4 * h ** 2)
    return H, (fp - fm) / (2 * h)


def glmm_estimates(prob: GlmmProblem, beta, theta, phi: float = 1.0,
                   hessian_step: float = HESSIAN_STEP, gradient=None,
                   hessian=None) -> GlmmEstimates:
    """Conditional modes and variances, Wald covariance, logLik and deviance at the optimum.

    ``gradient``: the deviance gradient in (beta, theta[, log phi]) when known (Stan's, at the
    optimum); otherwise it is computed by central differences. ``hessian``: the deviance's
    Hessian in (theta, beta) when known (the driver's differences of Stan's gradient);
    otherwise central differences of the deviance, as lme4's deriv12."""
    with one_blas_thread():
        return _glmm_estimates(prob, beta, theta, phi, hessian_step, gradient, hessian)


def _glmm_estimates(prob: GlmmProblem, beta, theta, phi: float,
                    hessian_step: float, gradient=None, hessian=None) -> GlmmEstimates:
    theta = normalize_theta(np.asarray(theta, float), prob.terms)
    beta = np.asarray(beta, float)
    fit = laplace(prob, beta, theta, phi)
    p, nt = prob.p, prob.n_theta

    # Hessian of the deviance in (theta, beta) at fixed phi, as lme4's calc.derivs
    def dev_tb(x):
        return laplace(prob, x[nt:], x[:nt], phi, u0=fit.u).deviance

    x0 = np.concatenate([theta, beta])
    H = np.asarray(hessian, float) if hessian is not None else _fd_hessian(dev_tb, x0, hessian_step)[0]
    try:
        Hinv = np.linalg.inv(H)
        vcov = 2 * Hinv[nt:, nt:]
        vcov = (vcov + vcov.T) / 2
        if p and np.min(np.linalg.eigvalsh(vcov)) <= 0:
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        warnings.warn("the finite-difference Hessian is not positive definite; standard "
                      "errors from the fixed-theta information (R_X) instead",
                      stacklevel=user_stacklevel())
        vcov = _vcov_rx(prob, fit)
    se = np.sqrt(np.diag(vcov))

    # deviance gradient in (beta, theta[, log phi]) for the convergence check
    params = np.concatenate([beta, theta] + ([[np.log(phi)]] if prob.has_phi else []))
    h = 1e-5
    grad = np.empty(len(params))
    if gradient is not None and len(gradient) == len(params):
        grad[:] = gradient
    for i in range(len(params) if gradient is None or len(gradient) != len(params) else 0):
        e = np.zeros(len(params))
        e[i] = h
        grad[i] = (laplace_deviance(prob, params + e, u0=fit.u)
                   - laplace_deviance(prob, params - e, u0=fit.u)) / (2 * h)

    # lme4's scale for Gamma: sigma^2 = (Pearson chi^2 + ||u||^2) / n, which multiplies the
    # variance components and conditional variances (not the conditional modes)
    sigma = 1.0
    if prob.family == "Gamma":
        wrss = float(np.sum(((prob.y - fit.mu) / fit.mu) ** 2))
        sigma = float(np.sqrt((wrss + fit.ussq) / prob.n))
    s2 = sigma ** 2

    # conditional modes b = Lambda u (their variances: GlmmEstimates.condvar, on first use)
    factors = theta_to_factors(theta, prob.terms)
    ranef = []
    start = 0
    for t, T in zip(prob.terms, factors):
        ql = t.p * t.n_levels
        ranef.append(fit.u[start:start + ql].reshape(t.n_levels, t.p) @ T.T)
        start += ql
    varcorr_cov, varcorr_sd, varcorr_cor = varcorr(factors, s2)
    singular = singular_factors(factors)
    dres = deviance_residuals(prob.family, prob.y, fit.mu, prob.ntr, phi)
    # the family parameter counts (glmer.nb's theta, Gamma's dispersion)
    n_params = p + nt + int(FAMILIES[prob.family].dispersion is not None)
    return GlmmEstimates(beta=beta, theta=theta, phi=phi, vcov=vcov, se=se, hessian=H,
                         gradient=grad, laplace=fit, logLik=fit.loglik, deviance_resid=dres,
                         n_params=n_params, ranef=ranef, cv_terms=prob.terms,
                         factors=factors, varcorr_cov=varcorr_cov, varcorr_sd=varcorr_sd,
                         varcorr_cor=varcorr_cor, singular=singular, sigma=sigma)


def _vcov_rx(prob: GlmmProblem, fit: LaplaceFit) -> np.ndarray:
    """Fallback: (X'WX - X'W ZL (L L')^-1 ZL'WX)^-1 at the mode (lme4's use.hessian = FALSE)."""
    _, _, _, wf = obs_terms(prob.family, prob.link, fit.eta, prob.y, prob.ntr)
    WX = prob.X * wf[:, None]
    RZX = sla.solve_triangular(fit.L, np.asarray(fit.ZL.sparse().T @ WX), lower=True)
    return np.linalg.inv(prob.X.T @ WX - RZX.T @ RZX)
