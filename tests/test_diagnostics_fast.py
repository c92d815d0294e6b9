"""The vectorised R-hat / bulk ESS / tail ESS of bayesmix.bayes.diagnostics against
ArviZ itself (az.rhat method "rank", az.ess "bulk" and "tail"), one scalar at a time.

Tolerance: 1e-8 relative. The two computations differ only in float summation order
(means over chains of the autocovariances, the sum of the autocorrelations), which
moves results by ~1e-15 relative; the ranks, quantiles and FFTs are the same."""

import warnings

import numpy as np
import pytest

import arviz as az

from bayesmix.bayes.diagnostics import _worst, diagnose, rhat_ess

RTOL = 1e-8


def _arviz(x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = [[], [], []]
        for j in range(x.shape[2]):
            col = x[:, :, j]
            out[0].append(az.rhat(col))
            out[1].append(az.ess(col, method="bulk"))
            out[2].append(az.ess(col, method="tail"))
    return [np.asarray(v, dtype=float) for v in out]


def _check(x):
    ours = rhat_ess(x)
    ref = _arviz(x)
    for name, a, b in zip(("rhat", "ess_bulk", "ess_tail"), ours, ref):
        assert a.shape == b.shape
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        ok = ~np.isnan(b)
        np.testing.assert_allclose(a[ok], b[ok], rtol=RTOL, atol=0, err_msg=name)
    return ours


def _ar1(rng, chains, draws, k, phi):
    e = rng.normal(size=(chains, draws, k))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0]
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


@pytest.mark.parametrize("chains", [1, 2, 4])
@pytest.mark.parametrize("draws", [4, 5, 51, 200, 301])
def test_matches_arviz(chains, draws):
    rng = np.random.default_rng(100 * chains + draws)
    parts = [
        rng.normal(size=(chains, draws, 4)),                        # iid normal
        _ar1(rng, chains, draws, 4, 0.9),                           # strongly correlated
        _ar1(rng, chains, draws, 2, -0.5),                          # antithetic
        rng.standard_t(1.5, size=(chains, draws, 3)),               # heavy tails
        rng.normal(size=(chains, draws, 2)) + 3.0 * np.arange(chains)[:, None, None],  # bad R-hat
        np.round(rng.normal(size=(chains, draws, 2))),              # many ties
        rng.poisson(0.05, size=(chains, draws, 1)).astype(float),   # mostly zeros
        np.full((chains, draws, 1), 2.5),                           # constant
    ]
    x = np.concatenate(parts, axis=2)
    rhat, bulk, tail = _check(x)
    assert np.isnan(rhat[-1]) and bulk[-1] == tail[-1] == 2 * chains * (draws // 2)
    if chains == 1:
        assert np.isnan(rhat).all()


def test_nan_and_short_inputs():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 60, 5))
    x[1, 7, 2] = np.nan
    rhat, bulk, tail = _check(x)
    assert np.isnan(rhat[2]) and np.isnan(bulk[2]) and np.isnan(tail[2])
    assert not np.isnan(bulk[[0, 1, 3, 4]]).any()
    x = rng.normal(size=(3, 3, 2))                                  # < 4 draws
    assert all(np.isnan(v).all() for v in rhat_ess(x))
    assert all(v.shape == (0,) for v in rhat_ess(np.zeros((2, 10, 0))))


def test_typical_size_matches_arviz():
    rng = np.random.default_rng(11)
    x = np.concatenate([_ar1(rng, 2, 500, 60, 0.7), rng.normal(size=(2, 500, 60))], axis=2)
    x[1, :, :10] += 0.3
    _check(x)


def _idata(rng, chains=2, draws=300):
    lev = [f"school {i}" for i in range(30)]
    post = {
        "Intercept": rng.normal(size=(chains, draws)),
        "b": _ar1(rng, chains, draws, 3, 0.8),
        "sd": np.abs(rng.normal(size=(chains, draws, 2, 2))),
        "r": rng.normal(size=(chains, draws, 30))
        + 0.4 * (np.arange(30) == 17) * np.arange(chains)[:, None, None],
        "sigma": np.full((chains, draws), 1.0),
    }
    stats = {
        "diverging": rng.random((chains, draws)) < 0.01,
        "tree_depth": rng.integers(2, 11, size=(chains, draws)),
        "energy": rng.normal(size=(chains, draws)).cumsum(axis=1) * 0.1
        + rng.normal(size=(chains, draws)),
    }
    return az.from_dict(posterior=post, sample_stats=stats,
                        coords={"coef": ["x1", "x2", "x3"], "level": lev, "g": ["a", "b"]},
                        dims={"b": ["coef"], "r": ["level"], "sd": ["g", "k"]})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_diagnose_same_worst_values_and_labels(seed):
    idata = _idata(np.random.default_rng(seed))
    d = diagnose(idata, sampling_seconds=3.0)
    post = idata.posterior
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = [_worst(az.rhat(post), np.nanargmax),
                  _worst(az.ess(post, method="bulk"), np.nanargmin),
                  _worst(az.ess(post, method="tail"), np.nanargmin)]
    after = [(d.max_rhat, d.max_rhat_param), (d.min_ess_bulk, d.min_ess_bulk_param),
             (d.min_ess_tail, d.min_ess_tail_param)]
    for (v0, p0), (v1, p1) in zip(before, after):
        assert p1 == p0
        assert v1 == pytest.approx(v0, rel=RTOL)
    assert d.max_rhat_param.startswith(("r[", "b[", "sd[", "Intercept"))
    assert d.divergences == int(idata.sample_stats["diverging"].values.sum())
    assert len(d.ebfmi) == 2


def test_many_scalars_split_over_threads_match_arviz(monkeypatch):
    """K >= 512 scalars (random effects of a large model) are split over a thread per core:
    the same values as the one-thread pass, and ArviZ's on a sample of the columns."""
    import bayesmix.bayes.diagnostics as dg
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(size=(2, 120, 400)), _ar1(rng, 2, 120, 200, 0.8)], axis=2)
    monkeypatch.setattr(dg, "cores", lambda: 1)
    one = dg.rhat_ess(x)
    monkeypatch.setattr(dg, "cores", lambda: 2)
    two = dg.rhat_ess(x)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    cols = np.arange(0, 600, 37)
    ref = _arviz(x[:, :, cols])
    for a, b in zip(two, ref):
        np.testing.assert_allclose(a[cols], b, rtol=RTOL, atol=0)
