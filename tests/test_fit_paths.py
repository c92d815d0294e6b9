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
