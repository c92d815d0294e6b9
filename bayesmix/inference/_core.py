"""The profiled-deviance pieces that the inference methods share (numpy only).

Everything here works on a fit's sufficient statistics (``bayesmix.lmm.LmmSuffStats``) and
``bayesmix.lmm.block_reduce``: one reduced Cholesky per theta gives ``log|A|``, ``log|R_X|^2``,
the penalised residual sum of squares ``r2`` and ``R_X`` (hence beta-hat and its unscaled
covariance). The fit's own algebra is not touched."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..lmm import block_reduce, lmm_suffstats
from ..lmm.profiled import LOG_2PI, reduced_pieces
from ..lmm.theta import factors_of



@dataclass(frozen=True)
class Pieces:
    """The profiled deviance's ingredients at one theta."""
    ldL2: float     # log|A| = log|Lambda'Z'Z Lambda + I|
    ldRX2: float    # log|R_X|^2
    r2: float       # penalised residual sum of squares at beta-hat(theta)
    beta: np.ndarray  # beta-hat(theta) (on the original response scale)
    RXt: np.ndarray   # R_X' (lower triangular, p x p): X'V^-1 X / sigma^2 = R_X'R_X

    def vcov_unscaled(self) -> np.ndarray:
        """(R_X'R_X)^-1: the covariance of beta-hat over sigma^2."""
        p = self.RXt.shape[0]
        if p == 0:
            return np.zeros((0, 0))
        inv = sla.solve_triangular(self.RXt, np.eye(p), lower=True)
        return inv.T @ inv


def fit_suffstats(fit):
    """The fit's sufficient statistics, computed once and kept on the fit."""
    ss = getattr(fit, "_inference_ss", None)
    if ss is None:
        d = fit.design
        y = d.y if d.offset is None else d.y - d.offset
        ss = lmm_suffstats(d.X, y, d.terms)
        object.__setattr__(fit, "_inference_ss", ss)
    return ss


DENSE_LIMIT = 4_000_000  # entries of the dense (l1, p1, M) copy of Z1'Zh kept for speed
DENSE_MAX_M = 300  # size of the reduced system (q2 + p + 1) up to which the dense route runs


def _dense_parts(ss):
    """Dense copies of the block-elimination inputs for small and medium models (cached on
    the sufficient statistics), or None when too large (then bayesmix.lmm.block_reduce)."""
    cache = ss.extra.get("_inference_dense", False)
    if cache is not False:
        return cache
    p1, l1, M = ss.p_term[0], ss.l_term[0], ss.M
    out = None
    # dense pays off while the reduced system is small; beyond that the sparse route wins
    if l1 * p1 * M <= DENSE_LIMIT and M <= DENSE_MAX_M:
        B = ss.B.toarray() if sp.issparse(ss.B) else np.asarray(ss.B)
        out = dict(B3=B.reshape(l1, p1, M), Bflat=B if p1 == 1 else None,
                   ZhZh=np.asarray(ss.ZhZh, float), C1=np.asarray(ss.C1, float))
    ss.extra["_inference_dense"] = out
    return out


def _reduce_dense(theta, ss, d):
    """block_reduce's numbers (log|A| and the reduced Cholesky) with dense numpy only."""
    p_term, l_term = ss.p_term, ss.l_term
    factors = factors_of(theta, p_term)
    T1 = factors[0]
    p1 = p_term[0]
    if p1 == 1:
        t = T1[0, 0]
        a = t * t * d["C1"][:, 0, 0] + 1.0
        logdet1 = float(np.sum(np.log(a)))
        w = t * t / a
        Bf = d["Bflat"]
        Q = Bf.T @ (w[:, None] * Bf)
    elif p1 == 2:  # closed-form 2 x 2 inverses: A_j = T1'C_jT1 + I, W_j = T1 A_j^-1 T1'
        A1 = np.einsum("ri,jrs,sk->jik", T1, d["C1"], T1)
        a, b, c = A1[:, 0, 0] + 1.0, A1[:, 1, 0], A1[:, 1, 1] + 1.0
        det = a * c - b * b
        logdet1 = float(np.sum(np.log(det)))
        Ainv = np.empty_like(A1)
        Ainv[:, 0, 0], Ainv[:, 1, 1] = c / det, a / det
        Ainv[:, 0, 1] = Ainv[:, 1, 0] = -b / det
        W = np.einsum("ri,jik,sk->jrs", T1, Ainv, T1)
        B3 = d["B3"]
        Q = np.einsum("jrm,jrn->mn", B3, np.einsum("jrs,jsn->jrn", W, B3))
    else:
        A1 = np.einsum("ri,jrs,sk->jik", T1, d["C1"], T1) + np.eye(p1)[None]
        A1c = np.linalg.cholesky(A1)
        logdet1 = 2.0 * float(np.sum(np.log(np.diagonal(A1c, axis1=1, axis2=2))))
        V = np.linalg.solve(A1c, np.broadcast_to(T1.T, A1c.shape))
        W = np.einsum("jri,jrk->jik", V, V)
        B3 = d["B3"]
        WB = np.einsum("jrs,jsn->jrn", W, B3)
        Q = np.einsum("jrm,jrn->mn", B3, WB)
    S = d["ZhZh"] - Q
    S = 0.5 * (S + S.T)
    q2 = ss.q2
    if q2:
        blocks = []
        for T, l in zip(factors[1:], l_term[1:]):
            blocks.append(np.kron(np.eye(l), T))
        Lam2 = sla.block_diag(*blocks)
        S[:q2, :] = Lam2.T @ S[:q2, :]
        S[:, :q2] = S[:, :q2] @ Lam2
        S[np.arange(q2), np.arange(q2)] += 1.0
    L = np.linalg.cholesky(S)
    ldL2 = logdet1 + 2.0 * float(np.sum(np.log(np.diag(L)[:q2])))
    return ldL2, L


def pieces(theta: np.ndarray, ss) -> Pieces:
    theta = np.asarray(theta, float)
    d = _dense_parts(ss)
    if d is not None:
        ldL2, Lfull = _reduce_dense(theta, ss, d)
    else:
        blk = block_reduce(theta, ss)
        ldL2, Lfull = blk.ldL2, blk.L
    p = ss.p
    ldRX2, r2, R = reduced_pieces(Lfull, ss.q2, p)
    RXt = R[:p, :p]
    if p:
        beta = sla.solve_triangular(RXt, R[p, :p], trans="T", lower=True)
        if ss.y_offset != 0.0:
            beta = beta + ss.y_offset * ss.ones_coef
    else:
        beta = np.zeros(0)
    return Pieces(ldL2=float(ldL2), ldRX2=ldRX2, r2=r2, beta=beta, RXt=RXt.copy())


def ml_profiled(pc: Pieces, n: int) -> float:
    """ML deviance with beta and sigma profiled out."""
    return pc.ldL2 + n * (1.0 + LOG_2PI + np.log(pc.r2 / n))


def minimize_smooth(f, x0, scale=None, gtol=1e-5, maxiter=500, hess_inv0=None):
    """Minimise a smooth function of a few variables: BFGS with central-difference gradients.

    Returns (x, f(x), inverse Hessian estimate in the scaled coordinates), the last to
    warm-start a neighbouring problem (``hess_inv0``)."""
    from scipy.optimize import minimize
    x0 = np.asarray(x0, float)
    scale = np.ones_like(x0) if scale is None else np.asarray(scale, float)

    def g(z):
        # steps of 1e-5: rounding noise (~1e-12 |f| / h) stays far below gtol and the
        # truncation error (~h^2 times the third derivative) is negligible
        h = 1e-5 * np.maximum(np.abs(z), 1.0)
        out = np.empty_like(z)
        for i in range(len(z)):
            e = np.zeros_like(z)
            e[i] = h[i]
            out[i] = (f((z + e) * scale) - f((z - e) * scale)) / (2 * h[i])
        return out

    if len(x0) == 0:
        return x0, float(f(x0)), None
    opts = dict(gtol=gtol, maxiter=maxiter)
    if hess_inv0 is not None:
        H0 = 0.5 * (hess_inv0 + hess_inv0.T)
        try:
            np.linalg.cholesky(H0)
            if np.all(np.isfinite(H0)):
                opts["hess_inv0"] = H0
        except np.linalg.LinAlgError:
            pass
    res = minimize(lambda z: f(z * scale), x0 / scale, jac=g, method="BFGS", options=opts)
    return res.x * scale, float(res.fun), res.hess_inv
