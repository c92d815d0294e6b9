"""Simulation-based calibration: uniform ranks for a small gaussian (marginal program) and a
small binomial (generic joint program) model; identical ranks on serial and pooled runs.

Sizes are kept small (50 simulations, 19 thinned draws each, 200 warmup iterations) so the
file runs in well under a minute; the uniformity check is a chi-square test per parameter at
p > 0.001 (about 10 parameters per model: a false alarm has probability ~1% per model)."""

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.calibration import rank_uniformity


def _gaussian_model():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(5), 6)
    x = rng.normal(size=30)
    df = pd.DataFrame({"g": [f"g{i}" for i in g], "x": x,
                       "y": 1 + 0.5 * x + rng.normal(size=5)[g] + rng.normal(size=30)})
    priors = [bayesmix.prior("normal(0, 2)", cls="Intercept"),
              bayesmix.prior("normal(0, 1)", cls="b"),
              bayesmix.prior("exponential(1)", cls="sd"),
              bayesmix.prior("exponential(1)", cls="sigma")]
    return bayesmix.Model("y ~ x + (1 | g)", df, priors=priors)


def _binomial_model():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(6), 3)
    x = np.tile([-1.0, 0.0, 1.0], 6)
    n = np.full(18, 10)
    p = 1 / (1 + np.exp(-(0.3 * x + rng.normal(size=6)[g] * 0.5)))
    df = pd.DataFrame({"g": [f"h{i}" for i in g], "x": x, "s": rng.binomial(n, p), "n": n})
    priors = [bayesmix.prior("normal(0, 1)", cls="Intercept"),
              bayesmix.prior("normal(0, 1)", cls="b"),
              bayesmix.prior("exponential(2)", cls="sd")]
    return bayesmix.Model("cbind(s, n - s) ~ x + (1 | g)", df, family="binomial",
                          priors=priors)


def test_sbc_gaussian_uniform_and_reproducible():
    model = _gaussian_model()
    with ProcessPoolExecutor(2) as pool:
        res = bayesmix.sbc(model, 50, executor=pool, seed=1)
    again = bayesmix.sbc(model, 50, executor="serial", seed=1)
    pd.testing.assert_frame_equal(res.ranks, again.ranks, check_exact=True)
    assert res.n_failed == 0
    assert res.max_rank == 19
    # named as az.summary labels the InferenceData (docs/results.md)
    assert list(res.ranks.columns[:4]) == ["Intercept", "x", "sd(1|g)", "sigma"]
    assert "1|g[g0]" in res.ranks.columns
    assert res.ranks.min().min() >= 0 and res.ranks.max().max() <= 19
    u = res.uniformity()
    assert (u["p_value"] > 0.001).all(), u
    # the true values come from the prior: exponential(1) sds, positive
    assert (res.truth["sigma"] > 0).all() and (res.truth["sd(1|g)"] > 0).all()
    assert res.program == "marginal"
    assert "SBC: 50 simulations (marginal program)" in repr(res)
    assert "<table" in res._repr_html_() and "sd(1|g)" in res._repr_html_()


def test_sbc_binomial_uniform():
    model = _binomial_model()
    res = bayesmix.sbc(model, 50, executor=2, seed=2, params=["b", "sd"])
    assert res.n_failed == 0, res.messages
    assert list(res.ranks.columns) == ["Intercept", "x", "sd(1|g)"]
    assert res.program == "generic"
    u = res.uniformity()
    assert (u["p_value"] > 0.001).all(), u


def test_rank_uniformity_detects_bad_ranks():
    rng = np.random.default_rng(0)
    good = pd.DataFrame({"a": rng.integers(0, 20, size=200)})
    piled = pd.DataFrame({"a": np.minimum(rng.integers(0, 20, size=200),
                                          rng.integers(0, 20, size=200))})  # skewed low
    assert rank_uniformity(good, 19)["p_value"].iloc[0] > 0.001
    assert rank_uniformity(piled, 19)["p_value"].iloc[0] < 1e-6
    assert rank_uniformity(good, 19)["df"].iloc[0] == 19  # 200 ranks: 20 bins of 1 value


def test_sbc_needs_proper_priors():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"g": np.repeat(["a", "b", "c"], 4), "y": rng.normal(size=12),
                       "x": rng.normal(size=12)})
    model = bayesmix.Model("y ~ x + (1 | g)", df, priors=[bayesmix.prior("flat", cls="b")])
    with pytest.raises(bayesmix.BayesmixError, match="proper priors"):
        bayesmix.sbc(model, 5)


def test_sbc_detects_a_mismatched_prior(monkeypatch):
    """Power check: fits that use a different sigma prior (exponential(20)) from the one
    the truths were drawn from (exponential(1)) shrink sigma below its true value, so the
    true sigma ranks high and the check fails."""
    import sys
    sbc_module = sys.modules["bayesmix.calibration"]  # the attribute bayesmix.sbc is the function
    real = sbc_module._sbc_task

    def wrong_prior_task(shared, item):
        design, priors, kwargs, names, params = shared
        priors = tuple(p for p in priors if p.cls != "sigma") + (
            bayesmix.prior("exponential(20)", cls="sigma"),)
        return real((design, priors, kwargs, names, params), item)

    monkeypatch.setattr(sbc_module, "_sbc_task", wrong_prior_task)
    res = bayesmix.sbc(_gaussian_model(), 30, executor="serial", seed=3, params=["sigma"])
    assert res.uniformity()["p_value"]["sigma"] < 1e-4
    assert res.ranks["sigma"].mean() > 14  # uniform on 0..19 has mean 9.5
