"""The sparse structure of glmer's Laplace system: data of `stan/glmer.stan`.

The Newton solve and the log determinant of H = (Z Lambda)' W (Z Lambda) + I eliminate the
first term's levels (the C++ of stan/glmm_mode.hpp). What is left dense is the other terms'
block H22 (q2 x q2); the first term's level blocks A_j and the cross block H21 are kept as their
non-zeros. Everything here depends on the design only (which columns each row touches), never
on the parameters, so it is computed once, in numpy, and passed as integer maps. Their size
grows with the rows and the cells of H21, not with q1 x q2 (the pairs of cells that share a
level, which update S, are enumerated in C++ from the cells' level order).

Conventions (0-based here, 1-based in the returned data):

* ``cols`` (n x R): the column of Z Lambda of each row's r-th non-zero, increasing along a row.
* pair terms: for each pair s <= r of a row's non-zeros (r outer, s inner), the n products
  w_i zl_ir zl_is, stacked pair by pair (``pt`` in the Stan code).
* slots (the Hessian's values): the level blocks A_j (p1 x p1, column-major, level by level),
  then the cells of H21 (p1 values each), then H22's non-zeros (lower triangle and diagonal,
  ordered by column-major position).
* H22's non-zeros: their (row, column), row >= column (``h22_row``, ``h22_col``).
* cells: the distinct (row of H22's side, level of the first term) pairs that occur, sorted by
  level, then row (``lev_u``: each level's first cell).
"""
from __future__ import annotations

import numpy as np


def _csr(slot: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(v, u) of the 0/1 CSR matrix with one entry per column k in row slot[k] (1-based)."""
    order = np.argsort(slot, kind="stable")
    u = np.concatenate([[0], np.cumsum(np.bincount(slot, minlength=n_rows))]) + 1
    return (order + 1).astype(np.int32), u.astype(np.int32)


def glmm_sparsity(cols: np.ndarray, q: int, q1: int, p1: int) -> dict[str, np.ndarray | int]:
    """The data of glmer.stan that describe the sparse system (names as in its data block)."""
    cols = np.asarray(cols, dtype=np.int64)
    n, R = cols.shape
    q2 = q - q1
    if np.any(np.diff(cols, axis=1) <= 0):
        raise ValueError("the non-zero columns of a row of Z must increase")
    pr, ps = np.tril_indices(R)          # pairs (r, s <= r), r outer: the pair terms' order
    cr = cols[:, pr].T.ravel()           # pair term k = pair * n + i
    cs = cols[:, ps].T.ravel()

    in_a = cr < q1                       # both in the first term (same level)
    in_c = (cr >= q1) & (cs < q1)        # H21
    in_22 = cs >= q1
    cell_key = (cs[in_c] // p1) * q2 + (cr[in_c] - q1)
    keys, cell_of = np.unique(cell_key, return_inverse=True)
    n_cell = len(keys)
    cell_lev, cell_row = keys // q2, keys % q2
    # H22's non-zeros (lower triangle, the diagonal always): key b * q2 + a, a >= b
    h22_key = (cs[in_22] - q1) * q2 + (cr[in_22] - q1)
    h22_keys, h22_of = np.unique(np.concatenate([h22_key, np.arange(q2) * (q2 + 1)]),
                                 return_inverse=True)
    h22_of = h22_of[:len(h22_key)]

    nA, nC = q1 * p1, n_cell * p1
    slot = np.empty(len(cr), np.int64)
    slot[in_a] = (cr[in_a] // p1) * p1 * p1 + (cs[in_a] % p1) * p1 + cr[in_a] % p1
    slot[in_c] = nA + cell_of * p1 + cs[in_c] % p1
    slot[in_22] = nA + nC + h22_of
    n_slot = nA + nC + len(h22_keys)
    base = np.zeros(n_slot)
    base[np.arange(q1 // p1)[:, None] * p1 * p1 + np.arange(p1)[None, :] * (p1 + 1)] = 1.0
    h22_b, h22_a = h22_keys // q2, h22_keys % q2
    base[nA + nC + np.flatnonzero(h22_a == h22_b)] = 1.0
    hs_v, hs_u = _csr(slot, n_slot)

    # gradient: element r * n + i of zl's column-major values goes to column cols[i, r]
    gr_v, gr_u = _csr(cols.T.ravel(), q)

    l1 = q1 // p1
    per_level = np.bincount(cell_lev, minlength=l1)
    lev_u = np.concatenate([[0], np.cumsum(per_level)]) + 1
    i32 = np.int32  # Stan's ints
    return {
        "n_slot": int(n_slot), "n_cell": int(n_cell), "n_h22": int(len(h22_keys)),
        "hs_base": base, "hs_v": hs_v, "hs_u": hs_u, "gr_v": gr_v, "gr_u": gr_u,
        "cell_row": (cell_row + 1).astype(i32), "cell_lev": (cell_lev + 1).astype(i32),
        "lev_u": lev_u.astype(i32),
        "h22_row": (h22_a + 1).astype(i32), "h22_col": (h22_b + 1).astype(i32),
    }
