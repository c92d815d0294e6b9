"""theta, the relative covariance factors T_k and VarCorr: the one home of their layout.

lme4's theta stacks, term by term, the lower triangle of each term's p_k x p_k relative factor
T_k column by column (for p = 2: T[0,0], T[1,0], T[1,1]); the covariance of term k's effects
is sigma^2 T_k T_k' (sigma = 1 for binomial and poisson glmer fits). Every module that packs,
unpacks, normalises or reports theta goes through these functions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on the diagonals of T_k


def tril_positions(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each theta entry of a p x p factor (lme4's column-major order)."""
    rows = [i for j in range(p) for i in range(j, p)]
    cols = [j for j in range(p) for i in range(j, p)]
    return np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)


def theta_layout(p_term: Sequence[int]) -> list[tuple[int, int, int]]:
    """(term, row, column) of every theta entry."""
    return [(k, int(i), int(j)) for k, p in enumerate(p_term) for i, j in zip(*tril_positions(p))]


def n_theta(p_term: Sequence[int]) -> int:
    return sum(int(p) * (int(p) + 1) // 2 for p in p_term)


def factors_of(theta, p_term: Sequence[int]) -> list[np.ndarray]:
    """Split theta into the lower-triangular factors T_k (p_term: each term's size)."""
    theta = np.asarray(theta, dtype=float).ravel()
    need = n_theta(p_term)
    if theta.shape[0] != need:
        raise ValueError(f"theta has length {theta.shape[0]}, the terms need {need}")
    out, pos = [], 0
    for p in p_term:
        rows, cols = tril_positions(p)
        T = np.zeros((p, p))
        T[rows, cols] = theta[pos:pos + len(rows)]
        pos += len(rows)
        out.append(T)
    return out


def theta_of(factors: Sequence[np.ndarray]) -> np.ndarray:
    """The inverse of factors_of: the factors' lower triangles, column by column."""
    parts = [np.asarray(T, dtype=float)[tril_positions(T.shape[0])] for T in factors]
    return np.concatenate(parts) if parts else np.zeros(0)


def column_signs(theta, p_term: Sequence[int]) -> np.ndarray:
    """+1/-1 per theta entry: -1 where normalize_theta flips the entry's column of T_k."""
    out = []
    for T in factors_of(theta, p_term):
        rows, cols = tril_positions(T.shape[0])
        out.extend(np.where(np.diag(T)[cols] < 0, -1.0, 1.0))
    return np.array(out)


def normalize_theta(theta, p_term: Sequence[int]) -> np.ndarray:
    """lme4's representative: column signs of every T_k flipped to a non-negative diagonal.

    The likelihood depends on T_k only through T_k T_k', which a column sign flip keeps; the
    optimizers work on unconstrained theta."""
    factors = factors_of(theta, p_term)
    for T in factors:
        T *= np.where(np.diag(T) < 0, -1.0, 1.0)[None, :]
    return theta_of(factors)


def is_singular(theta, p_term: Sequence[int], tol: float = SINGULAR_TOL) -> bool:
    """lme4's isSingular: some diagonal element of some T_k below tol in magnitude."""
    return singular_factors(factors_of(theta, p_term), tol)


def singular_factors(factors: Sequence[np.ndarray], tol: float = SINGULAR_TOL) -> bool:
    """is_singular for theta already split into its factors T_k."""
    return any(np.any(np.abs(np.diag(T)) < tol) for T in factors)


def varcorr(factors: Sequence[np.ndarray], scale2: float = 1.0
            ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """VarCorr per term: covariance scale2 T_k T_k', standard deviations, correlations (unit
    diagonal; 0/0 where a standard deviation is zero stays nan off the diagonal)."""
    covs, sds, cors = [], [], []
    for T in factors:
        C = scale2 * (T @ T.T)
        sd = np.sqrt(np.diag(C))
        with np.errstate(invalid="ignore", divide="ignore"):
            cor = C / np.outer(sd, sd)
        np.fill_diagonal(cor, 1.0)
        covs.append(C)
        sds.append(sd)
        cors.append(cor)
    return covs, sds, cors
