"""The sparse maps of glmer's Laplace system (bayesmix.lmm.sparsity) against dense numpy.

Applied to random weights, the maps must rebuild H = (Z Lambda)' W (Z Lambda) + I block by block
(the first term's level blocks, the cells of H21), the gradient (Z Lambda)' s and the Schur
complement H22 - H21 H21' exactly as the dense products do (tolerance: rounding, 1e-10)."""
import numpy as np
import pytest
import scipy.sparse as sp

from bayesmix.lmm.sparsity import glmm_sparsity

TOL = dict(rtol=1e-10, atol=1e-10)


def _design(rng, n, terms):
    cols, zs, q0 = [], [], 0
    for p, levels in terms:
        idx = rng.integers(0, levels, n)
        cols.append(q0 + idx[:, None] * p + np.arange(p)[None, :])
        zs.append(rng.normal(size=(n, p)))
        q0 += p * levels
    return np.column_stack(cols), np.column_stack(zs), q0


def _csr_apply(u, v, n_rows, x):
    return sp.csr_matrix((np.ones(len(v)), v - 1, u - 1), shape=(n_rows, len(x))) @ x


@pytest.mark.parametrize("terms", [
    [(1, 20), (1, 7)],                 # scalar crossed terms (the common glmer case)
    [(2, 20), (1, 7)],                 # correlated first term
    [(2, 20), (2, 5), (1, 3)],         # three terms, vector-valued second term
    [(3, 10)],                         # a single term: nothing left dense
    [(1, 30), (3, 4), (1, 6)],
])
def test_maps_rebuild_the_dense_system(terms):
    rng = np.random.default_rng(len(terms) * 10 + terms[0][0])
    n = 300
    cols, zl, q = _design(rng, n, terms)
    p1, q1 = terms[0][0], terms[0][0] * terms[0][1]
    q2 = q - q1
    d = glmm_sparsity(cols, q, q1, p1)
    R = cols.shape[1]
    Zl = sp.csr_matrix((zl.ravel(), cols.ravel(), np.arange(0, n * R + 1, R)),
                       shape=(n, q)).toarray()
    w = rng.uniform(0.5, 2.0, n)
    H = Zl.T @ (w[:, None] * Zl) + np.eye(q)

    pt = np.concatenate([w * zl[:, r] * zl[:, s] for r in range(R) for s in range(r + 1)])
    hv = d["hs_base"] + _csr_apply(d["hs_u"], d["hs_v"], d["n_slot"], pt)
    nA, nC = q1 * p1, d["n_cell"] * p1
    for j in range(q1 // p1):   # level blocks, column-major, lower triangle filled
        block = hv[j * p1 * p1:(j + 1) * p1 * p1].reshape(p1, p1).T
        ref = H[j * p1:(j + 1) * p1, j * p1:(j + 1) * p1]
        np.testing.assert_allclose(np.tril(block), np.tril(ref), **TOL)
    cells = hv[nA:nA + nC].reshape(d["n_cell"], p1)
    H21 = np.zeros((q2, q1))
    for c, (row, lev) in enumerate(zip(d["cell_row"] - 1, d["cell_lev"] - 1)):
        H21[row, lev * p1:(lev + 1) * p1] = cells[c]
    np.testing.assert_allclose(H21, H[q1:, :q1], **TOL)
    s = rng.normal(size=n)
    grad = _csr_apply(d["gr_u"], d["gr_v"], q, (zl * s[:, None]).T.ravel())
    np.testing.assert_allclose(grad, Zl.T @ s, **TOL)

    if q2:
        # H22 from its non-zeros' positions (lower triangle), and S = H22 - H21 H21' (here
        # with unit first-term blocks) as glmm_mode.hpp forms it: every pair of cells of one
        # level, enumerated from lev_u
        h22 = hv[nA + nC:]
        assert np.all(d["h22_row"] >= d["h22_col"])
        H22 = np.zeros((q2, q2))
        H22[d["h22_row"] - 1, d["h22_col"] - 1] = h22
        np.testing.assert_allclose(H22, np.tril(H[q1:, q1:]), **TOL)
        S = H22 + np.tril(H22, -1).T
        for j in range(q1 // p1):
            for a in range(d["lev_u"][j] - 1, d["lev_u"][j + 1] - 1):
                for b in range(d["lev_u"][j] - 1, a + 1):
                    ra, rb = d["cell_row"][a] - 1, d["cell_row"][b] - 1
                    v = cells[a] @ cells[b]
                    S[ra, rb] -= v
                    if a != b:
                        S[rb, ra] -= v
        np.testing.assert_allclose(S, H[q1:, q1:] - H21 @ H21.T, **TOL)
        assert np.all(np.diff(d["cell_lev"]) >= 0)
    else:
        assert d["n_cell"] == 0 and d["n_h22"] == 0


def test_rows_must_list_columns_in_order():
    with pytest.raises(ValueError, match="increase"):
        glmm_sparsity(np.array([[3, 1]]), q=4, q1=2, p1=1)
