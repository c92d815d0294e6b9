"""Exact random-effect draws of the marginal program, blocked like its likelihood.

Given one posterior draw of (beta, theta, sigma), with r = y - X beta the random effects have
the Gaussian conditional

    u | y ~ N(A^-1 c, sigma^2 A^-1),   A = Lambda' Z'Z Lambda + I,   c = Lambda' Z' r,

and b = Lambda u. Order u = [u1, u2] (u1 the first term's columns, level-major; u2 the other
terms'). A's u1 block is block diagonal, A_j = T1' C_j T1 + I per level j, so its lower Cholesky
factor is

    L = [[L1, 0], [L21, L22]],  L1 = blockdiag(chol A_j),  L21 = A21 L1^-T,
    L22 L22' = S22 = Lambda2' (Z2'Z2 - Q22) Lambda2 + I,  Q22 = sum_j G_j' W_j G_j,

with G_j = Z1j' Z2 and W_j = T1 A_j^-1 T1' (the Schur complement the likelihood forms, see
``stan/lmm_functions.stan``; vec(Q22) = K22 w with the data-only sparse K22 of
``bayesmix.lmm.k_matrix``). A draw u = L^-T (L^-1 c + sigma e), e ~ N(0, I_q), is then

    u2 = L22^-T (L22^-1 c2' + sigma e2),   c2' = Lambda2' (Z2'r - sum_j G_j' W_j Z1j'r),
    u1_j = A_j^-1 T1' (Z1j'r - G_j b2) + sigma L_j^-T e1_j,   b2 = Lambda2 u2.

By uniqueness of the Cholesky factor this L is the dense factor of A in this column order, so
with the same normals e the draws equal the dense computation's (tests/test_marginal_draws.py
keeps the dense routine as the reference). Cost per draw: O(l1 p1^3) for the first term, a
sparse product with K22 and one Q2 x Q2 Cholesky -- never q x q. The first term's tiny
per-level blocks are factored and solved with loops over p1 vectorised over (draws x levels)
(numpy's batched linalg has a per-matrix overhead that dominates at p1 = 1, 2); draws go in
chunks that keep the work arrays near `chunk_bytes`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..threads import cores

__all__ = ["DrawSystem", "draw_system", "draw_chunk", "draw_random_effects",
           "cholesky_corr_batch", "term_factors"]


# ---------------------------------------------------------------- small batched linear algebra


def _mm(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A @ B for (broadcast) stacks whose inner dimension is tiny (p1): a sum of p1 outer
    products, as numpy's matmul and einsum loop over each tiny matrix."""
    out = A[..., :, :1] * B[..., :1, :]
    for i in range(1, A.shape[-1]):
        out += A[..., :, i:i + 1] * B[..., i:i + 1, :]
    return out


def _chol(A: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a stack (..., p, p) of small SPD matrices."""
    p = A.shape[-1]
    L = np.zeros_like(A)
    for j in range(p):
        d = A[..., j, j] - np.sum(L[..., j, :j] ** 2, axis=-1)
        L[..., j, j] = np.sqrt(d)
        for i in range(j + 1, p):
            L[..., i, j] = (A[..., i, j] - np.sum(L[..., i, :j] * L[..., j, :j], axis=-1)) \
                / L[..., j, j]
    return L


def _fwd(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve L x = b for stacks: L (..., p, p) lower, b (..., p, m)."""
    p = L.shape[-1]
    x = np.empty(np.broadcast_shapes(L.shape[:-2], b.shape[:-2]) + b.shape[-2:])
    for i in range(p):
        acc = b[..., i, :] - np.einsum("...k,...km->...m", L[..., i, :i], x[..., :i, :])
        x[..., i, :] = acc / L[..., i, i][..., None]
    return x


def _bwd_t(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve L' x = b for stacks: L (..., p, p) lower, b (..., p, m)."""
    p = L.shape[-1]
    x = np.empty(np.broadcast_shapes(L.shape[:-2], b.shape[:-2]) + b.shape[-2:])
    for i in range(p - 1, -1, -1):
        acc = b[..., i, :] - np.einsum("...k,...km->...m", L[..., i + 1:, i], x[..., i + 1:, :])
        x[..., i, :] = acc / L[..., i, i][..., None]
    return x


def cholesky_corr_batch(y: np.ndarray, K: int) -> np.ndarray:
    """Stan's cholesky_corr_constrain for a stack of draws: (S, K (K - 1) / 2) -> (S, K, K)
    (the per-draw `bayesmix.bayes.marginal.cholesky_corr`, vectorised over draws)."""
    z = np.tanh(np.asarray(y, dtype=float))
    S = z.shape[0]
    L = np.zeros((S, K, K))
    L[:, 0, 0] = 1.0
    pos = 0
    for i in range(1, K):
        L[:, i, 0] = z[:, pos]
        pos += 1
        ss = L[:, i, 0] ** 2
        for j in range(1, i):
            L[:, i, j] = z[:, pos] * np.sqrt(1 - ss)
            pos += 1
            ss = ss + L[:, i, j] ** 2
        L[:, i, i] = np.sqrt(1 - ss)
    return L


def term_factors(lay, sd_all: np.ndarray, cpc: np.ndarray, sigma: np.ndarray) -> list:
    """T_k = diag(sd_k) L_k / sigma per term (reduced-system order), stacked over draws:
    a list of (S, p_k, p_k)."""
    out = []
    S = sd_all.shape[0]
    for j, t in enumerate(lay.terms):
        sdk = sd_all[:, lay.sd_start[j]:lay.sd_start[j] + t.p]
        if lay.correlated(j):
            c0 = lay.cpc_start[j]
            Lk = cholesky_corr_batch(cpc[:, c0:c0 + t.p * (t.p - 1) // 2], t.p)
        else:
            Lk = np.broadcast_to(np.eye(t.p), (S, t.p, t.p))
        out.append(sdk[:, :, None] * Lk / sigma[:, None, None])
    return out


# ---------------------------------------------------------------- the data-only system


@dataclass(frozen=True, eq=False)
class DrawSystem:
    """Cross products of a design arranged for the blocked draws (built once per fit).

    Term 1 is the reduced system's first term (most levels); "2" stands for terms 2..K."""

    p_term: tuple[int, ...]
    l_term: tuple[int, ...]
    C1: np.ndarray          # (l1, p1, p1)  Z1j'Z1j
    Z1y: np.ndarray         # (l1, p1)      Z1j'y
    Z1X: np.ndarray         # (l1, p1, P)   Z1j'X
    Z2y: np.ndarray         # (Q2,)
    Z2X: np.ndarray         # (Q2, P)
    Z2Z2: np.ndarray        # (Q2, Q2) dense
    G: sp.csr_matrix        # (q1, Q2)  Z1'Z2
    GT: sp.csr_matrix       # (Q2, q1)
    K22: sp.csr_matrix | None  # (Q2 * Q2, l1 p1^2): vec(Q22) = K22 w, lower triangle only

    @property
    def q1(self) -> int:
        return self.p_term[0] * self.l_term[0]

    @property
    def q2(self) -> int:
        return int(sum(p * l for p, l in zip(self.p_term[1:], self.l_term[1:])))

    def bytes_per_draw(self) -> int:
        """Rough size of one draw's work arrays (chunking)."""
        return 8 * (4 * self.q2 * self.q2 + 12 * self.q1 * self.p_term[0] + 4 * self.q2)


def draw_system(lay) -> DrawSystem:
    """The `DrawSystem` of a `MarginalLayout` (y_s and X_s as the marginal program sees them)."""
    from ..lmm import k_matrix
    from ..lmm.suffstats import LmmSuffStats, _term_Z, as_terms
    terms = as_terms(lay.terms)
    t1 = terms[0]
    n = t1.index.shape[0]
    p1, l1 = t1.p, t1.n_levels
    X, y = lay.X_s, lay.y_s
    Z1 = _term_Z(t1)
    Z2 = (sp.hstack([_term_Z(t) for t in terms[1:]], format="csc") if len(terms) > 1
          else sp.csc_matrix((n, 0)))
    q2 = Z2.shape[1]
    C1 = np.zeros((l1, p1, p1))
    np.add.at(C1, t1.index, t1.Z[:, :, None] * t1.Z[:, None, :])
    Z1t = Z1.T.tocsr()
    Z1y = np.asarray(Z1t @ y).reshape(l1, p1)
    Z1X = np.asarray(Z1t @ X).reshape(l1, p1, X.shape[1])
    Z2t = Z2.T.tocsr()
    G = (Z1t @ Z2).tocsr()
    G.sum_duplicates()
    G.sort_indices()
    K22 = None
    if q2:
        # k_matrix needs only the first term's shape, B = Z1'Z2 and M = Q2
        mini = LmmSuffStats(n=n, p=0, p_term=tuple(t.p for t in terms),
                            l_term=tuple(t.n_levels for t in terms), q1=t1.q, q2=q2, M=q2,
                            y_offset=0.0, ones_coef=None, C1=C1, B=G, ZhZh=np.zeros((0, 0)),
                            yty=0.0)
        K22 = k_matrix(mini, lower_only=True)
    return DrawSystem(p_term=tuple(t.p for t in terms), l_term=tuple(t.n_levels for t in terms),
                      C1=C1, Z1y=Z1y, Z1X=Z1X, Z2y=np.asarray(Z2t @ y),
                      Z2X=np.asarray(Z2t @ X).reshape(q2, X.shape[1]),
                      Z2Z2=(Z2t @ Z2).toarray(), G=G, GT=G.T.tocsr(), K22=K22)


# ---------------------------------------------------------------- the draws


def _lambda2(ds: DrawSystem, T2: list, M: np.ndarray, side: str) -> np.ndarray:
    """Lambda2' M (side "left", M (c, Q2, m)) or M Lambda2 (side "right", M (c, m, Q2)) or
    Lambda2 v (side "apply", v (c, Q2)); Lambda2 = blockdiag_k (I_{l_k} kron T_k)."""
    out = np.empty_like(M)
    pos = 0
    for T, p, lv in zip(T2, ds.p_term[1:], ds.l_term[1:]):
        sl = slice(pos, pos + p * lv)
        c = M.shape[0]
        if p == 1:   # a scalar term: a diagonal scaling
            t = T[:, 0, 0]
            if side == "left":
                out[:, sl, :] = t[:, None, None] * M[:, sl, :]
            elif side == "right":
                out[:, :, sl] = M[:, :, sl] * t[:, None, None]
            else:
                out[:, sl] = t[:, None] * M[:, sl]
        elif side == "left":
            blk = M[:, sl, :].reshape(c, lv, p, -1)
            out[:, sl, :] = np.einsum("sri,slrm->slim", T, blk).reshape(c, p * lv, -1)
        elif side == "right":
            blk = M[:, :, sl].reshape(c, -1, lv, p)
            out[:, :, sl] = np.einsum("smlr,sri->smli", blk, T).reshape(c, -1, p * lv)
        else:
            blk = M[:, sl].reshape(c, lv, p)
            out[:, sl] = np.einsum("sir,slr->sli", T, blk).reshape(c, p * lv)
        pos += p * lv
    return out


def _scalar_scales(ds: DrawSystem, T2: list) -> np.ndarray | None:
    """Lambda2's diagonal (c, Q2) when every term after the first is scalar, else None."""
    if any(p != 1 for p in ds.p_term[1:]):
        return None
    return np.concatenate([np.repeat(T[:, 0, 0][:, None], lv, axis=1)
                           for T, lv in zip(T2, ds.l_term[1:])], axis=1)


def _lambda2_upper(ds: DrawSystem, T2: list, U: np.ndarray) -> np.ndarray:
    """Lambda2' U Lambda2 of one draw (T2: (1, p_k, p_k) each) where only U's upper triangle
    is valid: a block of Lambda2 mixes the rows and columns of one level, so each level's
    diagonal p x p block is made symmetric first; every other entry of the upper triangle
    then comes from entries of the upper triangle only."""
    pos = 0
    for p, lv in zip(ds.p_term[1:], ds.l_term[1:]):
        idx = pos + p * np.arange(lv)
        for a in range(p):
            for b in range(a + 1, p):
                U[idx + b, idx + a] = U[idx + a, idx + b]
        pos += p * lv
    return _lambda2(ds, T2, _lambda2(ds, T2, U[None], "left"), "right")[0]


def draw_chunk(ds: DrawSystem, T: list, beta: np.ndarray, sigma: np.ndarray,
               e: np.ndarray, prior_only: bool = False) -> np.ndarray:
    """b = Lambda u for c draws at once: T the per-term factors (c, p_k, p_k), beta (c, P),
    sigma (c,), e (c, q) the standard normals (u1 level-major first, then u2). Returns (c, q)."""
    c = e.shape[0]
    p1, l1 = ds.p_term[0], ds.l_term[0]
    q1, q2 = ds.q1, ds.q2
    T1, T2 = T[0], T[1:]
    e1 = e[:, :q1].reshape(c, l1, p1, 1)
    e2 = e[:, q1:]
    if prior_only:   # u ~ N(0, sigma^2 I)
        u1 = sigma[:, None, None] * e1[..., 0]
        b2 = _lambda2(ds, T2, sigma[:, None] * e2, "apply") if q2 else e2
        b1 = np.einsum("sir,sjr->sji", T1, u1)
        return np.concatenate([b1.reshape(c, q1), b2], axis=1)
    # first term, level by level: A_j = T1' C_j T1 + I = L_j L_j', W_j = T1 A_j^-1 T1' = V'V
    T1t = np.swapaxes(T1, 1, 2)
    A1 = _mm(T1t[:, None], _mm(ds.C1[None], T1[:, None])) + np.eye(p1)
    L1 = _chol(A1)                                               # (c, l1, p1, p1)
    Z1r = ds.Z1y[None] - np.einsum("jrp,sp->sjr", ds.Z1X, beta)   # Z1j' r  (c, l1, p1)
    if q2:
        V = _fwd(L1, T1t[:, None])                               # L_j^-1 T1'
        W = _mm(np.swapaxes(V, 2, 3), V)
        Wv = _mm(W, Z1r[..., None])[..., 0]                      # W_j Z1j' r
        # Schur complement on the u2 block: vec(Q22) = K22 w (column-major, lower triangle),
        # so row s of Qt, read row-major as a Q2 x Q2 matrix, holds Q22's upper triangle
        w = np.swapaxes(W, 2, 3).reshape(c, l1 * p1 * p1)
        Qt = np.ascontiguousarray(np.asarray(ds.K22 @ w.T).T)   # (c, Q2 * Q2)
        Z2r = ds.Z2y[None] - beta @ ds.Z2X.T
        rhs2 = Z2r - np.asarray(ds.GT @ Wv.reshape(c, q1).T).T
        c2 = _lambda2(ds, T2, rhs2[:, :, None], "left")[:, :, 0]
        d2 = _scalar_scales(ds, T2)                              # (c, Q2) or None
        u2 = np.empty((c, q2))
        diag = np.arange(q2)
        for s in range(c):
            # one draw at a time, in cache: S22 = Lambda2' (Z2'Z2 - Q22) Lambda2 + I, upper
            # triangle only (its transpose is the Fortran-order lower triangle LAPACK reads)
            U = ds.Z2Z2 - Qt[s].reshape(q2, q2)
            if d2 is not None:
                U *= d2[s][:, None]
                U *= d2[s][None, :]
            else:
                U = _lambda2_upper(ds, [T[s:s + 1] for T in T2], U)
            U[diag, diag] += 1.0
            L22, info = sla.lapack.dpotrf(U.T, lower=1, overwrite_a=1, clean=0)
            if info:
                raise np.linalg.LinAlgError("the u2 block of A is not numerically positive "
                                            "definite at a posterior draw")
            z, _ = sla.lapack.dtrtrs(L22, c2[s], lower=1)
            u2[s], _ = sla.lapack.dtrtrs(L22, z + sigma[s] * e2[s], lower=1, trans=1)
        b2 = _lambda2(ds, T2, u2, "apply")
        Gb2 = np.asarray(ds.G @ b2.T).T.reshape(c, l1, p1)
    else:
        b2 = np.zeros((c, 0))
        Gb2 = 0.0
    # u1_j = A_j^-1 T1' (Z1j' r - G_j b2) + sigma L_j^-T e1_j = L_j^-T (L_j^-1 t_j + sigma e1_j)
    t = _mm(Z1r - Gb2, T1)[..., None]
    u1 = _bwd_t(L1, _fwd(L1, t) + sigma[:, None, None, None] * e1)[..., 0]
    b1 = _mm(u1, T1t)
    return np.concatenate([b1.reshape(c, q1), b2], axis=1)


def draw_random_effects(lay, beta: np.ndarray, sd_all: np.ndarray, cpc: np.ndarray,
                        sigma: np.ndarray, rng: np.random.Generator, prior_only: bool = False,
                        chunk_bytes: float = 64e6, system: DrawSystem | None = None
                        ) -> np.ndarray:
    """Exact draws (S, q) of the random effects b = Lambda u, one per posterior draw (rows of
    beta, sd_all, cpc, sigma), from u | y ~ N(A^-1 Lambda' Z'(y - X beta), sigma^2 A^-1)
    (prior_only: u ~ N(0, sigma^2 I)). Columns in lme4's order of the reduced system's terms.
    The normals are drawn chunk by chunk as (c, q) blocks from `rng`."""
    from ..optimizer import one_blas_thread
    with one_blas_thread():  # one Q2 x Q2 factor per draw: threads only add overhead (issue 12)
        return _draw_all(lay, beta, sd_all, cpc, sigma, rng, prior_only, chunk_bytes, system)


def _draw_all(lay, beta, sd_all, cpc, sigma, rng, prior_only, chunk_bytes, system):
    ds = system if system is not None else draw_system(lay)
    beta = np.asarray(beta, dtype=float).reshape(sigma.shape[0], -1)
    S = beta.shape[0]
    q = ds.q1 + ds.q2
    out = np.empty((S, q))
    step = max(1, int(chunk_bytes // ds.bytes_per_draw()))
    # chunks run on a thread per core (LAPACK, sparse products and large numpy operations
    # release the GIL); the normals are drawn here, chunk after chunk, so the draws do not
    # depend on the number of threads; at most `workers` chunks are in flight (memory)
    workers = min(cores(), -(-S // step))
    pending: list = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for lo in range(0, S, step):
            hi = min(S, lo + step)
            T = term_factors(lay, sd_all[lo:hi], cpc[lo:hi], sigma[lo:hi])
            e = rng.standard_normal((hi - lo, q))
            pending.append((lo, hi, pool.submit(draw_chunk, ds, T, beta[lo:hi], sigma[lo:hi],
                                                e, prior_only)))
            if len(pending) >= workers:
                lo0, hi0, job = pending.pop(0)
                out[lo0:hi0] = job.result()
        for lo0, hi0, job in pending:
            out[lo0:hi0] = job.result()
    return out

