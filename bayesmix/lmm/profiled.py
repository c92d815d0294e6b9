"""Profiled deviance and estimates of a linear mixed model at a given theta (numpy / scipy).

Three independent routes to the same numbers (all checked against each other in the tests):

* ``profiled_deviance(..., method="dense")``: lme4's formulation (Bates et al. 2015, section 3)
  with a dense Cholesky of ``A = Lambda'Z'Z Lambda + I``; r2 from the residuals of the penalized
  least squares solution. Small and medium models; the reference implementation.
* ``method="block"`` and ``lmm_estimates``: block elimination of the first term (its part of
  ``A`` is block diagonal), one dense Cholesky of the reduced ``(q2 + p + 1)`` system ``S``.
* ``deviance_from_stan_data``: a line-by-line numpy mirror of ``stan/lmer.stan`` that uses only
  the Stan data dict (the ``K w`` product with the CSR arrays), to check the Stan program's algebra.

The objective is ``d(theta)``: ML ``log|A| + n (1 + log(2 pi r2 / n))``, REML
``log|A| + log|R_X|^2 + (n - p)(1 + log(2 pi r2 / (n - p)))``; lme4's ``logLik`` is ``-d / 2``
(for REML fits ``-REMLcrit / 2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Sequence

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .suffstats import (
    LmmSuffStats,
    _check_xy,
    as_terms,
    lambda_matrix,
    lmm_suffstats,
    normalize_theta,
    q2_is_diagonal,
    random_design,
)
from .theta import factors_of, singular_factors, varcorr
from .theta import is_singular as _is_singular

__all__ = [
    "deviance_formula",
    "profiled_deviance",
    "block_reduce",
    "deviance_from_stan_data",
    "LmmEstimates",
    "lmm_estimates",
    "is_singular",
]

LOG_2PI = float(np.log(2.0 * np.pi))


def deviance_formula(ldL2: float, ldRX2: float, r2: float, n: int, p: int, reml: bool) -> float:
    """ML deviance or REML criterion from its three pieces."""
    if reml:
        nmp = n - p
        return float(ldL2 + ldRX2 + nmp * (1.0 + LOG_2PI + np.log(r2 / nmp)))
    return float(ldL2 + n * (1.0 + LOG_2PI + np.log(r2 / n)))


# ---------------------------------------------------------------------------------------------
# Dense route (lme4's formulation)
# ---------------------------------------------------------------------------------------------


def _dense_pls(theta, X, y, terms):
    X, y = _check_xy(X, y)
    terms = as_terms(terms)
    n, p = X.shape
    ZL = (random_design(terms) @ lambda_matrix(theta, terms)).tocsc()
    q = ZL.shape[1]
    A = (ZL.T @ ZL).toarray() + np.eye(q)
    L = sla.cholesky(A, lower=True)
    cu = sla.solve_triangular(L, ZL.T @ y, lower=True)
    RZX = sla.solve_triangular(L, np.asarray(ZL.T @ X), lower=True)
    XtX_schur = X.T @ X - RZX.T @ RZX
    RX = sla.cholesky(XtX_schur, lower=False) if p else np.zeros((0, 0))
    if p:
        cb = sla.solve_triangular(RX, X.T @ y - RZX.T @ cu, trans="T", lower=False)
        beta = sla.solve_triangular(RX, cb, lower=False)
    else:
        beta = np.zeros(0)
    u = sla.solve_triangular(L, cu - RZX @ beta, trans="T", lower=True)
    resid = y - X @ beta - ZL @ u
    wrss = float(resid @ resid)
    ussq = float(u @ u)
    ldL2 = 2.0 * float(np.sum(np.log(np.diag(L))))
    ldRX2 = 2.0 * float(np.sum(np.log(np.abs(np.diag(RX))))) if p else 0.0
    return dict(n=n, p=p, beta=beta, u=u, wrss=wrss, ussq=ussq, r2=wrss + ussq,
                ldL2=ldL2, ldRX2=ldRX2, L=L, RX=RX)


# ---------------------------------------------------------------------------------------------
# Block elimination route (the algebra of lmm_functions.stan)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Block:
    factors: list  # T_k
    A1_chol: np.ndarray  # (l1, p1, p1) lower Cholesky of A_j = T1'C_jT1 + I
    W: np.ndarray  # (l1, p1, p1) W_j = T1 A_j^-1 T1'
    logdet1: float
    Lam2: sp.csr_matrix  # (q2, q2)
    S: np.ndarray  # (M, M) reduced system (scaled, + I on the u2 block)
    L: np.ndarray  # lower Cholesky of S
    ldL2: float  # log|A|
    diag22: bool = False  # S's q2 block diagonal (q2_is_diagonal): L's too, S not formed


def _lambda_terms(factors, l_term) -> sp.csr_matrix:
    if not factors:
        return sp.csr_matrix((0, 0))
    return sp.block_diag([sp.kron(sp.identity(l, format="csr"), sp.csr_matrix(T))
                          for T, l in zip(factors, l_term)], format="csr")


def block_reduce(theta: np.ndarray, ss: LmmSuffStats) -> _Block:
    """Eliminate term 1 block by block and factor the reduced system ``S = R R'`` (lower)."""
    p_term, l_term = ss.p_term, ss.l_term
    factors = factors_of(theta, p_term)
    T1 = factors[0]
    p1, l1 = p_term[0], l_term[0]
    A1 = np.einsum("ri,jrs,sk->jik", T1, ss.C1, T1) + np.eye(p1)[None]
    A1c = np.linalg.cholesky(A1)
    logdet1 = 2.0 * float(np.sum(np.log(np.diagonal(A1c, axis1=1, axis2=2))))
    # W_j = T1 A_j^-1 T1' = V'V with V = L_j^-1 T1'
    V = np.linalg.solve(A1c, np.broadcast_to(T1.T, (l1, p1, p1)))
    W = np.einsum("jri,jrk->jik", V, V)
    Wbig = sp.bsr_matrix((W, np.arange(l1), np.arange(l1 + 1)), shape=(ss.q1, ss.q1))
    Q = (ss.B.T @ (Wbig @ ss.B))
    q2 = ss.q2
    Lam2 = _lambda_terms(factors[1:], l_term[1:])
    if q2 and q2_is_diagonal(ss):
        # as lmer.stan's diag_q2 path: S's q2 block is diagonal, eliminate it column by column
        Q = sp.csr_matrix(Q)
        sq = Lam2.diagonal()
        d = sq ** 2 * (np.diag(ss.ZhZh)[:q2] - Q.diagonal()[:q2]) + 1.0
        Bx = ss.ZhZh[q2:, :] - Q[q2:, :].toarray()
        Lxq = Bx[:, :q2] * (sq / np.sqrt(d))
        L = np.zeros((ss.M, ss.M))
        L[np.arange(q2), np.arange(q2)] = np.sqrt(d)
        L[q2:, :q2] = Lxq
        Sxx = Bx[:, q2:]
        L[q2:, q2:] = np.linalg.cholesky(0.5 * (Sxx + Sxx.T) - Lxq @ Lxq.T)
        return _Block(factors=factors, A1_chol=A1c, W=W, logdet1=logdet1, Lam2=Lam2, S=None,
                      L=L, ldL2=logdet1 + float(np.sum(np.log(d))), diag22=True)
    Q = Q.toarray() if sp.issparse(Q) else np.asarray(Q)
    S = ss.ZhZh - Q
    S = 0.5 * (S + S.T)
    if q2:
        S[:q2, :] = Lam2.T @ S[:q2, :]
        S[:, :q2] = (Lam2.T @ S[:, :q2].T).T
        S[np.arange(q2), np.arange(q2)] += 1.0
    L = np.linalg.cholesky(S)
    ldL2 = logdet1 + 2.0 * float(np.sum(np.log(np.diag(L)[:q2])))
    return _Block(factors=factors, A1_chol=A1c, W=W, logdet1=logdet1, Lam2=Lam2, S=S, L=L,
                  ldL2=ldL2)


def _block_pieces(blk: _Block, ss: LmmSuffStats):
    return reduced_pieces(blk.L, ss.q2, ss.p)


def reduced_pieces(L: np.ndarray, q2: int, p: int):
    """(log|R_X|^2, r2, R) from the lower Cholesky factor L of the reduced system: R is its
    trailing (p + 1) block, R_X its leading p x p part and r2 the squared last diagonal."""
    R = L[q2:, q2:]
    ldRX2 = 2.0 * float(np.sum(np.log(np.abs(np.diag(R)[:p]))))
    r2 = float(R[p, p] ** 2)
    return ldRX2, r2, R


# ---------------------------------------------------------------------------------------------
# Public deviance functions
# ---------------------------------------------------------------------------------------------


def profiled_deviance(theta: np.ndarray, X: Any, y: Any, terms: Sequence[Any], reml: bool,
                      method: str = "dense", ss: LmmSuffStats | None = None) -> float:
    """Profiled ML deviance (``reml=False``) or REML criterion at ``theta`` (lme4's order).

    ``method="dense"`` is lme4's formulation with a dense ``A`` (q x q); ``"block"`` the block
    elimination used by the Stan program (pass ``ss`` to reuse the sufficient statistics).
    """
    if method == "dense":
        r = _dense_pls(theta, X, y, terms)
        return deviance_formula(r["ldL2"], r["ldRX2"], r["r2"], r["n"], r["p"], reml)
    if method == "block":
        if ss is None:
            ss = lmm_suffstats(X, y, terms)
        blk = block_reduce(theta, ss)
        ldRX2, r2, _ = _block_pieces(blk, ss)
        return deviance_formula(blk.ldL2, ldRX2, r2, ss.n, ss.p, reml)
    raise ValueError(f"unknown method {method!r}: choose 'dense' or 'block'")


def _csr_from_stan(m, n, w, v, u) -> sp.csr_matrix:
    return sp.csr_matrix((np.asarray(w, float), np.asarray(v, np.int64) - 1,
                          np.asarray(u, np.int64) - 1), shape=(m, n))


def deviance_from_stan_data(theta: np.ndarray, data: dict, return_parts: bool = False):
    """numpy mirror of ``stan/lmer.stan``: the objective computed from the Stan data dict only.

    Follows the Stan functions step by step (``B' W B`` product, lower-triangle symmetrisation,
    per-level scaling by Lambda_2, one Cholesky; the compact ``K w`` of the diagonal path) so
    that the program's algebra can be tested without compiling it.
    """
    theta = np.asarray(theta, float)
    P, M, Q2 = data["P"], data["M"], data["Q2"]
    p_term, l_term, starts = data["p_term"], data["l_term"], data["theta_start"]
    p1, l1 = p_term[0], l_term[0]
    C1 = np.asarray(data["C1"], float).reshape(l1, p1, p1)

    def T_of(k):  # term k's factor from its theta_start entry, as lmer.stan reads it
        p = p_term[k]
        return factors_of(theta[starts[k] - 1:starts[k] - 1 + p * (p + 1) // 2], [p])[0]

    # first term, block by block
    T1 = T_of(0)
    w = np.zeros(l1 * p1 * p1)
    logdet = 0.0
    for j in range(l1):
        Aj = T1.T @ C1[j] @ T1 + np.eye(p1)
        Lj = np.linalg.cholesky(Aj)
        V = sla.solve_triangular(Lj, T1.T, lower=True)
        Wj = V.T @ V
        w[j * p1 * p1:(j + 1) * p1 * p1] = Wj.ravel(order="F")
        logdet += 2.0 * np.sum(np.log(np.diag(Lj)))
    if data.get("diag_q2"):
        K = _csr_from_stan(data["K_rows"], l1 * p1 * p1, data["K_w"], data["K_v"], data["K_u"])
        return _diag_q2_deviance(theta, data, logdet, K @ w, return_parts)
    # Q = B' blockdiag(W_j) B, B rebuilt from its level-by-level layout
    cols = np.asarray(data["B_v"], np.int64) - 1
    lev = np.repeat(np.arange(l1), np.diff(np.asarray(data["B_u"], np.int64)))
    vals = np.asarray(data["B_w"], float).reshape(len(cols), p1)
    B = sp.csr_matrix((vals.T.ravel(), (np.tile(lev * p1, p1) + np.repeat(np.arange(p1), len(cols)),
                                        np.tile(cols, p1))), shape=(l1 * p1, M))
    W = sp.block_diag([w[j * p1 * p1:(j + 1) * p1 * p1].reshape(p1, p1, order="F")
                       for j in range(l1)], format="csr")
    Qlow = (B.T @ W @ B).toarray()
    ZhZh = _csr_from_stan(M, M, data["ZhZh_w"], data["ZhZh_v"], data["ZhZh_u"]).toarray()
    S = np.tril(ZhZh - Qlow)
    S = S + np.tril(S, -1).T
    # scale rows and columns of the first Q2 by Lambda_2, level block by level block
    pos = 0
    for k in range(1, len(p_term)):
        T = T_of(k)
        pk = p_term[k]
        for _ in range(l_term[k]):
            sl = slice(pos, pos + pk)
            S[sl, :] = T.T @ S[sl, :]
            S[:, sl] = S[:, sl] @ T
            pos += pk
    S = np.tril(S) + np.tril(S, -1).T
    S[np.arange(Q2), np.arange(Q2)] += 1.0
    L = np.linalg.cholesky(S)
    d = np.diag(L)
    ldL2 = logdet + 2.0 * np.sum(np.log(d[:Q2]))
    ldRX2 = 2.0 * np.sum(np.log(d[Q2:Q2 + P]))
    r2 = L[M - 1, M - 1] ** 2
    dev = deviance_formula(ldL2, ldRX2, r2, data["N"], P, bool(data["REML"]))
    if return_parts:
        return dev, dict(ldL2=float(ldL2), ldRX2=float(ldRX2), r2=float(r2), R=L[Q2:, Q2:])
    return dev


def _diag_q2_deviance(theta, data, logdet, kw, return_parts):
    """lmm_reduce's path for a diagonal q2 block (terms 2..K scalar): S's first Q2 columns
    are eliminated one by one, only the (P + 1) x (P + 1) trailing block is factorised."""
    P, M, Q2 = data["P"], data["M"], data["Q2"]
    starts, l_term = data["theta_start"], data["l_term"]
    sq = np.concatenate([np.full(l_term[k], theta[starts[k] - 1])
                         for k in range(1, len(l_term))])
    Z = _csr_from_stan(M, M, data["ZhZh_w"], data["ZhZh_v"], data["ZhZh_u"])
    d = sq ** 2 * (Z.diagonal()[:Q2] - kw[:Q2]) + 1.0
    B = Z[Q2:, :].toarray() - kw[Q2:].reshape(P + 1, M)
    Lxq = B[:, :Q2] * (sq / np.sqrt(d))
    C = np.tril(B[:, Q2:])
    C = C + np.tril(C, -1).T
    R = np.linalg.cholesky(C - Lxq @ Lxq.T)
    ldL2 = logdet + float(np.sum(np.log(d)))
    ldRX2 = 2.0 * np.sum(np.log(np.diag(R)[:P]))
    r2 = R[P, P] ** 2
    dev = deviance_formula(ldL2, ldRX2, r2, data["N"], P, bool(data["REML"]))
    if return_parts:
        return dev, dict(ldL2=float(ldL2), ldRX2=float(ldRX2), r2=float(r2), R=R)
    return dev


# ---------------------------------------------------------------------------------------------
# Estimates
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LmmEstimates:
    """lmer-equivalent estimates at a given theta (the optimum, when theta comes from a fit).

    Per-term lists follow the term order; ``ranef[k]`` and ``condsd[k]`` are (n_levels, p_k),
    ``condvar[k]`` (n_levels, p_k, p_k), ``varcorr_cov[k]`` (p_k, p_k) = sigma^2 T_k T_k'.
    """

    reml: bool
    n: int
    p: int
    theta: np.ndarray  # lme4's representative (non-negative diagonals)
    beta: np.ndarray
    vcov: np.ndarray
    se: np.ndarray
    sigma: float  # ML: sqrt(r2/n), REML: sqrt(r2/(n-p))
    sigma_ml: float
    sigma_reml: float
    pwrss: float  # r2 = wrss + ussq
    wrss: float
    ussq: float
    ldL2: float  # log|A|
    ldRX2: float  # log|R_X|^2
    objective: float  # ML deviance (reml=False) or REML criterion (reml=True)
    logLik: float  # -objective / 2, as lme4 reports
    deviance_ml: float  # ML deviance at theta, whatever the criterion
    reml_crit: float  # REML criterion at theta, whatever the criterion
    ranef: list
    factors: list  # T_k (normalised)
    varcorr_cov: list
    varcorr_sd: list
    varcorr_cor: list
    singular: bool
    fitted: np.ndarray  # X beta + Z b (conditional fitted values)
    # what the conditional variances are computed from, on first use (lme4 computes them
    # in ranef(condVar = TRUE) only: on InstEval they are most of the estimates' cost)
    cv_source: Any = field(default=None, repr=False)

    @cached_property
    def condvar(self) -> list:
        theta, ss, sigma = self.cv_source
        return conditional_variances(block_reduce(theta, ss), ss, sigma)

    @cached_property
    def condsd(self) -> list:
        return [np.sqrt(np.diagonal(cv, axis1=1, axis2=2)) for cv in self.condvar]

    @property
    def n_params(self) -> int:
        """Parameter count of AIC/BIC: p + length(theta) + 1."""
        return self.p + len(self.theta) + 1


def is_singular(theta: np.ndarray, terms_or_p: Sequence[Any], tol: float = 1e-4) -> bool:
    """lme4's ``isSingular`` (`bayesmix.lmm.theta.is_singular`) for terms or their sizes."""
    p_term = ([int(p) for p in terms_or_p] if all(np.isscalar(t) for t in terms_or_p)
              else [t.p for t in as_terms(terms_or_p)])
    return _is_singular(theta, p_term, tol)


def lmm_estimates(theta: np.ndarray, X: Any, y: Any, terms: Sequence[Any], reml: bool,
                  ss: LmmSuffStats | None = None, condvar: bool = False) -> LmmEstimates:
    """Fixed effects, sigma, vcov, conditional modes and variances, variance components at theta.

    Computed by block elimination of the first term (scales to InstEval-sized models). The
    conditional variances (``O(q2^2 q1)``) are computed on first use, or now with
    ``condvar=True``.
    """
    terms = as_terms(terms)
    if ss is None:
        ss = lmm_suffstats(X, y, terms)
    theta = normalize_theta(np.asarray(theta, float), terms)
    n, p, q2 = ss.n, ss.p, ss.q2
    blk = block_reduce(theta, ss)
    ldRX2, r2, R = _block_pieces(blk, ss)
    factors = blk.factors
    p1, l1 = ss.p_term[0], ss.l_term[0]

    # fixed effects: R = [[R_X', 0], [c_beta', sqrt(r2)]]
    RXt = R[:p, :p]
    cb = R[p, :p]
    beta_c = sla.solve_triangular(RXt, cb, trans="T", lower=True) if p else np.zeros(0)
    beta = beta_c + (ss.y_offset * ss.ones_coef if ss.y_offset != 0.0 else 0.0)
    sigma_ml = float(np.sqrt(r2 / n))
    sigma_reml = float(np.sqrt(r2 / (n - p))) if n > p else float("nan")
    sigma = sigma_reml if reml else sigma_ml
    if p:
        RXinv = sla.solve_triangular(RXt, np.eye(p), lower=True)  # R_X'^-1
        vcov = sigma ** 2 * (RXinv.T @ RXinv)
    else:
        vcov = np.zeros((0, 0))

    # conditional modes: A u = Lambda'Z'(y - X beta); v = [-beta_c; 1]
    v = np.concatenate([-beta_c, [1.0]])
    Lam1, A12, A11_solve = _first_term(blk, ss)
    r1 = Lam1.T @ (ss.B[:, q2:] @ v)  # Lambda1'Z1'(y - X beta)
    a1 = A11_solve(r1)
    if q2:
        L22 = blk.L[:q2, :q2]
        r2vec = blk.Lam2.T @ (ss.ZhZh[:q2, q2:] @ v)
        rhs2 = r2vec - A12.T @ a1
        u2 = (rhs2 / np.diag(L22) ** 2 if blk.diag22
              else sla.cho_solve((L22, True), rhs2))
        u1 = A11_solve(r1 - A12 @ u2)
    else:
        u2 = np.zeros(0)
        u1 = a1
    b1 = Lam1 @ u1
    ussq = float(u1 @ u1 + u2 @ u2)
    wrss = r2 - ussq

    # split b into per-term (levels, p_k)
    ranef = [b1.reshape(l1, p1)]
    if q2:
        b2 = blk.Lam2 @ u2
        pos = 0
        for pk, lk in zip(ss.p_term[1:], ss.l_term[1:]):
            ranef.append(b2[pos:pos + pk * lk].reshape(lk, pk))
            pos += pk * lk

    if condvar:  # computed now (by default: on first use of est.condvar / est.condsd)
        est_cv = conditional_variances(blk, ss, sigma)

    vc_cov, vc_sd, vc_cor = varcorr(factors, sigma ** 2)

    Xa, _ = _check_xy(X, y)
    fitted = Xa @ beta + random_design(terms) @ np.concatenate([b.ravel() for b in ranef])

    dev_ml = deviance_formula(blk.ldL2, ldRX2, r2, n, p, False)
    crit = deviance_formula(blk.ldL2, ldRX2, r2, n, p, True) if n > p else float("nan")
    objective = crit if reml else dev_ml
    out = LmmEstimates(
        reml=bool(reml), n=n, p=p, theta=theta, beta=beta, vcov=vcov,
        se=np.sqrt(np.diag(vcov)), sigma=sigma, sigma_ml=sigma_ml, sigma_reml=sigma_reml,
        pwrss=r2, wrss=wrss, ussq=ussq, ldL2=blk.ldL2, ldRX2=ldRX2,
        objective=objective, logLik=-0.5 * objective, deviance_ml=dev_ml, reml_crit=crit,
        ranef=ranef, factors=factors,
        varcorr_cov=vc_cov, varcorr_sd=vc_sd, varcorr_cor=vc_cor,
        singular=singular_factors(factors),
        fitted=fitted, cv_source=(theta, ss, sigma),
    )
    if condvar:
        out.__dict__["condvar"] = est_cv  # fill the cached_property
    return out


def _first_term(blk: _Block, ss: LmmSuffStats):
    """Lambda1, A12 = Lambda1' Z1'Z2 Lambda2 (sparse) and a solver with A's first-term block."""
    p1, l1, q2 = ss.p_term[0], ss.l_term[0], ss.q2
    Lam1 = sp.kron(sp.identity(l1, format="csr"), sp.csr_matrix(blk.factors[0]), format="csr")
    A12 = (Lam1.T @ ss.B[:, :q2] @ blk.Lam2) if q2 else None

    def A11_solve(rhs):  # rhs (q1,) or (q1, m)
        shp = rhs.shape
        R3 = rhs.reshape(l1, p1, -1)
        out = np.linalg.solve(blk.A1_chol, R3)
        out = np.linalg.solve(np.swapaxes(blk.A1_chol, 1, 2), out)
        return out.reshape(shp)

    return Lam1, A12, A11_solve


def conditional_variances(blk: _Block, ss: LmmSuffStats, sigma: float) -> list:
    """sigma^2 times the diagonal blocks of Lambda A^-1 Lambda', per term (n_levels, p_k, p_k)."""
    p1, l1, q2 = ss.p_term[0], ss.l_term[0], ss.q2
    factors = blk.factors
    T1 = factors[0]
    _, A12, A11_solve = _first_term(blk, ss)
    condvars: list = []
    s2 = sigma ** 2
    A1inv = A11_solve(np.broadcast_to(np.eye(p1), (l1, p1, p1)).reshape(l1 * p1, p1)
                      .copy()).reshape(l1, p1, p1)
    if q2:
        L22 = blk.L[:q2, :q2]
        # term 1: A_j^-1 + E_j S22^-1 E_j', E_j = A_j^-1 (A12)_j, E sparse like A12; the
        # rows of E S22^-1 in chunks (memory bounded), only each level's own blocks kept
        if blk.diag22:   # diagonal: no dense inverse
            L22inv = sp.diags(1.0 / np.diag(L22))
            S22inv = sp.diags(1.0 / np.diag(L22) ** 2)
        else:
            L22inv = sla.solve_triangular(L22, np.eye(q2), lower=True)
            S22inv = L22inv.T @ L22inv
        E = (sp.bsr_matrix((A1inv, np.arange(l1), np.arange(l1 + 1)), shape=(ss.q1, ss.q1))
             @ sp.csr_matrix(A12)).tocsr()
        extra = np.zeros((l1, p1, p1))
        chunk = max(1, 2_000_000 // max(q2 * p1, 1)) * p1
        for lo in range(0, ss.q1, chunk):
            hi = min(ss.q1, lo + chunk)
            Ec = E[lo:hi]
            ESc = Ec @ S22inv
            ESc = ESc.tocsr() if sp.issparse(ESc) else np.asarray(ESc)
            for r in range(p1):
                for s_ in range(p1):
                    extra[lo // p1:hi // p1, r, s_] = np.asarray(
                        Ec[s_::p1].multiply(ESc[r::p1]).sum(axis=1)).ravel()
        A1inv = A1inv + extra
    cv1 = s2 * np.einsum("ri,jik,sk->jrs", T1, A1inv, T1)
    condvars.append(cv1)
    pos = 0
    for T, pk, lk in zip(factors[1:], ss.p_term[1:], ss.l_term[1:]):
        if blk.diag22:  # scalar terms
            blocks = S22inv.diagonal()[pos:pos + lk].reshape(lk, 1, 1)
        else:
            G = L22inv[:, pos:pos + pk * lk].reshape(q2, lk, pk)
            blocks = np.einsum("mji,mjk->jik", G, G)  # (S22^-1) diagonal blocks
        condvars.append(s2 * np.einsum("ri,jik,sk->jrs", T, blocks, T))
        pos += pk * lk
    return condvars
