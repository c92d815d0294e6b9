"""Plots in one call, for maximum-likelihood and posterior fits alike, each returning
matplotlib axes (``ax.figure.savefig(...)`` saves them):

* `plot_ranef`      caterpillar plot of the group-level effects, one panel per term
                    (lme4's ``dotplot(ranef(fit, condVar = TRUE))``, merTools' plotREsim)
* `plot_coef`       the fixed effects with intervals (arm's coefplot)
* `plot_ppc`        observed response against replicated ones (posterior predictive draws;
                    for ML fits, responses simulated from the fit)
* `plot_residuals`  fitted vs residuals and a normal QQ plot
* `plot_effects`    conditional effects of one predictor, optionally by another
                    (brms's conditional_effects)

Intervals: ML fits use conditional SDs (random effects) and Wald standard errors (fixed
effects and predictions); posterior fits use central posterior intervals. Only results,
design and numpy/scipy/matplotlib are used here: nothing in this module fits anything.
Result classes carry these as methods through `PlotMixin`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .errors import BayesmixError

_BAYES_INTERVAL = "posterior mean, {pct}% interval"


def _is_posterior(fit) -> bool:
    return hasattr(fit, "named_draws")


def _z(level: float) -> float:
    from scipy import stats
    if not 0 < level < 1:
        raise BayesmixError(f"level must be in (0, 1), got {level}")
    return float(stats.norm.ppf(0.5 + level / 2))


def _pct(level: float) -> str:
    return f"{100 * level:g}"


def _pyplot():
    import matplotlib.pyplot as plt
    return plt


def _grid(n: int, ncols: int, panel: tuple[float, float], figsize=None):
    plt = _pyplot()
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    size = figsize or (panel[0] * ncols, panel[1] * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat[:n]


# ---------------------------------------------------------------- random effects


def ranef_intervals(fit, level: float = 0.95) -> dict[str, tuple[pd.DataFrame, ...]]:
    """Per grouping factor: (estimate, lower, upper) tables, levels x coefficients. ML:
    conditional modes -/+ z conditional SDs; posterior: means and central quantiles."""
    if not getattr(fit.design, "terms", ()):
        raise BayesmixError("the model has no group-level effects to plot")
    if _is_posterior(fit):
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        est, low, high = fit.ranef("mean"), fit.ranef(lo), fit.ranef(hi)
        return {g: (est[g], low[g], high[g]) for g in est}
    if _is_dist(fit):
        raise BayesmixError("plot_ranef of a distributional ML fit is not available (no "
                            "conditional SDs); fit.ranef() gives the conditional modes, or "
                            "plot the NUTS fit (Model.sample())")
    z = _z(level)
    return {g: (m, m - z * s, m + z * s) for g, (m, s) in fit.ranef(condvar=True).items()}


def plot_ranef(fit, group: str | Sequence[str] | None = None, level: float = 0.95,
               ncols: int = 3, figsize=None) -> np.ndarray:
    """Caterpillar plot: one panel per grouping factor and coefficient, levels sorted by
    their estimate, with intervals (ML: conditional mode -/+ 1.96 conditional SD at
    level 0.95; posterior: posterior mean and central interval). Returns the axes."""
    table = ranef_intervals(fit, level)
    groups = list(table) if group is None else ([group] if isinstance(group, str)
                                                else list(group))
    for g in groups:
        if g not in table:
            raise BayesmixError(f"no grouping factor {g!r}; the model has: "
                                f"{', '.join(map(repr, table)) or '(none)'}")
    panels = [(g, c) for g in groups for c in table[g][0].columns]
    if not panels:
        raise BayesmixError("the model has no group-level effects to plot")
    tallest = max(len(table[g][0]) for g in groups)
    height = min(max(2.5, 0.16 * tallest + 1.0), 14.0)
    fig, axes = _grid(len(panels), ncols, (4.4 if len(panels) == 1 else 3.6, height), figsize)
    what = (_BAYES_INTERVAL.format(pct=_pct(level)) if _is_posterior(fit) else
            f"conditional mode \u00b1 {_z(level):.2f} cond. SD")
    for ax, (g, c) in zip(axes, panels):
        est, lo, hi = (t[c] for t in table[g])
        order = est.sort_values(kind="stable").index
        y = np.arange(len(order))
        e = est[order].to_numpy()
        ax.errorbar(e, y, xerr=[e - lo[order].to_numpy(), hi[order].to_numpy() - e],
                    fmt="o", ms=3, lw=1, capsize=0, color="C0")
        ax.axvline(0.0, color="grey", lw=0.6, zorder=0)
        if len(order) <= 60:
            ax.set_yticks(y, [str(v) for v in order], fontsize=7 if len(order) > 25 else 8)
        else:  # too many labels to read: the panel still shows the spread
            ax.set_yticks([])
        ax.set_ylim(-0.8, len(order) - 0.2)
        ax.set_title(f"{'(Intercept)' if c == '(Intercept)' else c} | {g}", fontsize=10)
        ax.set_xlabel(what, fontsize=8)
        ax.set_ylabel(g)
    fig.tight_layout()
    return np.asarray(axes)


# ---------------------------------------------------------------- fixed effects


def coef_intervals(fit, level: float = 0.95) -> pd.DataFrame:
    """Estimate, lower, upper per fixed effect. ML: Wald (estimate -/+ z standard error,
    from vcov()); posterior: posterior mean and central quantiles."""
    if _is_posterior(fit):
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        t = fit.fixef(probs=(lo, hi))
        return pd.DataFrame({"estimate": t.iloc[:, 0], "lower": t.iloc[:, 2],
                             "upper": t.iloc[:, 3]})
    if _is_dist(fit):
        raise BayesmixError("plot_coef of a distributional ML fit is not available; "
                            "fit.confint() gives its Wald intervals, or plot the NUTS fit "
                            "(Model.sample())")
    est = pd.Series(fit.fixef())
    se = np.sqrt(np.diag(np.asarray(fit.vcov(), dtype=float)))
    z = _z(level)
    return pd.DataFrame({"estimate": est.to_numpy(), "lower": est.to_numpy() - z * se,
                         "upper": est.to_numpy() + z * se}, index=est.index)


def plot_coef(fit, level: float = 0.95, intercept: bool = False, ax=None, figsize=None):
    """Coefficient plot: each fixed effect with its interval (ML: Wald, posterior: central
    posterior interval), first coefficient on top. The intercept is left out by default
    (its scale usually dwarfs the slopes'; arm's coefplot does the same) unless it is the
    only coefficient. Returns the axes."""
    t = coef_intervals(fit, level)
    if not intercept and len(t) > 1:
        t = t.drop(index="(Intercept)", errors="ignore")
        if _is_dist(fit):  # brms's names: every predictor's intercept and the cutpoints
            keep = [r for r in t.index if not (r == "Intercept" or r.endswith("_Intercept")
                                               or r.startswith("Intercept["))]
            t = t.loc[keep] if keep else t
    if ax is None:
        _, ax = _pyplot().subplots(figsize=figsize or (5.5, max(2.0, 0.45 * len(t) + 1.2)))
    y = np.arange(len(t))[::-1]
    e = t["estimate"].to_numpy()
    ax.errorbar(e, y, xerr=[e - t["lower"].to_numpy(), t["upper"].to_numpy() - e], fmt="o",
                ms=4, lw=1.2, capsize=0, color="C0")
    ax.axvline(0.0, color="grey", lw=0.6, zorder=0)
    ax.set_yticks(y, list(t.index))
    ax.set_ylim(-0.7, len(t) - 0.3)
    ax.set_xlabel(_BAYES_INTERVAL.format(pct=_pct(level)) if _is_posterior(fit)
                  else f"estimate \u00b1 {_z(level):.2f} s.e. (Wald {_pct(level)}%)")
    ax.set_title("Fixed effects")
    ax.figure.tight_layout()
    return ax


# ---------------------------------------------------------------- predictive checks


def _observed(fit) -> np.ndarray:
    return np.asarray(fit.design.y, dtype=float)


def _is_dist(fit) -> bool:
    """A distributional fit (bayesmix.dist: one linear predictor per parameter)."""
    return getattr(fit.design, "predictors", None) is not None


def _response_name(fit) -> str:
    """The response's name: the successes of cbind(...), else the formula's left side."""
    f = fit.design.formula
    cbind = getattr(f, "cbind", None)
    if cbind:
        return cbind[0].strip()
    resp = getattr(f, "response", None)
    if resp is None:  # a distributional formula: the main formula's left side
        resp = str(getattr(f, "formula", f)).split("~", 1)[0].strip()
        if resp.startswith("cbind(") and "," in resp:
            resp = resp[len("cbind("):].split(",", 1)[0]
    return resp.strip()


def _replicates(fit, ndraws: int, seed: int) -> np.ndarray:
    """(ndraws, n) replicated responses: posterior predictive draws, or for ML fits
    responses simulated from the fitted model (new random effects each time)."""
    rng = np.random.default_rng(seed)
    if _is_posterior(fit):
        idata = fit.to_arviz()
        if "posterior_predictive" in idata.groups():
            var = list(idata.posterior_predictive.data_vars)[0]
            flat = np.asarray(idata.posterior_predictive[var].values, dtype=float)
            flat = flat.reshape(-1, flat.shape[-1])
        else:
            flat = np.asarray(fit.predict(seed=seed), dtype=float)
        pick = rng.choice(flat.shape[0], size=min(ndraws, flat.shape[0]), replace=False)
        return flat[np.sort(pick)]
    return np.asarray(fit.simulate(nsim=ndraws, seed=seed), dtype=float)


def plot_ppc(fit, ndraws: int = 50, seed: int = 0, ax=None, figsize=None):
    """Posterior predictive check: the observed response against `ndraws` replicated data
    sets. Continuous families: density curves (observed thick); count families: the
    observed frequency of each value (bars) against the replicates' median and 90% range
    (points with bars). ML fits use responses simulated from the fit. Returns the axes."""
    from scipy import stats
    y = _observed(fit)
    yrep = _replicates(fit, ndraws, seed)
    if ax is None:
        _, ax = _pyplot().subplots(figsize=figsize or (6.0, 3.8))
    name = _response_name(fit)
    label = "posterior predictive" if _is_posterior(fit) else "simulated from the fit"
    discrete = fit.design.family.spec.discrete  # integer response (bayesmix.families)
    categories = tuple(getattr(fit.design, "categories", ()) or ())
    if discrete:
        top = int(max(y.max(), np.quantile(yrep, 0.99)))
        # ordinal responses are category numbers 1..K: one bar per category
        values = np.arange(1, len(categories) + 1) if categories else np.arange(top + 1)
        obs = np.array([(y == v).mean() for v in values])
        rep = np.stack([[(r == v).mean() for v in values] for r in yrep])
        med, lo, hi = (np.quantile(rep, q, axis=0) for q in (0.5, 0.05, 0.95))
        ax.bar(values, obs, color="0.75", label="observed", width=0.8)
        ax.errorbar(values, med, yerr=[med - lo, hi - med], fmt="o", ms=3, color="C0",
                    label=f"{label} (median, 90%)")
        ax.set_ylabel("proportion of observations")
        if categories:
            ax.set_xticks(values, [str(c) for c in categories])
    else:
        grid = np.linspace(min(y.min(), np.quantile(yrep, 0.005)),
                           max(y.max(), np.quantile(yrep, 0.995)), 200)
        for i, r in enumerate(yrep):
            ax.plot(grid, stats.gaussian_kde(r)(grid), color="C0", alpha=0.2, lw=0.8,
                    label=label if i == 0 else None)
        ax.plot(grid, stats.gaussian_kde(y)(grid), color="black", lw=2, label="observed")
        ax.set_ylabel("density")
    ax.set_xlabel(name.strip())
    ax.set_title(f"Predictive check: {len(yrep)} replicated data sets")
    ax.legend(fontsize=8, frameon=False)
    ax.figure.tight_layout()
    return ax


def fitted_and_residuals(fit) -> tuple[np.ndarray, np.ndarray, str]:
    """(fitted, residuals, what the residuals are). ML fits: their fitted() and
    residuals() (lmer: response, glmer: deviance residuals, as lme4); posterior fits: the
    posterior mean of the expected response and the observed minus it (binomial: as a
    proportion of the trials)."""
    if _is_posterior(fit):
        mu = np.asarray(fit.epred(), dtype=float).mean(axis=0)
        y = _observed(fit)
        if fit.design.family.name == "binomial" and fit.design.trials is not None:
            y = y / np.asarray(fit.design.trials, dtype=float)
        return mu, y - mu, "residual (observed - posterior mean)"
    fitted = np.asarray(fit.fitted(), dtype=float)
    resid = np.asarray(fit.residuals(), dtype=float)
    kind = "deviance residual" if fit.design.family.name != "gaussian" else "residual"
    return fitted, resid, kind


def plot_residuals(fit, figsize=None) -> np.ndarray:
    """Two panels: residuals against fitted values (with a zero line) and a normal QQ plot
    of the standardised residuals (with the identity line). Returns the two axes."""
    from scipy import stats
    fitted, resid, kind = fitted_and_residuals(fit)
    fig, axes = _grid(2, 2, (4.2, 3.6), figsize)
    a, b = axes
    a.scatter(fitted, resid, s=8, alpha=0.6, color="C0")
    a.axhline(0.0, color="grey", lw=0.8)
    a.set_xlabel("fitted value")
    a.set_ylabel(kind)
    a.set_title("Residuals vs fitted")
    sd = resid.std(ddof=1) if resid.size > 1 else 1.0
    std = (resid - resid.mean()) / (sd if sd > 0 else 1.0)
    theo = stats.norm.ppf((np.arange(1, std.size + 1) - 0.5) / std.size)
    b.scatter(theo, np.sort(std), s=8, alpha=0.6, color="C0")
    lim = [min(theo.min(), std.min()), max(theo.max(), std.max())]
    b.plot(lim, lim, color="grey", lw=0.8)
    b.set_xlabel("normal quantile")
    b.set_ylabel(f"standardised {kind.split(' (')[0]}")
    b.set_title("Normal QQ")
    fig.tight_layout()
    return np.asarray(axes)


# ---------------------------------------------------------------- conditional effects


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _levels(s: pd.Series) -> list:
    if isinstance(s.dtype, pd.CategoricalDtype):
        return [c for c in s.cat.categories if (s == c).any()]
    return sorted(pd.unique(s.dropna()), key=str)


def _reference_row(data: pd.DataFrame) -> dict:
    """Numeric columns at their mean, the others at their first (reference) level:
    brms's conditions for conditional_effects."""
    row = {}
    for c in data.columns:
        s = data[c]
        row[c] = float(s.mean()) if _is_numeric(s) else _levels(s)[0]
    return row


def effect_grid(fit, effect: str, by: str | None = None, points: int = 100) -> pd.DataFrame:
    """The rows `plot_effects` predicts at: `effect` over its range (numeric: `points`
    values; a factor: its levels), `by` at each level (numeric: mean - sd, mean, mean + sd),
    every other column at its mean or reference level."""
    data = fit.design.data
    for name, role in ((effect, "effect"), (by, "by")):
        if name is not None and name not in data.columns:
            raise BayesmixError(f"{role} {name!r} is not a column of the model's data; "
                                f"columns: {', '.join(map(str, data.columns))}")
    if by is not None and by == effect:
        raise BayesmixError(f"by must differ from the effect ({effect!r})")
    s = data[effect]
    xs = (np.linspace(float(s.min()), float(s.max()), points) if _is_numeric(s)
          else _levels(s))
    if by is None:
        bys = [None]
    elif _is_numeric(data[by]):
        m, sd = float(data[by].mean()), float(data[by].std())
        bys = [m - sd, m, m + sd]
    else:
        bys = _levels(data[by])
    base = _reference_row(data)
    rows = []
    for b in bys:
        for x in xs:
            r = dict(base)
            r[effect] = x
            if by is not None:
                r[by] = b
            rows.append(r)
    out = pd.DataFrame(rows)
    for c in data.columns:  # keep factors' categories so the design rebuilds the same way
        if isinstance(data[c].dtype, pd.CategoricalDtype):
            out[c] = pd.Categorical(out[c], categories=data[c].cat.categories)
    return out


def conditional_effects(fit, effect: str, by: str | None = None, level: float = 0.95,
                        points: int = 100, seed: int | None = 1) -> pd.DataFrame:
    """`effect_grid` with the expected response (estimate, lower, upper) on the response
    scale. Population level (random effects at zero) unless `by` is a grouping factor,
    whose levels' effects are then included. Posterior fits: mean and central interval of
    epred(); ML fits: the prediction with a Wald interval from vcov() on the link scale
    (fixed-effect uncertainty only), mapped through the inverse link."""
    grid = effect_grid(fit, effect, by, points)
    groups = {t.group for t in fit.design.terms}
    re_form = f"~(1 | {by})" if by in groups else "~0"
    if _is_posterior(fit) and _is_dist(fit):  # epred draws (S, n) (bayesmix.dist)
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        draws = np.asarray(fit.epred(grid, re_form=re_form, seed=seed), dtype=float)
        est = draws.mean(axis=0)
        low, high = np.quantile(draws, lo, axis=0), np.quantile(draws, hi, axis=0)
    elif _is_dist(fit):
        raise BayesmixError("conditional effects of a distributional ML fit are not "
                            "available (no Wald intervals on the response scale); use "
                            "the NUTS fit (Model.sample()) or fit.epred(newdata)")
    elif _is_posterior(fit):
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        t = fit.epred(grid, re_form=re_form, summary=True, probs=(lo, hi), seed=seed)
        est, low, high = (t.iloc[:, i].to_numpy() for i in (0, 2, 3))
    else:
        eta = np.asarray(fit.predict(grid, re_form=re_form) if fit.design.terms
                         else fit.predict(grid), dtype=float)  # lm / glm: no re_form
        X = np.asarray(fit.design.new_data(grid, random=False).X, dtype=float)
        V = np.asarray(fit.vcov(), dtype=float)
        se = np.sqrt(np.einsum("ij,jk,ik->i", X, V, X))
        z = _z(level)
        inv = fit.design.family.linkinv
        est, low, high = inv(eta), inv(eta - z * se), inv(eta + z * se)
        low, high = np.minimum(low, high), np.maximum(low, high)  # decreasing links
    return grid.assign(estimate=est, lower=low, upper=high)


def plot_effects(fit, effect: str, by: str | None = None, level: float = 0.95,
                 points: int = 100, ax=None, figsize=None):
    """Conditional effect of `effect` on the expected response, with intervals, as brms's
    conditional_effects: other numeric predictors at their means, factors at their
    reference level; `by` draws one curve (or set of points) per level of another column
    (numeric `by`: at mean - sd, mean, mean + sd). See `conditional_effects` for what the
    intervals are. Returns the axes."""
    ce = conditional_effects(fit, effect, by, level, points)
    if ax is None:
        _, ax = _pyplot().subplots(figsize=figsize or (6.0, 4.0))
    numeric = _is_numeric(fit.design.data[effect])
    groups = [(None, ce)] if by is None else list(ce.groupby(by, sort=False, observed=True))
    n = len(groups)
    for i, (key, part) in enumerate(groups):
        color = f"C{i % 10}"
        label = None if by is None else (f"{key:.3g}" if isinstance(key, float) else str(key))
        if numeric:
            ax.plot(part[effect], part["estimate"], color=color, lw=1.6, label=label)
            ax.fill_between(part[effect].astype(float), part["lower"], part["upper"],
                            color=color, alpha=0.15 if n > 1 else 0.25, lw=0)
        else:
            x = np.arange(len(part)) + (i - (n - 1) / 2) * min(0.6 / n, 0.15)
            ax.errorbar(x, part["estimate"],
                        yerr=[part["estimate"] - part["lower"], part["upper"] - part["estimate"]],
                        fmt="o", ms=4, color=color, capsize=2, label=label)
            ax.set_xticks(np.arange(len(part)), [str(v) for v in part[effect]])
    resp = _response_name(fit)
    fam = fit.design.family.name
    ylab = f"{resp} (probability)" if fam in ("binomial", "bernoulli") else resp
    if fam == "cumulative":
        ylab = f"{resp} (expected category number)"
    elif fam == "beta_binomial":
        ylab = f"{resp} (expected successes)"
    ax.set_xlabel(effect)
    ax.set_ylabel(f"{ylab}, {_pct(level)}% interval")
    ax.set_title(f"Conditional effect of {effect}" + (f" by {by}" if by else ""))
    if by is not None:
        ax.legend(title=by, fontsize=7, title_fontsize=8, frameon=False,
                  ncol=1 if n <= 12 else 2, loc="best")
    ax.figure.tight_layout()
    return ax


class PlotMixin:
    """The plots as methods of a result class (each delegates to this module)."""

    def plot_ranef(self, group: str | Sequence[str] | None = None, level: float = 0.95,
                   **kwargs: Any) -> np.ndarray:
        """Caterpillar plot of the group-level effects (bayesmix.plots.plot_ranef)."""
        return plot_ranef(self, group, level, **kwargs)

    def plot_coef(self, level: float = 0.95, intercept: bool = False, **kwargs: Any):
        """Fixed effects with intervals (bayesmix.plots.plot_coef)."""
        return plot_coef(self, level, intercept, **kwargs)

    def plot_ppc(self, ndraws: int = 50, seed: int = 0, **kwargs: Any):
        """Observed against replicated responses (bayesmix.plots.plot_ppc)."""
        return plot_ppc(self, ndraws, seed, **kwargs)

    def plot_residuals(self, **kwargs: Any) -> np.ndarray:
        """Residuals vs fitted and a normal QQ plot (bayesmix.plots.plot_residuals)."""
        return plot_residuals(self, **kwargs)

    def plot_effects(self, effect: str, by: str | None = None, level: float = 0.95,
                     **kwargs: Any):
        """Conditional effects of one predictor (bayesmix.plots.plot_effects)."""
        return plot_effects(self, effect, by, level, **kwargs)


__all__ = ["PlotMixin", "coef_intervals", "conditional_effects", "effect_grid",
           "fitted_and_residuals", "plot_coef", "plot_effects", "plot_ppc", "plot_ranef",
           "plot_residuals", "ranef_intervals"]
