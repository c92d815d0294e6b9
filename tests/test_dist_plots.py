"""Plots and accessors of distributional posterior fits (bayesmix.plots on
bayesmix.dist.nuts.DistPosteriorFit): what the axes contain is checked against independent
computations from the data and the draws (np.bincount of y, scipy's gaussian_kde of y, the
fit's own fixef / ranef / epred draws), not against pinned pictures. Short NUTS runs (one
chain, 150 + 100; the plots' content is compared with the same draws, so mixing does not
matter) on reference data sets (tests/reference/families); distributional ML fits raise a
BayesmixError naming the alternative where a plot needs what they lack.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from bayesmix import plots  # noqa: E402
from bayesmix.design.dist import build_dist_design  # noqa: E402
from bayesmix.errors import BayesmixError  # noqa: E402
from bayesmix.formula.distributional import bf  # noqa: E402

REF = Path(__file__).parent / "reference" / "families"

CASES = {
    "zip": ("zero_inflated_poisson_zi_re", bf("y ~ x + (1 | g)", zi="~ 1 + (1 | g)"),
            "zero_inflated_poisson", None),
    "cumulative": ("cumulative_logit", "y ~ x + (1 | g)", "cumulative", "logit"),
    "gaussian": ("gaussian_sigma", bf("y ~ x + (1 | g)", sigma="~ x"), "gaussian", None),
    "beta_binomial": ("beta_binomial", "cbind(y, trials - y) ~ x + (1 | g)", "beta_binomial",
                      None),
}


def _design(key):
    from bayesmix.families import get_family
    csv, formula, family, link = CASES[key]
    fam = get_family(family, link, fittable=False) if link else family
    return build_dist_design(formula, pd.read_csv(REF / f"{csv}.csv"), fam)


@pytest.fixture(scope="module")
def fits():
    from bayesmix.dist.nuts import fit_dist_nuts
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in CASES:
            out[key] = fit_dist_nuts(_design(key), chains=1, iter_warmup=150,
                                     iter_sampling=100, seed=3, show_progress=False,
                                     diagnostics=False)
    return out


@pytest.fixture(autouse=True)
def _close():
    yield
    import matplotlib.pyplot as plt
    plt.close("all")


@pytest.mark.parametrize("key", ["zip", "beta_binomial"])
def test_ppc_counts_are_bars_of_the_observed_frequencies(fits, key):
    fit = fits[key]
    y = np.asarray(fit.design.y).astype(int)
    ax = plots.plot_ppc(fit, ndraws=20)
    heights = np.array([p.get_height() for p in ax.patches])
    xs = np.array([p.get_x() + p.get_width() / 2 for p in ax.patches])
    freq = np.bincount(y, minlength=len(heights)) / len(y)
    np.testing.assert_allclose(xs, np.arange(len(heights)))
    np.testing.assert_allclose(heights, freq[:len(heights)], atol=1e-12)
    assert heights.sum() == pytest.approx(1.0)  # every observed value has its bar


def test_ppc_cumulative_shows_category_frequencies(fits):
    fit = fits["cumulative"]
    y = np.asarray(fit.design.y).astype(int)
    K = len(fit.design.categories)
    ax = plots.plot_ppc(fit, ndraws=20)
    heights = np.array([p.get_height() for p in ax.patches])
    xs = np.array([p.get_x() + p.get_width() / 2 for p in ax.patches])
    np.testing.assert_allclose(xs, np.arange(1, K + 1))
    np.testing.assert_allclose(heights, np.bincount(y, minlength=K + 1)[1:] / len(y))
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(c) for c in
                                                           fit.design.categories]


def test_ppc_continuous_is_a_density_of_y(fits):
    from scipy import stats
    fit = fits["gaussian"]
    y = np.asarray(fit.design.y, dtype=float)
    ax = plots.plot_ppc(fit, ndraws=10)
    observed = [ln for ln in ax.lines if ln.get_label() == "observed"][0]
    grid, dens = observed.get_data()
    np.testing.assert_allclose(dens, stats.gaussian_kde(y)(grid), rtol=1e-10)
    assert len(ax.lines) == 11 and ax.get_xlabel() == "y"


def test_coef_equals_fixef_plus_ranef(fits):
    """coef(): population-level plus group-level effects per level and predictor (the
    mean of sums is the sum of means, so the posterior means add up exactly)."""
    fit = fits["zip"]
    fe = fit.fixef()["Estimate"]
    re = fit.ranef()
    c = fit.coef()["g"]
    assert list(c.columns) == ["Intercept", "x", "zi_Intercept"]
    np.testing.assert_allclose(c["Intercept"], fe["Intercept"] + re["g"]["Intercept"])
    np.testing.assert_allclose(c["x"], fe["x"])
    np.testing.assert_allclose(c["zi_Intercept"],
                               fe["zi_Intercept"] + re["g (zi)"]["zi_Intercept"])
    # gaussian with a sigma formula: sigma's coefficients are the same for every level
    g = fits["gaussian"]
    cg = g.coef()["g"]
    np.testing.assert_allclose(cg["sigma_x"], g.fixef().loc["sigma_x", "Estimate"])


def test_coef_of_cumulative_moves_the_thresholds(fits):
    """P(y <= k) = F(c_k - eta): a group intercept r moves every threshold to c_k - r."""
    fit = fits["cumulative"]
    fe, re = fit.fixef()["Estimate"], fit.ranef()["g"]["Intercept"]
    c = fit.coef()["g"]
    K = len(fit.design.categories)
    assert list(c.columns) == [f"Intercept[{k}]" for k in range(1, K)] + ["x"]
    for k in range(1, K):
        np.testing.assert_allclose(c[f"Intercept[{k}]"], fe[f"Intercept[{k}]"] - re)


def test_ranef_draws(fits):
    fit = fits["zip"]
    r = fit.ranef_draws("g")
    assert r.dims == ("chain", "draw", "g_level", "coef")
    assert list(r.coords["coef"].values) == ["Intercept", "zi_Intercept"]
    np.testing.assert_allclose(r.sel(coef="zi_Intercept").mean(("chain", "draw")),
                               fit.ranef()["g (zi)"]["zi_Intercept"])
    with pytest.raises(BayesmixError, match="no grouping factor 'h'"):
        fit.ranef_draws("h")


def test_plot_ranef_panels_per_predictor(fits):
    fit = fits["zip"]
    axes = plots.plot_ranef(fit)
    assert [a.get_title() for a in axes] == ["Intercept | g", "zi_Intercept | g (zi)"]
    # the points are the posterior means, sorted
    x = axes[1].lines[0].get_xdata()
    np.testing.assert_allclose(x, np.sort(fit.ranef()["g (zi)"]["zi_Intercept"]))


def test_plot_coef_per_predictor(fits):
    fit = fits["gaussian"]
    ax = plots.plot_coef(fit)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "sigma_x"]
    np.testing.assert_allclose(ax.lines[0].get_xdata(),
                               fit.fixef().loc[["x", "sigma_x"], "Estimate"])
    ax = plots.plot_coef(fit, intercept=True)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(fit.fixef().index)


@pytest.mark.parametrize("key", ["zip", "cumulative"])
def test_plot_effects_is_the_mean_of_epred(fits, key):
    """Population-level conditional effect: the mean and central interval of epred's draws
    on the grid (random effects at zero)."""
    fit = fits[key]
    ce = plots.conditional_effects(fit, "x", points=15)
    grid = plots.effect_grid(fit, "x", points=15)
    draws = fit.epred(grid, re_form="~0", seed=1)
    np.testing.assert_allclose(ce["estimate"], draws.mean(axis=0))
    np.testing.assert_allclose(ce["upper"], np.quantile(draws, 0.975, axis=0))
    ax = plots.plot_effects(fit, "x", points=15)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), ce["estimate"])


def test_dist_ml_fits_refuse_clearly():
    """ML fits: plot_ppc works (simulated responses); plots needing conditional SDs or a
    response-scale interval raise BayesmixError naming the alternative."""
    from bayesmix.dist.ml import fit_dist_ml
    fit = fit_dist_ml(_design("zip"))
    ax = plots.plot_ppc(fit, ndraws=10)
    y = np.asarray(fit.design.y).astype(int)
    heights = np.array([p.get_height() for p in ax.patches])
    np.testing.assert_allclose(heights, (np.bincount(y, minlength=len(heights))
                                         / len(y))[:len(heights)])
    for call, hint in [(lambda: plots.plot_ranef(fit), "ranef"),
                       (lambda: plots.plot_coef(fit), "confint"),
                       (lambda: plots.plot_effects(fit, "x"), "epred")]:
        with pytest.raises(BayesmixError, match=hint):
            call()
