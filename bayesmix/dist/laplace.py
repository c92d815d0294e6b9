"""The Laplace approximation of a distributional model in numpy, mirroring stan/dist_laplace.stan:
per-observation first and second derivatives of the log density with respect to every linear
predictor (closed form, chained through the links), the conditional mode of the spherical
random effects by Newton's method, and the Laplace log likelihood

    log L ~= sum_i l(y_i | eta_i(u*)) - |u*|^2 / 2 - log|H(u*)| / 2,
    H = I + sum_i (Z Lambda)_i' W_i (Z Lambda)_i,   W_i = -d^2 l_i / d eta_i d eta_i',

where eta_i stacks the row's D linear predictors and (Z Lambda)_i maps u to their random
parts (b = Lambda u, u ~ N(0, I), Lambda block diagonal with each term's lower Cholesky
factor of its covariance repeated per level). It is glmmTMB's (TMB's) estimator: the exact
(observed) Hessian of the joint log density in the random effects at their mode.

`bayesmix.dist.ml` uses it for the starting values (a fit without random effects and the
modes at the start), the conditional modes at the optimum and the finite-difference Hessian
behind the standard errors of CmdStan runs. Values of l are `bayesmix.families`' log densities
(the shared definition of the families); derivatives are written out here and checked against
finite differences of those densities in tests/test_dist_ml.py. As in the Stan program, H is
block diagonal when every term has the same grouping factor (one R x R block per level,
factored as a batch) and dense otherwise; Newton uses the exact H where it is positive definite
and the projected weights (`_psd_weights`) where it is not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from ..design.dist import DistDesign
from ..families import FAMILIES, get_link

# ---------------------------------------------------------------- links


def link_parts(link: str, eta: np.ndarray):
    """(p, dp/deta, d^2p/deta^2) of a parameter p = linkinv(eta) (mean or distributional link)."""
    eta = np.asarray(eta, float)
    if link == "identity":
        return eta, np.ones_like(eta), np.zeros_like(eta)
    if link in ("log", "logm1"):
        e = np.exp(eta)
        return (e if link == "log" else 1.0 + e), e, e
    if link == "inverse":
        return 1.0 / eta, -1.0 / eta ** 2, 2.0 / eta ** 3
    if link == "sqrt":
        return eta ** 2, 2.0 * eta, np.full_like(eta, 2.0)
    if link == "logit":
        p = special.expit(eta)
        d1 = p * (1.0 - p)
        return p, d1, d1 * (1.0 - 2.0 * p)
    if link == "probit":
        d1 = np.exp(-0.5 * eta ** 2) / np.sqrt(2.0 * np.pi)
        return special.ndtr(eta), d1, -eta * d1
    if link == "cloglog":
        e = np.exp(eta)
        d1 = np.exp(eta - e)
        return -np.expm1(-e), d1, d1 * (1.0 - e)
    raise ValueError(f"unknown link {link!r}")


# ---------------------------------------------------------------- log density


def log_lik(family, y, trials, par: np.ndarray, cut=None) -> np.ndarray:
    """Per-row log density (all constants) at the natural parameters par (n, D): mu first,
    then the family's dpars in FamilySpec.dpars order; for cumulative par[:, 0] is eta."""
    mu = par[:, 0]
    spec = family.spec
    if family.name == "cumulative":
        return family.log_density(y, mu, cutpoints=cut)
    if family.name in FAMILIES:  # gaussian sigma, negbinomial shape (its phi), Gamma shape
        return family.log_density(y, mu, trials, phi=par[:, 1])
    kw = {d.name: par[:, j + 1] for j, d in enumerate(spec.dpars)}
    return family.log_density(y, mu, trials, **kw)


# ---------------------------------------------------------------- derivatives


def _count_l0(mu, k):
    """log f(0) of the count part and its derivatives in (mu[, k]): (L0, d1 list, d2 dict)."""
    if k is None:
        return -mu, [-np.ones_like(mu)], {(0, 0): np.zeros_like(mu)}
    km = k + mu
    L0 = k * (np.log(k) - np.log(km))
    d_mu = -k / km
    d_k = np.log(k) - np.log(km) + mu / km
    return L0, [d_mu, d_k], {(0, 0): k / km ** 2, (1, 1): 1.0 / k - 1.0 / km - mu / km ** 2,
                             (0, 1): -mu / km ** 2}


def _count_logf(y, mu, k):
    """First and second derivatives of log f(y | mu[, k]) (Poisson or NB2) in (mu[, k])."""
    if k is None:
        return [y / mu - 1.0], {(0, 0): -y / mu ** 2}
    km = k + mu
    d_mu = y / mu - (y + k) / km
    d_k = special.digamma(y + k) - special.digamma(k) + np.log(k) + 1.0 - np.log(km) - (y + k) / km
    return [d_mu, d_k], {(0, 0): -y / mu ** 2 + (y + k) / km ** 2,
                         (1, 1): (special.polygamma(1, y + k) - special.polygamma(1, k) + 1.0 / k
                                  - 1.0 / km - (mu - y) / km ** 2),
                         (0, 1): (y - mu) / km ** 2}


def natural_derivs(name: str, y, trials, par: np.ndarray):
    """dl/dp (n, D) and d^2 l/dp dp' (n, D, D) in the natural parameters (not cumulative)."""
    n, D = par.shape
    g = np.zeros((n, D))
    h = np.zeros((n, D, D))
    mu = par[:, 0]

    def put(a, b, v):
        h[:, a, b] = v
        h[:, b, a] = v

    if name in ("gaussian", "lognormal"):
        yy = np.log(y) if name == "lognormal" else y
        s = par[:, 1]
        z = (yy - mu) / s
        g[:, 0], g[:, 1] = z / s, (z * z - 1.0) / s
        put(0, 0, -1.0 / s ** 2)
        put(1, 1, (1.0 - 3.0 * z * z) / s ** 2)
        put(0, 1, -2.0 * z / s ** 2)
    elif name == "student":
        s, v = par[:, 1], par[:, 2]
        r = y - mu
        s2 = s * s
        A = v * s2 + r * r
        g[:, 0] = (v + 1.0) * r / A
        g[:, 1] = v * (r * r - s2) / (s * A)
        g[:, 2] = (0.5 * (special.digamma((v + 1.0) / 2.0) - special.digamma(v / 2.0)) + 0.5
                   - 0.5 * np.log1p(r * r / (v * s2)) - (v + 1.0) * s2 / (2.0 * A))
        put(0, 0, (v + 1.0) * (r * r - v * s2) / A ** 2)
        put(1, 1, -v / s2 - (v + 1.0) * v * (A - 2.0 * v * s2) / A ** 2)
        put(2, 2, 0.25 * (special.polygamma(1, (v + 1.0) / 2.0) - special.polygamma(1, v / 2.0))
            + 0.5 / v - s2 / A + (v + 1.0) * s2 * s2 / (2.0 * A ** 2))
        put(0, 1, -2.0 * (v + 1.0) * r * v * s / A ** 2)
        put(0, 2, r / A - (v + 1.0) * r * s2 / A ** 2)
        put(1, 2, 1.0 / s - (2.0 * v + 1.0) * s / A + (v + 1.0) * v * s * s2 / A ** 2)
    elif name in ("beta", "beta_binomial"):
        phi = par[:, 1]
        a, b = mu * phi, (1.0 - mu) * phi
        if name == "beta":
            Da = np.log(y) - special.digamma(a)
            Db = np.log1p(-y) - special.digamma(b)
            Dp = special.digamma(phi)
            Taa, Tbb = -special.polygamma(1, a), -special.polygamma(1, b)
            Tpp = special.polygamma(1, phi)
        else:
            n_ = trials
            Da = special.digamma(y + a) - special.digamma(a)
            Db = special.digamma(n_ - y + b) - special.digamma(b)
            Dp = special.digamma(phi) - special.digamma(n_ + phi)
            Taa = special.polygamma(1, y + a) - special.polygamma(1, a)
            Tbb = special.polygamma(1, n_ - y + b) - special.polygamma(1, b)
            Tpp = special.polygamma(1, phi) - special.polygamma(1, n_ + phi)
        g[:, 0] = phi * (Da - Db)
        g[:, 1] = mu * Da + (1.0 - mu) * Db + Dp
        put(0, 0, phi * phi * (Taa + Tbb))
        put(1, 1, mu * mu * Taa + (1.0 - mu) ** 2 * Tbb + Tpp)
        put(0, 1, (Da - Db) + phi * (mu * Taa - (1.0 - mu) * Tbb))
    elif name in ("poisson", "negbinomial"):
        k = par[:, 1] if name == "negbinomial" else None
        d1, d2 = _count_logf(y, mu, k)
        for a, v in enumerate(d1):
            g[:, a] = v
        for (a, b), v in d2.items():
            put(a, b, v)
    elif name == "Gamma":
        al = par[:, 1]
        g[:, 0] = al * (y - mu) / mu ** 2
        g[:, 1] = np.log(al) + 1.0 - np.log(mu) - special.digamma(al) + np.log(y) - y / mu
        put(0, 0, al / mu ** 2 - 2.0 * al * y / mu ** 3)
        put(1, 1, 1.0 / al - special.polygamma(1, al))
        put(0, 1, (y - mu) / mu ** 2)
    elif name in ("zero_inflated_poisson", "zero_inflated_negbinomial",
                  "hurdle_poisson", "hurdle_negbinomial"):
        nb = name.endswith("negbinomial")
        k = par[:, 1] if nb else None
        c = 2 if nb else 1           # column of zi / hu; count parameters 0..c-1
        pz = par[:, c]
        zero = y == 0
        yy = np.where(zero, 1.0, y)  # any positive count where y = 0 (masked below)
        d1, d2 = _count_logf(yy, mu, k)
        L0, e1, e2 = _count_l0(mu, k)
        pos = ~zero
        if name.startswith("zero"):
            F0 = np.exp(L0)
            P = pz + (1.0 - pz) * F0
            rho = (1.0 - pz) * F0 / P
            g[:, c] = np.where(zero, (1.0 - F0) / P, -1.0 / (1.0 - pz))
            put(c, c, np.where(zero, -((1.0 - F0) / P) ** 2, -1.0 / (1.0 - pz) ** 2))
            for a in range(c):
                g[:, a] = np.where(zero, rho * e1[a], d1[a])
                put(a, c, np.where(zero, -F0 * e1[a] / P ** 2, 0.0))
                for b in range(a, c):
                    put(a, b, np.where(zero, rho * e2[(a, b)] + rho * (1.0 - rho) * e1[a] * e1[b],
                                       d2[(a, b)]))
        else:
            tau = 1.0 / np.expm1(-L0)    # f(0) / (1 - f(0))
            g[:, c] = np.where(zero, 1.0 / pz, -1.0 / (1.0 - pz))
            put(c, c, np.where(zero, -1.0 / pz ** 2, -1.0 / (1.0 - pz) ** 2))
            for a in range(c):
                g[:, a] = np.where(pos, d1[a] + tau * e1[a], 0.0)
                for b in range(a, c):
                    put(a, b, np.where(pos, d2[(a, b)] + tau * e2[(a, b)]
                                       + tau * (1.0 + tau) * e1[a] * e1[b], 0.0))
    else:
        raise ValueError(f"no derivatives for family {name!r}")
    return g, h


_NOISE = {  # cumulative: log f, log F, log(1 - F), h = f'/f of the latent noise
    "logit": (lambda x: -np.abs(x) - 2.0 * np.log1p(np.exp(-np.abs(x))),
              lambda x: -np.logaddexp(0.0, -x), lambda x: -np.logaddexp(0.0, x),
              lambda x: -np.tanh(x / 2.0)),
    "probit": (lambda x: -0.5 * x * x - 0.5 * np.log(2.0 * np.pi), special.log_ndtr,
               lambda x: special.log_ndtr(-x), lambda x: -x),
}


def cumulative_derivs(link: str, y, eta, cut):
    """(log P, dl/deta, d^2l/deta^2) of P(y = k) = F(c_k - eta) - F(c_{k-1} - eta)."""
    lf, lF, lS, hfun = _NOISE[link]
    ext = np.concatenate([[-np.inf], np.asarray(cut, float), [np.inf]])
    k = np.asarray(y, int)
    b = ext[k] - eta                     # upper bound
    a = ext[k - 1] - eta                 # lower bound
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        upper = lS(a) + np.log(-np.expm1(lS(b) - lS(a)))   # from the upper tail
        lower = lF(b) + np.log(-np.expm1(lF(a) - lF(b)))
        lp = np.where(a > 0, upper, lower)
        rb = np.where(np.isfinite(b), np.exp(lf(np.where(np.isfinite(b), b, 0.0)) - lp), 0.0)
        ra = np.where(np.isfinite(a), np.exp(lf(np.where(np.isfinite(a), a, 0.0)) - lp), 0.0)
        hb = np.where(np.isfinite(b), hfun(np.where(np.isfinite(b), b, 0.0)), 0.0)
        ha = np.where(np.isfinite(a), hfun(np.where(np.isfinite(a), a, 0.0)), 0.0)
    d1 = ra - rb
    d2 = rb * hb - ra * ha - d1 * d1
    return lp, d1, d2


def eta_derivs(family, links, y, trials, eta: np.ndarray, cut=None):
    """(l (n,), dl/deta (n, D), d^2 l/deta deta' (n, D, D)) at the linear predictors eta."""
    if family.name == "cumulative":
        lp, d1, d2 = cumulative_derivs(family.link, y, eta[:, 0], cut)
        return lp, d1[:, None], d2[:, None, None]
    parts = [link_parts(lk, eta[:, d]) for d, lk in enumerate(links)]
    par = np.column_stack([p[0] for p in parts])
    p1 = np.column_stack([p[1] for p in parts])
    p2 = np.column_stack([p[2] for p in parts])
    gn, hn = natural_derivs(family.name, y, trials, par)
    g = gn * p1
    h = hn * p1[:, :, None] * p1[:, None, :]
    D = eta.shape[1]
    h[:, np.arange(D), np.arange(D)] += gn * p2
    return log_lik(family, y, trials, par, cut), g, h


# ---------------------------------------------------------------- the problem


def theta_size(term) -> int:
    """Entries of theta for a term: its factor's lower triangle, the diagonal only when
    uncorrelated (the program's cor_term)."""
    return term.p * (term.p + 1) // 2 if term.correlated and term.p > 1 else term.p


@dataclass(frozen=True, eq=False)
class DistProblem:
    """The arrays of a distributional model's Laplace likelihood (from a DistDesign)."""

    design: DistDesign
    y: np.ndarray
    trials: np.ndarray
    Xs: tuple            # per predictor (n, k_d)
    offset: np.ndarray
    links: tuple
    term_lp: tuple       # 0-based predictor of each term
    n_cut: int

    @classmethod
    def from_design(cls, design: DistDesign) -> "DistProblem":
        n = design.n
        return cls(design, np.asarray(design.y, float),
                   np.ones(n) if design.trials is None else np.asarray(design.trials, float),
                   tuple(p.X for p in design.predictors),
                   np.zeros(n) if design.offset is None else np.asarray(design.offset, float),
                   tuple(p.link for p in design.predictors), design.term_predictor,
                   max(len(design.categories) - 1, 0))

    @property
    def family(self):
        return self.design.family

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def D(self) -> int:
        return len(self.Xs)

    @property
    def k_beta(self) -> int:
        return sum(X.shape[1] for X in self.Xs)

    @property
    def terms(self):
        return self.design.terms

    @property
    def n_theta(self) -> int:
        return sum(theta_size(t) for t in self.terms)

    @property
    def q(self) -> int:
        return sum(t.p * t.n_levels for t in self.terms)

    @property
    def n_params(self) -> int:
        return self.k_beta + self.n_cut + self.n_theta

    def split(self, x):
        """(beta per predictor, cutpoints, theta) of the flat parameter vector
        x = [beta (predictor blocks in order), cutpoints, theta]."""
        x = np.asarray(x, float)
        betas, pos = [], 0
        for X in self.Xs:
            betas.append(x[pos:pos + X.shape[1]])
            pos += X.shape[1]
        cut = x[pos:pos + self.n_cut]
        return betas, cut, x[pos + self.n_cut:pos + self.n_cut + self.n_theta]

    def factors(self, theta):
        """Each term's lower Cholesky factor T_k (column-major lower triangle of theta)."""
        out, pos = [], 0
        for t in self.terms:
            T = np.zeros((t.p, t.p))
            if theta_size(t) == t.p:                  # diagonal (uncorrelated or p = 1)
                T[np.diag_indices(t.p)] = theta[pos:pos + t.p]
            else:
                rows, cols = np.tril_indices(t.p)
                order = np.lexsort((rows, cols))      # column-major
                T[rows[order], cols[order]] = theta[pos:pos + len(order)]
            out.append(T)
            pos += theta_size(t)
        return out

    def fixed_eta(self, betas) -> np.ndarray:
        eta = np.column_stack([X @ b for X, b in zip(self.Xs, betas)]) if self.D else None
        eta[:, 0] += self.offset
        return eta

    def zl(self, theta):
        """Row-wise non-zeros of Z Lambda: values (n, R), columns of u (n, R), predictor (R,)."""
        vals, cols, lps, q0 = [], [], [], 0
        for t, T, d in zip(self.terms, self.factors(theta), self.term_lp):
            vals.append(np.asarray(t.Z, float).reshape(self.n, -1) @ T)
            cols.append(q0 + np.asarray(t.index)[:, None] * t.p + np.arange(t.p)[None, :])
            lps += [d] * t.p
            q0 += t.p * t.n_levels
        if not vals:
            return np.zeros((self.n, 0)), np.zeros((self.n, 0), int), np.zeros(0, int)
        return np.column_stack(vals), np.column_stack(cols), np.asarray(lps, int)


@dataclass(frozen=True, eq=False)
class DistLaplace:
    loglik: float
    u: np.ndarray
    eta: np.ndarray
    cond_loglik: float
    logdet: float        # log|H|
    iterations: int


def _gradient(prob: DistProblem, zl, g, u) -> np.ndarray:
    """(Z Lambda)' g - u: the gradient of sum l - |u|^2 / 2 in u."""
    vals, cols, lps = zl
    return np.bincount(cols.ravel(), weights=(vals * g[:, lps]).ravel(), minlength=prob.q) - u


def _block_layout(prob: DistProblem):
    """(level of each row, bidx) when every term has the same grouping factor, so that H is
    block diagonal with one R x R block per level and u's entry for column a of Z at level j
    is u[bidx[a, j]]; None otherwise."""
    terms = prob.terms
    if not terms:
        return None
    level = np.asarray(terms[0].index)
    if any(t.n_levels != terms[0].n_levels or not np.array_equal(np.asarray(t.index), level)
           for t in terms[1:]):
        return None
    rows, q0 = [], 0
    for t in terms:
        for c in range(t.p):
            rows.append(q0 + np.arange(t.n_levels) * t.p + c)
        q0 += t.p * t.n_levels
    return level, np.array(rows)


def _newton_system(prob: DistProblem, zl, h, hp, grad, layout):
    """(H^-1 grad, log|H|) for H = I + sum_i (Z Lambda)_i' W_i (Z Lambda)_i, W_i = -h_i; the
    projected hp stands in where H is not positive definite (per level when blocked, else for
    the whole matrix). Raises LinAlgError when neither is."""
    vals, cols, lps = zl
    R = vals.shape[1]
    if layout is None:
        for hh in ((h,) if hp is h else (h, hp)):
            H = np.eye(prob.q)
            for r in range(R):
                for s in range(R):
                    np.add.at(H, (cols[:, r], cols[:, s]), -hh[:, lps[r], lps[s]]
                              * vals[:, r] * vals[:, s])
            try:
                Lc = np.linalg.cholesky(H)
            except np.linalg.LinAlgError:
                if hh is hp:
                    raise
                continue  # the projected weights next
            delta = np.linalg.solve(Lc.T, np.linalg.solve(Lc, grad))
            return delta, 2.0 * float(np.sum(np.log(np.diag(Lc))))
    level, bidx = layout
    nl = bidx.shape[1]

    def blocks(hh):
        B = np.zeros((nl, R, R))
        for a in range(R):
            for b in range(a + 1):
                B[:, a, b] = B[:, b, a] = np.bincount(
                    level, weights=-hh[:, lps[a], lps[b]] * vals[:, a] * vals[:, b], minlength=nl)
        return B + np.eye(R)

    B = blocks(h)
    if hp is not h:
        bad = ~(np.linalg.eigvalsh(B)[:, 0] > 1e-8)
        if bad.any():
            B[bad] = blocks(hp)[bad]
    Lc = np.linalg.cholesky(B)
    delta = np.empty(prob.q)
    delta[bidx.T] = np.linalg.solve(B, grad[bidx.T][..., None])[..., 0]
    return delta, 2.0 * float(np.sum(np.log(np.diagonal(Lc, axis1=1, axis2=2))))


def _psd_weights(h, lps_used):
    """The Newton step's weights: -h projected towards positive semi-definite per row
    (negative diagonals to 0; cross terms shrunk to |w_ab| <= sqrt(w_aa w_bb) / (m - 1))."""
    w = -h.copy()
    idx = np.asarray(sorted(set(lps_used)), int)
    m = len(idx)
    for a in idx:
        w[:, a, a] = np.maximum(w[:, a, a], 0.0)
    if m > 1:
        for i, a in enumerate(idx):
            for b in idx[i + 1:]:
                bound = np.sqrt(w[:, a, a] * w[:, b, b]) / (m - 1)
                w[:, a, b] = w[:, b, a] = np.clip(w[:, a, b], -bound, bound)
    return -w


def laplace(prob: DistProblem, x, u0=None, tol: float = 1e-10, max_iter: int = 200) -> DistLaplace:
    """The Laplace approximation at x = [beta, cutpoints, theta] (damped Newton for u*)."""
    betas, cut, theta = prob.split(x)
    eta0 = prob.fixed_eta(betas)
    zl = prob.zl(theta)
    vals, cols, lps = zl
    q = prob.q
    u = np.zeros(q) if u0 is None else np.array(u0, float)
    fam = prob.family

    def evaluate(u):
        eta = eta0.copy()
        for r in range(vals.shape[1]):
            eta[:, lps[r]] += vals[:, r] * u[cols[:, r]]
        with np.errstate(all="ignore"):
            gh = eta_derivs(fam, prob.links, prob.y, prob.trials, eta, cut)
        return eta, gh, float(np.sum(gh[0]) - 0.5 * u @ u)

    eta, gh, val = evaluate(u)
    if not np.isfinite(val) and u0 is not None:
        u = np.zeros(q)
        eta, gh, val = evaluate(u)
    layout = _block_layout(prob)
    it = 0
    for it in range(1, max_iter + 1):
        if q == 0:
            break
        grad = _gradient(prob, zl, gh[1], u)
        try:
            delta = _newton_system(prob, zl, gh[2], _psd_weights(gh[2], lps), grad, layout)[0]
        except np.linalg.LinAlgError:
            break
        step = 1.0
        for _ in range(40):
            cand = evaluate(u + step * delta)
            if cand[2] >= val - 1e-12 * (1 + abs(val)):
                break
            step *= 0.5
        u = u + step * delta
        eta, gh, val = cand
        if step * np.max(np.abs(delta)) < tol * (1 + np.max(np.abs(u))):
            break
    logdet = 0.0
    if q:
        # one exact Newton step at the end (the mode to the last digits), log|H| there
        try:
            delta = _newton_system(prob, zl, gh[2], gh[2], _gradient(prob, zl, gh[1], u),
                                   layout)[0]
            cand = evaluate(u + delta)
            if cand[2] >= val - 1e-12 * (1 + abs(val)):
                u, (eta, gh, val) = u + delta, cand
            logdet = _newton_system(prob, zl, gh[2], gh[2], np.zeros(q), layout)[1]
        except np.linalg.LinAlgError:
            logdet = np.nan
    cond = float(np.sum(gh[0]))
    return DistLaplace(val - 0.5 * logdet, u, eta, cond, logdet, it)


def fixed_only_loglik(prob: DistProblem, x):
    """(log L, gradient) of the model without random effects at x = [beta, cutpoints]
    (theta ignored): the starting values' fit. The gradient covers beta only; cutpoints'
    entries are by central differences."""
    betas, cut, _ = prob.split(np.concatenate([x, np.zeros(prob.n_theta)]))
    eta = prob.fixed_eta(betas)
    with np.errstate(all="ignore"):
        lp, g, _ = eta_derivs(prob.family, prob.links, prob.y, prob.trials, eta, cut)
    grad = np.concatenate([X.T @ g[:, d] for d, X in enumerate(prob.Xs)])
    if prob.n_cut:
        gc = np.empty(prob.n_cut)
        kb = prob.k_beta
        for j in range(prob.n_cut):
            e = np.zeros(len(x))
            e[kb + j] = 1e-6
            f = []
            for sgn in (1, -1):
                b2, c2, _ = prob.split(np.concatenate([x + sgn * e, np.zeros(prob.n_theta)]))
                with np.errstate(all="ignore"):
                    f.append(np.sum(eta_derivs(prob.family, prob.links, prob.y, prob.trials,
                                               prob.fixed_eta(b2), c2)[0])
                             if np.all(np.diff(c2) > 0) else -np.inf)
            gc[j] = (f[0] - f[1]) / 2e-6
        grad = np.concatenate([grad, gc])
    return float(np.sum(lp)), grad


def link_value(link: str, value: float) -> float:
    """linkfun of a mean or distributional link (the intercepts' starting values)."""
    if link == "logm1":
        return float(np.log(value - 1.0))
    return float(get_link(link).linkfun(np.asarray(value, float)))
