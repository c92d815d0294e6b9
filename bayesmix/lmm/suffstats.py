"""Sufficient statistics of a linear mixed model and the data of the generic ML/REML program.

Notation follows Bates, Maechler, Bolker and Walker (2015), section 3, and docs/math.md section 2.

A model is given by plain arrays: ``X`` (n, p), ``y`` (n,) and a sequence of random-effect terms,
each either a tuple ``(index, Z, n_levels)`` or any object with those three attributes (such as
``bayesmix.design.RandomTerm``): ``index`` the 0-based level of every row, ``Z`` the (n, p_k)
covariate values of the term (a 1-d array is one column), ``n_levels`` the number of levels.
Terms must come in lme4's order (decreasing number of levels): the first term is the one that is
eliminated block by block, so it should be the one with most levels.

lme4's conventions are kept throughout:

* the columns of the random-effects model matrix ``Z`` are level-major within a term (for level
  ``j`` its ``p_k`` columns) and terms are concatenated in order;
* ``Lambda`` is block diagonal; for term ``k`` the lower-triangular ``p_k x p_k`` factor ``T_k`` is
  repeated for every level;
* ``theta`` stacks each ``T_k``'s lower triangle in column-major order, e.g. for
  ``(Days | Subject)``: ``T[0,0], T[1,0], T[1,1]``. This is exactly lme4's ``getME(fit, "theta")``.

Block elimination of the first term (see ``lmm_functions.stan``): with ``Zh = [Z2, X, y]`` (Z2 the
columns of terms 2..K), ``B_j = Z1j' Zh`` and ``C_j = Z1j' Z1j`` for the levels ``j`` of term 1,

    S = Zh'Zh - sum_j B_j' W_j B_j,    W_j = T1 (T1' C_j T1 + I)^-1 T1'

and ``vec(Q) = K w`` with ``w`` the stacked ``vec(W_j)``: ``K`` depends on the data only and is
built here once as a sparse matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from .theta import factors_of, theta_of
from .theta import normalize_theta as _normalize

__all__ = [
    "LmmTerm",
    "LmmSuffStats",
    "as_terms",
    "theta_sizes",
    "theta_moment_start",
    "theta_start",
    "theta_to_factors",
    "factors_to_theta",
    "normalize_theta",
    "lambda_matrix",
    "random_design",
    "lmm_suffstats",
    "k_matrix",
    "k_rows",
    "q2_is_diagonal",
    "lmm_stan_data",
    "lmm_stan_inits",
]


# ---------------------------------------------------------------------------------------------
# Terms and theta
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LmmTerm:
    """One random-effect term reduced to arrays: level per row, covariate columns, level count."""

    index: np.ndarray  # (n,) int, 0-based level of each row
    Z: np.ndarray  # (n, p) float
    n_levels: int

    @property
    def p(self) -> int:
        return int(self.Z.shape[1])

    @property
    def q(self) -> int:
        return self.p * self.n_levels

    @property
    def n_theta(self) -> int:
        return self.p * (self.p + 1) // 2


def _one_term(t: Any) -> LmmTerm:
    if isinstance(t, LmmTerm):
        return t
    if isinstance(t, (tuple, list)):
        if len(t) != 3:
            raise ValueError("a term must be (index, Z, n_levels)")
        index, Z, n_levels = t
    else:
        index, Z, n_levels = t.index, t.Z, t.n_levels
    index = np.asarray(index)
    if not np.issubdtype(index.dtype, np.integer):
        raise TypeError(f"term index must be integer, got dtype {index.dtype}")
    index = index.astype(np.int64, copy=False)
    Z = np.asarray(Z, dtype=float)
    if Z.ndim == 1:
        Z = Z[:, None]
    if Z.ndim != 2 or Z.shape[0] != index.shape[0]:
        raise ValueError(f"term Z has shape {Z.shape}, expected ({index.shape[0]}, p)")
    n_levels = int(n_levels)
    if index.size and (index.min() < 0 or index.max() >= n_levels):
        raise ValueError(f"term index outside 0..{n_levels - 1}")
    return LmmTerm(index=index, Z=Z, n_levels=n_levels)


def as_terms(terms: Sequence[Any]) -> list[LmmTerm]:
    """Normalise terms given as tuples or objects with ``index``, ``Z``, ``n_levels``."""
    out = [_one_term(t) for t in terms]
    if not out:
        raise ValueError("a linear mixed model needs at least one random-effect term")
    n = {t.index.shape[0] for t in out}
    if len(n) != 1:
        raise ValueError("all terms must have the same number of rows")
    return out


def theta_sizes(terms: Sequence[Any]) -> list[int]:
    """Number of theta entries per term, ``p_k (p_k + 1) / 2``."""
    return [t.n_theta for t in as_terms(terms)]


def theta_start(terms: Sequence[Any]) -> np.ndarray:
    """Starting theta: every ``T_k`` the identity (theta = 0 is a stationary point, avoid it)."""
    return theta_of([np.eye(t.p) for t in as_terms(terms)])


def theta_moment_start(X: Any, y: Any, terms: Sequence[Any]) -> np.ndarray:
    """A starting theta near the optimum, by the method of moments on the OLS residuals r.

    For a scalar term with covariate z (1 for an intercept), s_j = sum z_i r_i and
    n_j = sum z_i^2 over level j satisfy E[sum_j s_j^2 / n_j] = sigma_b^2 sum_j n_j + J v_e
    (v_e: everything else in r), which with var(r) = sigma_b^2 + v_e gives sigma_b^2; sigma^2 is
    what the terms leave of var(r). Scalar terms start at sigma_b / sigma (kept within
    [0.1, 10]: theta = 0 is a stationary point), vector-valued ones at the identity. Starting
    here rather than at lme4's theta = 1 takes InstEval's REML fit from 32 to 13 evaluations.
    """
    terms = as_terms(terms)
    X, y = _check_xy(X, y)
    beta = np.linalg.lstsq(X, y, rcond=None)[0] if X.shape[1] else np.zeros(0)
    r = y - X @ beta
    n = len(r)
    v_tot = float(r @ r) / max(n - X.shape[1], 1)
    factors, sig_b = [], []
    for t in terms:
        if t.p != 1:
            factors.append(np.eye(t.p))
            sig_b.append(0.0)
            continue
        z = t.Z[:, 0]
        s_j = np.bincount(t.index, weights=z * r, minlength=t.n_levels)
        n_j = np.bincount(t.index, weights=z * z, minlength=t.n_levels)
        seen = n_j > 0
        J, N = int(seen.sum()), float(n_j.sum())
        est = (float(np.sum(s_j[seen] ** 2 / n_j[seen])) - J * v_tot) / max(N - J, 1.0)
        sig_b.append(max(est, 0.0))
        factors.append(None)
    sigma2 = max(v_tot - sum(sig_b), 0.05 * v_tot, np.finfo(float).tiny)
    for k, t in enumerate(terms):
        if factors[k] is None:
            factors[k] = np.array([[float(np.clip(np.sqrt(sig_b[k] / sigma2), 0.1, 10.0))]])
    return theta_of(factors)


def theta_to_factors(theta: np.ndarray, terms: Sequence[Any]) -> list[np.ndarray]:
    """Split theta into the lower-triangular relative factors ``T_k`` (one per term)."""
    return factors_of(theta, [t.p for t in as_terms(terms)])


def factors_to_theta(factors: Sequence[np.ndarray]) -> np.ndarray:
    return theta_of(factors)


def normalize_theta(theta: np.ndarray, terms: Sequence[Any]) -> np.ndarray:
    """lme4's representative theta (non-negative diagonals of every ``T_k``); see
    `bayesmix.lmm.theta.normalize_theta`."""
    return _normalize(theta, [t.p for t in as_terms(terms)])


def lambda_matrix(theta: np.ndarray, terms: Sequence[Any]) -> sp.csc_matrix:
    """Sparse block-diagonal ``Lambda`` (q x q): ``T_k`` repeated for every level of term k."""
    terms = as_terms(terms)
    blocks = [sp.kron(sp.identity(t.n_levels, format="csc"), sp.csc_matrix(T), format="csc")
              for t, T in zip(terms, theta_to_factors(theta, terms))]
    return sp.block_diag(blocks, format="csc")


def _term_Z(t: LmmTerm) -> sp.csc_matrix:
    """Sparse (n, n_levels * p) model matrix of one term, level-major columns."""
    n = t.index.shape[0]
    rows = np.repeat(np.arange(n), t.p)
    cols = (t.index[:, None] * t.p + np.arange(t.p)[None, :]).ravel()
    return sp.csc_matrix((t.Z.ravel(), (rows, cols)), shape=(n, t.q))


def random_design(terms: Sequence[Any]) -> sp.csc_matrix:
    """Sparse ``Z`` (n x q) in lme4's column order."""
    return sp.hstack([_term_Z(t) for t in as_terms(terms)], format="csc")


# ---------------------------------------------------------------------------------------------
# Sufficient statistics
# ---------------------------------------------------------------------------------------------


def _ones_in_colspace(X: np.ndarray) -> np.ndarray | None:
    """Coefficients ``a`` with ``X a = 1`` when the constant lies in X's column space, else None."""
    n, p = X.shape
    if p == 0 or n == 0:
        return None
    # Fast path: an explicit intercept column.
    for j in range(p):
        col = X[:, j]
        if np.all(col == 1.0):
            a = np.zeros(p)
            a[j] = 1.0
            return a
    a, *_ = np.linalg.lstsq(X, np.ones(n), rcond=None)
    if np.linalg.norm(X @ a - 1.0) <= 1e-9 * np.sqrt(n):
        return a
    return None


@dataclass(frozen=True, eq=False)
class LmmSuffStats:
    """Everything the profiled deviance needs, computed once from the data.

    ``y`` is shifted by ``y_offset`` (its mean) when the constant lies in X's column space:
    ``y_c = y - y_offset``. Fitted coefficients on the centred response map back by
    ``beta = beta_c + y_offset * ones_coef`` (``X @ ones_coef == 1``); nothing else changes.
    """

    n: int
    p: int
    p_term: tuple[int, ...]
    l_term: tuple[int, ...]
    q1: int  # columns of term 1 (p_1 * l_1)
    q2: int  # columns of terms 2..K
    M: int  # q2 + p + 1
    y_offset: float
    ones_coef: np.ndarray | None
    C1: np.ndarray  # (l_1, p_1, p_1): Z1j'Z1j
    B: sp.csr_matrix  # (q1, M): Z1' Zh, rows level-major (level j, coefficient r)
    ZhZh: np.ndarray  # (M, M) dense: Zh'Zh with Zh = [Z2, X, y_c]
    yty: float  # y_c'y_c
    extra: dict = field(default_factory=dict)

    @property
    def n_terms(self) -> int:
        return len(self.p_term)

    @property
    def n_theta(self) -> int:
        return sum(pk * (pk + 1) // 2 for pk in self.p_term)


def _check_xy(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float).ravel()
    if X.ndim == 1:
        X = X[:, None]
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("X and y must be finite (drop NA rows first)")
    return X, y


def lmm_suffstats(X: Any, y: Any, terms: Sequence[Any], center_y: bool | None = None) -> LmmSuffStats:
    """Cross products of ``[Z, X, y]`` arranged for block elimination of the first term.

    ``center_y=None`` centres y exactly when the constant is in X's column space (it never changes
    the deviance then, and keeps ``y'y - ||c||^2`` accurate on data with a large offset).
    """
    X, y = _check_xy(X, y)
    terms = as_terms(terms)
    n, p = X.shape
    if terms[0].index.shape[0] != n:
        raise ValueError(f"terms have {terms[0].index.shape[0]} rows, X has {n}")

    ones_coef = _ones_in_colspace(X)
    if center_y is None:
        center_y = ones_coef is not None
    if center_y and ones_coef is None:
        raise ValueError("cannot centre y: the constant is not in the column space of X")
    y_offset = float(np.mean(y)) if center_y else 0.0
    yc = y - y_offset

    t1 = terms[0]
    Z1 = _term_Z(t1)
    Z2 = (sp.hstack([_term_Z(t) for t in terms[1:]], format="csc")
          if len(terms) > 1 else sp.csc_matrix((n, 0)))
    q2 = Z2.shape[1]
    Zh = sp.hstack([Z2, sp.csc_matrix(X), sp.csc_matrix(yc[:, None])], format="csc")
    M = q2 + p + 1

    # C_j = Z1j'Z1j for each level j of term 1 (Z1'Z1 is block diagonal).
    p1, l1 = t1.p, t1.n_levels
    C1 = np.zeros((l1, p1, p1))
    np.add.at(C1, t1.index, t1.Z[:, :, None] * t1.Z[:, None, :])

    B = (Z1.T @ Zh).tocsr()
    B.sum_duplicates()
    B.sort_indices()
    ZhZh = (Zh.T @ Zh).toarray()
    ZhZh = 0.5 * (ZhZh + ZhZh.T)  # exact symmetry
    return LmmSuffStats(
        n=n, p=p,
        p_term=tuple(t.p for t in terms), l_term=tuple(t.n_levels for t in terms),
        q1=t1.q, q2=q2, M=M,
        y_offset=y_offset, ones_coef=ones_coef,
        C1=C1, B=B, ZhZh=ZhZh, yty=float(yc @ yc),
    )


def q2_is_diagonal(ss: LmmSuffStats) -> bool:
    """Whether the other terms' block of S is diagonal, as it is when they are scalar terms
    and every level of the first term meets at most one of their columns (e.g. ``(1 | a/b)``:
    each ``a:b`` lies in one ``a``) and they share no rows (one term after the first).
    Kept in ``ss.extra``: the Stan data and the estimates both ask."""
    if "q2_diagonal" not in ss.extra:
        ss.extra["q2_diagonal"] = _q2_is_diagonal(ss)
    return ss.extra["q2_diagonal"]


def _q2_is_diagonal(ss: LmmSuffStats) -> bool:
    q2 = ss.q2
    if q2 == 0 or any(pk != 1 for pk in ss.p_term[1:]):
        return False
    Zqq = ss.ZhZh[:q2, :q2]
    if np.count_nonzero(Zqq) != np.count_nonzero(np.diag(Zqq)):
        return False
    level = np.repeat(np.arange(ss.l_term[0]), ss.p_term[0])
    touched = sp.csr_matrix(ss.B)[:, :q2].tocoo()
    # distinct (level, column) pairs per level, by a linear-time CSR build (np.unique over the
    # pairs' rows sorted them: 5 s of the crossed 10^6-row design's data)
    per_level = sp.csr_matrix((np.ones(touched.nnz), (level[touched.row], touched.col)),
                              shape=(ss.l_term[0], q2))
    per_level.sum_duplicates()
    return bool(np.all(np.diff(per_level.indptr) <= 1))


def k_rows(ss: LmmSuffStats, compact: bool) -> int:
    """Rows of K: M * M (column-major positions of Q), or, compact (q2_is_diagonal), the q2
    diagonal entries of Q's first block followed by the P + 1 trailing rows of Q, row by row
    (position q2 + r * M + c for Q[q2 + r, c])."""
    return ss.q2 + (ss.M - ss.q2) * ss.M if compact else ss.M * ss.M


def level_patterns(ss: LmmSuffStats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """B = Z1'Zh level by level: ``(cols, starts, vals)`` with ``cols[starts[j]:starts[j+1]]``
    the union of the non-zero columns of level j's p1 rows of B (increasing) and
    ``vals[e, r] = B[j * p1 + r, cols[e]]`` (zero where that row has no entry)."""
    p1, l1, M = ss.p_term[0], ss.l_term[0], ss.M
    B = sp.csr_matrix(ss.B)
    B.sort_indices()
    level_of_row = np.repeat(np.arange(l1), p1)
    agg = sp.csr_matrix((np.ones(ss.q1), (level_of_row, np.arange(ss.q1))), shape=(l1, ss.q1))
    absB = B.copy()
    absB.data = np.ones_like(absB.data)
    pat = (agg @ absB).tocsr()
    pat.sort_indices()
    cols = pat.indices.astype(np.int64)
    lev = np.repeat(np.arange(l1), np.diff(pat.indptr))
    keys = lev * M + cols
    vals = np.zeros((len(cols), p1))
    b_row = np.repeat(np.arange(ss.q1), np.diff(B.indptr))
    vals[np.searchsorted(keys, (b_row // p1) * M + B.indices), b_row % p1] = B.data
    return cols, pat.indptr.astype(np.int64), vals


def k_matrix(ss: LmmSuffStats, lower_only: bool = True, compact: bool = False) -> sp.csr_matrix:
    """The fixed sparse matrix ``K`` with ``vec(Q) = K w``.

    ``Q = sum_j B_j' W_j B_j`` (M x M), ``w`` stacks ``vec(W_j)`` column-major for j = 1..l_1
    (index ``j * p1^2 + s * p1 + r`` for ``W_j[r, s]``, 0-based) and ``vec(Q)`` is column-major
    (index ``b * M + a`` for ``Q[a, b]``). Entry ``K[(a, b), (j, r, s)] = B_j[r, a] * B_j[s, b]``.

    With ``lower_only`` only rows with ``a >= b`` (Q's lower triangle) are filled: the Stan program
    symmetrises from the lower triangle, which halves K and makes S exactly symmetric. With
    ``compact`` (lower triangle, q2_is_diagonal designs) only the rows of ``k_rows`` exist.
    """
    p1 = ss.p_term[0]
    l1 = ss.l_term[0]
    M = ss.M
    e_col, starts, vals = level_patterns(ss)
    e_lev = np.repeat(np.arange(l1), np.diff(starts))        # level of each pattern entry
    e_pos = np.arange(len(e_col)) - starts[e_lev]            # position within its level
    # pairs (a, b) of entries of the same level: entry a with every entry b at or before it
    # (columns sorted, so col(a) >= col(b)); with lower_only=False every ordered pair
    if lower_only:
        counts = e_pos + 1
        a_idx = np.repeat(np.arange(len(e_col)), counts)
        start = np.repeat(np.cumsum(counts) - counts, counts)
        b_idx = np.arange(len(a_idx)) - start + starts[e_lev[a_idx]]
    else:
        m = np.diff(starts)[e_lev]
        a_idx = np.repeat(np.arange(len(e_col)), m)
        start = np.repeat(np.cumsum(m) - m, m)
        b_idx = np.arange(len(a_idx)) - start + starts[e_lev[a_idx]]
    qrow = e_col[b_idx] * M + e_col[a_idx]  # column-major position of Q[a, b]
    n_rows = M * M
    if compact:
        if not lower_only:
            raise ValueError("a compact K holds the lower triangle only")
        qa, qb, q2 = e_col[a_idx], e_col[b_idx], ss.q2
        if np.any((qa < q2) & (qa != qb)):
            raise ValueError("the design's q2 block is not diagonal: no compact K")
        qrow = np.where(qa < q2, qa, q2 + (qa - q2) * M + qb)
        n_rows = k_rows(ss, True)
    # to CSR by scipy's linear-time COO conversion (a stable bucket pass: within a row the pairs
    # keep their order, by level, each pair's p1^2 entries in the order of their columns
    # j p1^2 + s p1 + r); no duplicates, so no summation pass
    pp = p1 * p1
    if p1 == 1:
        data = vals[a_idx, 0] * vals[b_idx, 0]
        indices = e_lev[a_idx]
        rows = qrow
    else:  # entry s p1 + r of a pair: B_j[r, a] B_j[s, b]
        data = (vals[b_idx][:, :, None] * vals[a_idx][:, None, :]).reshape(-1, pp)
        indices = (e_lev[a_idx] * pp)[:, None] + np.arange(pp)[None, :]
        rows = np.repeat(qrow, pp)
    K = sp.csr_matrix(sp.coo_matrix((data.ravel(), (rows, indices.ravel())),
                                    shape=(n_rows, l1 * pp)))
    K.has_sorted_indices = True
    return K


def _csr_stan(A: sp.csr_matrix, as_lists: bool = True) -> tuple:
    """A CSR triple with Stan's 1-based indices (w, v, u), as lists or numpy arrays."""
    A = sp.csr_matrix(A)
    A.sort_indices()
    if as_lists:
        return (A.data.astype(float).tolist(), (A.indices.astype(np.int64) + 1).tolist(),
                (A.indptr.astype(np.int64) + 1).tolist())
    if A.nnz >= np.iinfo(np.int32).max:
        raise ValueError("the system has more non-zeros than Stan's int indices can address")
    # Stan's ints are 32-bit: one int32 copy each (no int64 temporaries)
    return (A.data.astype(float, copy=False), np.add(A.indices, 1, dtype=np.int32),
            np.add(A.indptr, 1, dtype=np.int32))


def lmm_stan_data(X: Any, y: Any, terms: Sequence[Any], reml: bool,
                  ss: LmmSuffStats | None = None, as_lists: bool = True) -> dict:
    """Data dict of ``stan/lmer.stan`` (and of any program using ``lmm_functions.stan``).

    Names:
      N, P                 rows, fixed-effect columns
      n_terms, p_term, l_term, n_theta, theta_start (1-based offset of each term's block)
      Q2                   columns of terms 2..K (sum p_k l_k)
      M                    Q2 + P + 1, the size of the reduced system
      C1                   l_1 arrays of p_1 x p_1 matrices Z1j'Z1j
      ZhZh_nz, ZhZh_w, ZhZh_v, ZhZh_u   lower triangle of Zh'Zh as CSR (M x M), 1-based
      diag_q2              1 when the other terms' block of S is diagonal (q2_is_diagonal)
      K_rows, K_nz, K_w, K_v, K_u  with diag_q2: the compact K (k_rows x l_1 p_1^2) as CSR,
                           1-based; else empty (K_rows = K_nz = 0)
      B_nz, B_w, B_v, B_u  without diag_q2: B = Z1'Zh level by level (``level_patterns``):
                           B_v the union of each level's non-zero columns (1-based, B_nz in
                           all), B_u each level's first entry (1-based, l_1 + 1), B_w the p_1
                           values of each entry (B_nz x p_1, row-major); else empty
      REML                 0 = ML, 1 = REML
    The response is centred when X spans the constant (see ``LmmSuffStats``): the deviance is
    unaffected; a program using the trailing Cholesky block for beta must shift by ``y_offset``.
    With ``as_lists=False`` the large arrays (C1 and the CSR arrays) stay numpy arrays (what the
    engines write directly); the default gives plain lists (JSON-ready).
    """
    if ss is None:
        ss = lmm_suffstats(X, y, terms)
    diag_q2 = q2_is_diagonal(ss)
    # one layout per path: the diagonal path's compact K; the dense path's B itself (its C++
    # forms Q = sum_j B_j' W_j B_j: data that grow with B's non-zeros, not their pairs)
    K = (k_matrix(ss, lower_only=True, compact=True) if diag_q2
         else sp.csr_matrix((0, ss.l_term[0] * ss.p_term[0] ** 2)))
    K_w, K_v, K_u = _csr_stan(K, as_lists)
    if diag_q2:
        B_w, B_v, B_u = np.zeros(0), np.zeros(0, np.int32), np.ones(1, np.int32)
    else:
        cols, starts_b, vals = level_patterns(ss)
        B_w, B_v, B_u = vals.ravel(), (cols + 1).astype(np.int32), (starts_b + 1).astype(np.int32)
    if as_lists:
        B_w, B_v, B_u = B_w.tolist(), B_v.tolist(), B_u.tolist()
    ZhZh_low = sp.tril(sp.csr_matrix(ss.ZhZh), format="csr")
    Z_w, Z_v, Z_u = _csr_stan(ZhZh_low, as_lists)
    starts, pos = [], 1
    for pk in ss.p_term:
        starts.append(pos)
        pos += pk * (pk + 1) // 2
    p1 = ss.p_term[0]
    return {
        "N": ss.n,
        "P": ss.p,
        "n_terms": ss.n_terms,
        "p_term": list(ss.p_term),
        "l_term": list(ss.l_term),
        "n_theta": ss.n_theta,
        "theta_start": starts,
        "Q2": ss.q2,
        "M": ss.M,
        "C1": (ss.C1.reshape(ss.l_term[0], p1, p1).tolist() if as_lists
               else ss.C1.reshape(ss.l_term[0], p1, p1)),
        "ZhZh_nz": len(Z_w),
        "ZhZh_w": Z_w,
        "ZhZh_v": Z_v,
        "ZhZh_u": Z_u,
        "diag_q2": int(diag_q2),
        "K_rows": int(K.shape[0]),
        "K_nz": len(K_w),
        "K_w": K_w,
        "K_v": K_v,
        "K_u": K_u,
        "B_nz": len(B_v),
        "B_w": B_w,
        "B_v": B_v,
        "B_u": B_u,
        "REML": int(bool(reml)),
    }


def lmm_stan_inits(terms: Sequence[Any]) -> dict:
    """Inits for ``lmer.stan``: theta at the identity."""
    return {"theta": theta_start(terms).tolist()}
