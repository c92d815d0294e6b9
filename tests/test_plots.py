"""bayesmix.plots: what each plot draws, read back from the matplotlib artists and compared
with lme4's numbers (ML fits: tests/reference/lme4_refs.json), with intervals computed here
from the posterior draws (posterior fits), and with independent numpy/scipy computations
(densities, frequencies, quantiles). Agg backend; every figure is saved to a PNG."""

import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats  # noqa: E402

import bayesmix  # noqa: E402
from bayesmix import plots  # noqa: E402
from bayesmix.datasets import load  # noqa: E402
from bayesmix.errors import BayesmixError  # noqa: E402

REFS = json.loads((Path(__file__).parent / "reference" / "lme4_refs.json").read_text())["cases"]
SLEEP = "Reaction ~ Days + (Days | Subject)"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
Z95 = stats.norm.ppf(0.975)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def sleep_model():
    return bayesmix.Model(SLEEP, load("sleepstudy"))


@pytest.fixture(scope="module")
def reml(sleep_model):
    return sleep_model.fit()


@pytest.fixture(scope="module")
def post(sleep_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sleep_model.sample(chains=2, iter_warmup=500, iter_sampling=500, seed=4,
                                  show_progress=False)


@pytest.fixture(scope="module")
def cbpp_fits():
    m = bayesmix.Model(CBPP, load("cbpp"), family="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return m.fit(), m.sample(chains=2, iter_warmup=300, iter_sampling=300, seed=2,
                                 show_progress=False)


def _errorbars(ax):
    """(x, y, lower, upper) of the first errorbar container, horizontal bars."""
    cont = ax.containers[0]
    line, _, (bars, *_) = cont.lines
    segs = np.array(bars.get_segments())  # (n, 2 ends, xy)
    return (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float),
            segs[:, 0, 0], segs[:, 1, 0])


def _top_down(ax) -> list[str]:
    """The y tick labels from the top of the panel down."""
    pairs = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())),
                   key=lambda p: -p[0])
    return [t for _, t in pairs]


def _saved(ax, tmp_path, name):
    path = tmp_path / f"{name}.png"
    ax.figure.savefig(path)
    assert path.stat().st_size > 5000  # a real picture, not an empty canvas
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_caterpillar_of_conditional_modes_matches_lme4(reml, tmp_path):
    axes = reml.plot_ranef()
    ref = REFS["sleepstudy_slope_REML"]["results"]["ranef"]["Subject"]
    assert len(axes) == 2
    for ax, coef in zip(axes, ["(Intercept)", "Days"]):
        assert ax.get_title() == f"{coef} | Subject" and ax.get_ylabel() == "Subject"
        x, y, lo, hi = _errorbars(ax)
        assert len(x) == 18  # one point per level
        mode = np.array(ref["values"][coef])
        sd = np.array(ref["condsd"][coef])
        order = np.argsort(mode, kind="stable")
        # sorted by the mode; labels are the levels in that order
        assert _top_down(ax)[::-1] == [ref["levels"][i] for i in order]  # smallest at the bottom
        np.testing.assert_allclose(x, mode[order], rtol=2e-3, atol=2e-3 * np.abs(mode).max())
        np.testing.assert_allclose(hi - x, Z95 * sd[order], rtol=2e-3)
        np.testing.assert_allclose(x - lo, Z95 * sd[order], rtol=2e-3)
    assert "1.96" in axes[0].get_xlabel()
    _saved(axes[0], tmp_path, "ranef_ml")


def test_caterpillar_of_posterior_intervals(post, tmp_path):
    axes = post.plot_ranef(level=0.9)
    r = post.named_draws().posterior["r_Subject"].reshape(-1, 18, 2)
    levels = list(post.ranef()["Subject"].index)
    for m, ax in enumerate(axes):
        x, _, lo, hi = _errorbars(ax)
        mean = r[..., m].mean(axis=0)
        order = np.argsort(mean, kind="stable")
        np.testing.assert_allclose(x, mean[order], rtol=1e-12)
        np.testing.assert_allclose(lo, np.quantile(r[..., m], 0.05, axis=0)[order], rtol=1e-12)
        np.testing.assert_allclose(hi, np.quantile(r[..., m], 0.95, axis=0)[order], rtol=1e-12)
        assert _top_down(ax)[::-1] == [levels[i] for i in order]
    assert "posterior mean, 90% interval" == axes[0].get_xlabel()
    with pytest.raises(BayesmixError, match="no grouping factor 'subject'"):
        post.plot_ranef("subject")
    _saved(axes[0], tmp_path, "ranef_post")


def test_coefficient_plot(reml, post, cbpp_fits, tmp_path):
    # ML: Wald intervals from lme4's standard errors
    ml, _ = cbpp_fits
    ref = REFS["cbpp_binomial"]["results"]
    ax = ml.plot_coef(intercept=True)
    x, y, lo, hi = _errorbars(ax)
    names = list(ref["fixef"])
    assert _top_down(ax) == names  # first on top
    np.testing.assert_allclose(x[np.argsort(-y)], [ref["fixef"][n] for n in names], rtol=2e-3)
    # lme4 run to a tight optimum (glmm_refs.json; its default stops short, see test_glmer)
    glmm = json.loads((Path(__file__).parent / "reference" / "glmm_refs.json").read_text())
    tight = glmm["cases"]["cbpp_binomial"]["tight"]["fixef_se"]
    np.testing.assert_allclose(((hi - lo) / 2)[np.argsort(-y)],
                               [Z95 * tight[n] for n in names], rtol=2e-3)
    # the intercept is left out by default
    ax = ml.plot_coef()
    assert _top_down(ax) == names[1:]
    # posterior: mean and central quantiles of the draws
    ax = post.plot_coef(intercept=True, level=0.8)
    b = post.named_draws().posterior["b"].reshape(-1, 2)
    x, y, lo, hi = _errorbars(ax)
    order = np.argsort(-y)
    np.testing.assert_allclose(x[order], b.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(lo[order], np.quantile(b, 0.1, axis=0), rtol=1e-12)
    np.testing.assert_allclose(hi[order], np.quantile(b, 0.9, axis=0), rtol=1e-12)
    assert ax.get_xlabel() == "posterior mean, 80% interval"
    _saved(ax, tmp_path, "coef")


def test_ppc_continuous_draws_every_replicate_and_the_data(post, tmp_path):
    ax = post.plot_ppc(ndraws=30)
    lines = ax.get_lines()
    assert len(lines) == 31
    y = load("sleepstudy")["Reaction"].to_numpy(float)
    obs = lines[-1]
    np.testing.assert_allclose(obs.get_ydata(), stats.gaussian_kde(y)(obs.get_xdata()),
                               rtol=1e-10)
    # each replicate is one posterior predictive draw's density
    yrep = post.to_arviz().posterior_predictive["Reaction"].values.reshape(-1, 180)
    first = lines[0]
    dens = [stats.gaussian_kde(r)(first.get_xdata()) for r in yrep]
    assert min(np.abs(d - first.get_ydata()).max() for d in dens) < 1e-12
    assert ax.get_xlabel() == "Reaction" and ax.get_ylabel() == "density"
    _saved(ax, tmp_path, "ppc")


def test_ppc_counts_and_ml_simulations(cbpp_fits, tmp_path):
    ml, post = cbpp_fits
    y = load("cbpp")["incidence"].to_numpy()
    for fit in (post, ml):
        ax = fit.plot_ppc(ndraws=40)
        heights = np.array([p.get_height() for p in ax.patches])
        freq = np.bincount(y, minlength=len(heights)) / len(y)
        np.testing.assert_allclose(heights, freq[:len(heights)], rtol=1e-12)
        assert len(ax.containers[1].lines[0].get_xdata()) == len(heights)
    assert "simulated" in ax.get_legend().get_texts()[1].get_text()
    _saved(ax, tmp_path, "ppc_counts")


def test_residual_panels(reml, post, tmp_path):
    axes = reml.plot_residuals()
    pts = axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(pts[:, 0], reml.fitted(), rtol=1e-12)
    np.testing.assert_allclose(pts[:, 1], reml.residuals(), rtol=1e-12)
    # QQ: sorted standardised residuals against normal quantiles
    q = axes[1].collections[0].get_offsets()
    r = reml.residuals()
    np.testing.assert_allclose(q[:, 1], np.sort((r - r.mean()) / r.std(ddof=1)), rtol=1e-10)
    np.testing.assert_allclose(q[:, 0], stats.norm.ppf((np.arange(1, 181) - 0.5) / 180))
    assert axes[0].get_xlabel() == "fitted value" and axes[1].get_title() == "Normal QQ"
    axes = post.plot_residuals()
    mu = post.epred().mean(axis=0)
    pts = axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(pts[:, 1], load("sleepstudy")["Reaction"] - mu, rtol=1e-10)
    _saved(axes[0], tmp_path, "resid")


def test_conditional_effects_ml_population_and_by_group(reml, tmp_path):
    ref = REFS["sleepstudy_slope_REML"]["results"]
    ax = reml.plot_effects("Days")
    line = ax.get_lines()[0]
    x = np.asarray(line.get_xdata(), float)
    assert x.min() == 0 and x.max() == 9 and len(x) == 100
    b0, b1 = ref["fixef"]["(Intercept)"], ref["fixef"]["Days"]
    np.testing.assert_allclose(line.get_ydata(), b0 + b1 * x, rtol=1e-4)
    # the band: Wald interval of the population prediction, from lme4's vcov
    V = np.array(ref["vcov_fixef"])
    se = np.sqrt(V[0, 0] + 2 * x * V[0, 1] + x ** 2 * V[1, 1])
    band = ax.collections[0].get_paths()[0].vertices
    lower = np.array([band[np.isclose(band[:, 0], xi), 1].min() for xi in x])
    upper = np.array([band[np.isclose(band[:, 0], xi), 1].max() for xi in x])
    np.testing.assert_allclose(upper, b0 + b1 * x + Z95 * se, rtol=1e-4)
    np.testing.assert_allclose(lower, b0 + b1 * x - Z95 * se, rtol=1e-4)
    assert ax.get_xlabel() == "Days" and ax.get_ylabel().startswith("Reaction")
    # by a grouping factor: one line per level, each that level's coef()
    ax = reml.plot_effects("Days", by="Subject")
    lines = ax.get_lines()
    assert len(lines) == 18
    lv = ref["ranef"]["Subject"]
    for i, ln in enumerate(lines):
        a = b0 + lv["values"]["(Intercept)"][i]
        s = b1 + lv["values"]["Days"][i]
        np.testing.assert_allclose(ln.get_ydata(), a + s * ln.get_xdata(), rtol=2e-3)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == lv["levels"]
    _saved(ax, tmp_path, "effects")
    with pytest.raises(BayesmixError, match="'day' is not a column"):
        reml.plot_effects("day")


def test_conditional_effects_posterior_factor(cbpp_fits, tmp_path):
    _, post = cbpp_fits
    ax = bayesmix.plot_effects(post, "period")
    cont = ax.containers[0]
    est = np.asarray(cont.lines[0].get_ydata(), float)
    b = post.named_draws().posterior["b"].reshape(-1, 4)
    eta = np.column_stack([b[:, 0], b[:, 0] + b[:, 1], b[:, 0] + b[:, 2], b[:, 0] + b[:, 3]])
    p = 1 / (1 + np.exp(-eta))  # population level: the herd effect at zero
    np.testing.assert_allclose(est, p.mean(axis=0), rtol=1e-10)
    seg = np.array(cont.lines[2][0].get_segments())
    np.testing.assert_allclose(seg[:, 0, 1], np.quantile(p, 0.025, axis=0), rtol=1e-10)
    np.testing.assert_allclose(seg[:, 1, 1], np.quantile(p, 0.975, axis=0), rtol=1e-10)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    assert ax.get_ylabel().startswith("incidence (probability)")
    _saved(ax, tmp_path, "effects_factor")


def test_models_without_random_terms(tmp_path):
    sleep = load("sleepstudy")
    ols = bayesmix.lm("Reaction ~ Days", sleep)
    ref = stats.linregress(sleep["Days"], sleep["Reaction"])  # an independent least squares
    ax = ols.plot_effects("Days")
    line = ax.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), ref.intercept + ref.slope * line.get_xdata(),
                               rtol=1e-10)
    x, _, lo, hi = _errorbars(ols.plot_coef())
    np.testing.assert_allclose(x, [ref.slope], rtol=1e-10)
    np.testing.assert_allclose((hi - lo) / 2, [Z95 * ref.stderr], rtol=1e-10)
    axes = ols.plot_residuals()
    np.testing.assert_allclose(axes[0].collections[0].get_offsets()[:, 1],
                               sleep["Reaction"] - ref.intercept - ref.slope * sleep["Days"],
                               rtol=1e-8, atol=1e-8)
    with pytest.raises(BayesmixError, match="no group-level effects"):
        ols.plot_ranef()
    _saved(ax, tmp_path, "lm_effects")


def test_conditional_effects_by_a_numeric_column():
    # by a numeric column: one line at mean - sd, mean and mean + sd (brms's choice)
    rng = np.random.default_rng(5)
    n = 200
    data = pd.DataFrame({"x": rng.uniform(0, 10, n), "z": rng.normal(3, 2, n)})
    data["y"] = 1 + 0.5 * data.x - 0.3 * data.z + 0.2 * data.x * data.z + rng.normal(0, 1, n)
    fit = bayesmix.lm("y ~ x * z", data)
    X = np.column_stack([np.ones(n), data.x, data.z, data.x * data.z])
    beta = np.linalg.lstsq(X, data.y, rcond=None)[0]  # an independent least squares
    ax = fit.plot_effects("x", by="z")
    lines = ax.get_lines()
    zs = data.z.mean() + np.array([-1, 0, 1]) * data.z.std()
    assert len(lines) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"{z:.3g}" for z in zs]
    for ln, z in zip(lines, zs):
        x = np.asarray(ln.get_xdata(), float)
        np.testing.assert_allclose(ln.get_ydata(),
                                   beta[0] + beta[1] * x + beta[2] * z + beta[3] * x * z,
                                   rtol=1e-8)
