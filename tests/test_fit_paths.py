"""The fast paths of ML fits: binary data for the bundled driver, Stan's gradient at the optimum,
stage timings, blocked factorizations. No timing assertions (benchmarks/bench_scale.py times)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import bayesmix
from bayesmix.datasets import load
from bayesmix.engine.bundled import write_binary_data
from bayesmix.lmm.laplace import blocked_cholesky
from bayesmix.ml import _column_signs, _deviance_gradient, stan_gradient

STAGES = {"suffstats", "compile", "transfer", "stan_setup", "stan", "postprocess", "total"}


def read_binary_data(path) -> dict:
    """A reader of the driver's format (the layout documented in driver.cpp)."""
    raw = open(path, "rb").read()
    assert raw[:8] == b"BMXDATA1"
    pos = 8
    (n,) = struct.unpack_from("<I", raw, pos)
    pos += 4
    out = {}
    for _ in range(n):
        (ln,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        name = raw[pos:pos + ln].decode()
        pos += ln
        code = raw[pos]
        pos += 1
        (nd,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        dims = struct.unpack_from(f"<{nd}Q", raw, pos)
        pos += 8 * nd
        size = int(np.prod(dims)) if nd else 1
        dt = np.dtype("<f8") if code == 0 else np.dtype("<i4")
        vals = np.frombuffer(raw, dt, size, pos)
        pos += size * dt.itemsize
        out[name] = (code, dims, vals)
    assert pos == len(raw)
    return out


def test_binary_data_layout(tmp_path):
    m = np.arange(6, dtype=float).reshape(2, 3)
    data = {"N": 3, "x": 2.5, "idx": [1, 2, 3], "m": m, "arr": np.arange(8.0).reshape(2, 2, 2),
            "lv": np.array([[1, 2], [3, 4], [5, 6]]), "empty": [], "flag": True}
    write_binary_data(tmp_path / "d.bin", data)
    got = read_binary_data(tmp_path / "d.bin")
    assert got["N"][:2] == (1, ()) and got["N"][2][0] == 3
    assert got["x"][:2] == (0, ()) and got["x"][2][0] == 2.5
    assert got["idx"][0] == 1 and list(got["idx"][2]) == [1, 2, 3]
    # column-major, as Stan's var_context expects
    assert got["m"][1] == (2, 3) and list(got["m"][2]) == list(m.ravel(order="F"))
    assert list(got["arr"][2]) == list(data["arr"].ravel(order="F"))
    assert got["lv"][0] == 1 and list(got["lv"][2]) == [1, 3, 5, 2, 4, 6]
    assert got["empty"][1] == (0,) and got["flag"][0] == 1


def test_stan_gradient_and_timings():
    fit = bayesmix.Model("Reaction ~ Days + (Days | Subject)", load("sleepstudy")).fit()
    if fit.run.engine.name != "bundled":
        pytest.skip("the gradient line comes from the bundled driver")
    assert stan_gradient(fit.run) is not None
    fd = _deviance_gradient(fit.estimates.theta, fit.stan_data)
    np.testing.assert_allclose(fit.gradient, fd, atol=1e-6)
    assert fit.converged and STAGES <= set(fit.timings)
    assert all(v >= 0 for v in fit.timings.values())
    g = bayesmix.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                       load("cbpp"), family="binomial").fit()
    assert STAGES <= set(g.timings) and g.converged


def _crossed_slopes(seed: int = 7) -> "pd.DataFrame":
    import pandas as pd
    rng = np.random.default_rng(seed)
    n = 400
    g, h, k = rng.integers(0, 30, n), rng.integers(0, 12, n), rng.integers(0, 5, n)
    x = rng.normal(size=n)
    y = (1 + 0.5 * x + rng.normal(size=30)[g] + 0.4 * rng.normal(size=12)[h] * x
         + 0.3 * rng.normal(size=12)[h] + 0.5 * rng.normal(size=5)[k] + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h],
                         "k": [f"k{i}" for i in k]})


@pytest.mark.parametrize("formula,reml", [
    ("y ~ x + (1 | g) + (1 + x | h)", True),            # p_k > 1 block in terms 2..K
    ("y ~ x + (1 + x | g) + (1 | h) + (1 | k)", False),  # p1 > 1, two scalar terms
    ("y ~ x + (1 + x | g) + (1 + x | h)", False),        # both blocked
])
def test_lmer_gradient_away_from_the_optimum(formula, reml):
    """Stan's gradient of the lmer program (the dense reduced system's hand-written reverse
    pass, stan/lmm_reduce.hpp) equals central differences of the independent numpy deviance
    (bayesmix.lmm.deviance_from_stan_data) at a point one L-BFGS step from the start, where
    the gradient is far from zero. Tolerance: 1e-5 relative to the gradient's size (the
    differences' own error is ~1e-8)."""
    from bayesmix.engine import compile_model
    from bayesmix.ml import lmer_code, lmer_data

    model = bayesmix.Model(formula, _crossed_slopes())
    data, _ = lmer_data(model.design, reml)
    assert data["diag_q2"] == 0
    prog = compile_model(lmer_code(), "lmer", "auto")
    if prog.info.name != "bundled":
        pytest.skip("the gradient line comes from the bundled driver")
    inits = {"theta": [0.8 - 0.1 * i for i in range(data["n_theta"])]}
    run = prog.optimize(data, inits=inits, iter=1, accept_line_search_failure=True)
    theta = np.array([run.optimum()[f"theta[{i + 1}]"] for i in range(data["n_theta"])])
    grad = -2.0 * stan_gradient(run)  # lp = -deviance / 2
    fd = _deviance_gradient(theta, data)
    assert np.max(np.abs(fd)) > 1.0  # away from the optimum
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-5 * np.max(np.abs(fd)))


def test_column_signs():
    # T1 = [[-1, 0], [0.5, 2]] (column 1 flipped), T2 = [[-3]]
    theta = np.array([-1.0, 0.5, 2.0, -3.0])
    assert _column_signs(theta, [2, 1]).tolist() == [-1.0, -1.0, 1.0, -1.0]


@pytest.mark.parametrize("q1,p1,q", [(6, 1, 10), (8, 2, 14), (6, 3, 6), (5, 1, 5), (9, 3, 12)])
def test_blocked_cholesky(q1, p1, q):
    rng = np.random.default_rng(q1 + q)
    Z = rng.normal(size=(50, q))
    H = Z.T @ Z + np.eye(q)
    l1 = q1 // p1
    for a in range(l1):  # the first term's block is block diagonal
        for b in range(l1):
            if a != b:
                H[a * p1:(a + 1) * p1, b * p1:(b + 1) * p1] = 0.0
    np.testing.assert_allclose(blocked_cholesky(H, q1, p1), np.linalg.cholesky(H), atol=1e-12)
