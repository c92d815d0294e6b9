"""Draws of a joint fit under the model's own names, and the ArviZ InferenceData.

Two namings. Inside bayesmix (`named_draws`: predictions, summaries, SBC) the posterior is
a few arrays: ``b`` (coef), ``sd_<group>``, ``cor_<group>``, ``r_<group>`` (level, coef)
and the family parameter. The InferenceData a user plots (`to_inference_data`) gives every
scalar with its own scale its own variable, so ArviZ's defaults (plot_trace, plot_forest,
plot_posterior, summary) never draw an intercept of 58 and a slope of 0.01 on one axis:

* fixed effects      ``Intercept``, ``open``, ``period2``, ``open:agree`` (X's column names;
                     R's "(Intercept)" becomes ``Intercept``; a name that collides with
                     another variable gets brms's prefix: ``b_sigma``)
* group-level sds    ``sd(1|school)``, ``sd(open|school)`` (``1`` is the intercept, as in
                     the formula)
* correlations       ``cor(1,Days|Subject)``
* random effects     ``1|school``, ``open|school`` with dim ``school_level`` (the factor's
                     levels, in R's order)
* family parameter   ``sigma`` (gaussian), ``phi`` (negative binomial), ``shape`` (Gamma)

Terms that share a grouping factor (lme4's `||` splits) share its names. The
response-named variable (e.g. ``Reaction``; binomial cbind: the successes) holds the
pointwise log-likelihood in ``log_likelihood``, the posterior predictive draws in
``posterior_predictive`` and the data in ``observed_data``, with dim ``obs`` -- ArviZ
matches these groups by name (az.loo, az.plot_ppc, az.loo_pit). ``constant_data`` holds
each grouping factor's level per observation and, where the model has them, ``trials``,
``offset`` and ``weights``. ``prior`` (on request) holds exact draws from the declared
priors under the same names, with ``prior_predictive`` (responses simulated at each prior
draw) when ``posterior_predictive`` is kept. docs/results.md describes the scheme.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families import FAMILIES

SAMPLE_STATS = {
    "lp__": "lp",
    "accept_stat__": "acceptance_rate",
    "stepsize__": "step_size",
    "treedepth__": "tree_depth",
    "n_leapfrog__": "n_steps",
    "divergent__": "diverging",
    "energy__": "energy",
    "log_p__": "lp",     # laplace: the log density of each draw (as NUTS's lp__) ...
    "log_q__": "log_q",  # ... and of the normal approximation
}
# the families' parameters (sigma, phi, shape), from bayesmix.families
FAMILY_PARAMS = tuple(dict.fromkeys(s.dispersion for s in FAMILIES.values() if s.dispersion))


@dataclass(frozen=True)
class GroupLayout:
    """How the terms of one grouping factor map onto named variables."""

    group: str
    terms: tuple[int, ...]                 # 1-based term indices (Stan's _k)
    coefs: tuple[str, ...]                 # coefficient names, over the group's terms
    levels: tuple[str, ...]
    pairs: tuple[tuple[int, int, int], ...]  # (term k, i, j) 0-based, i < j
    pair_labels: tuple[str, ...]

    @property
    def level_dim(self) -> str:
        return f"{self.group}_level"

    @property
    def coef_dim(self) -> str:
        return f"{self.group}_coef"

    @property
    def pair_dim(self) -> str:
        return f"{self.group}_pair"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        out.append(n if k == 0 else f"{n}.{k}")
        seen[n] = k + 1
    return out


def group_layouts(design) -> list[GroupLayout]:
    groups: dict[str, list[int]] = {}
    for k, t in enumerate(design.terms, 1):
        groups.setdefault(t.group, []).append(k)
    out = []
    for g, ks in groups.items():
        terms = [design.terms[k - 1] for k in ks]
        coefs = _unique([c for t in terms for c in t.coef_names])
        pairs, labels = [], []
        offset = 0
        for k, t in zip(ks, terms):
            if t.correlated and t.p > 1:
                for j in range(t.p):
                    for i in range(j + 1, t.p):
                        pairs.append((k, j, i))
                        labels.append(f"{coefs[offset + j]}, {coefs[offset + i]}")
            offset += t.p
        out.append(GroupLayout(g, tuple(ks), tuple(coefs), tuple(terms[0].levels),
                               tuple(pairs), tuple(labels)))
    return out


def response_name(design) -> str:
    f = design.formula
    return (f.cbind[0] if f.cbind else f.response).strip().strip("`")


@dataclass(frozen=True)
class NamedDraws:
    """Posterior arrays (chain, draw, ...) with their dims and coords."""

    posterior: dict[str, np.ndarray]
    dims: dict[str, list[str]]
    coords: dict[str, list]
    layouts: tuple[GroupLayout, ...]


def named_draws(design, var) -> NamedDraws:
    """Assemble the model-named posterior from `var(name) -> (chain, draw, ...)` arrays."""
    post: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    coords: dict[str, list] = {"coef": list(design.X_names)}
    b = var("b")
    if design.X_names and design.X_names[0] == "(Intercept)":
        b = np.concatenate([var("b_Intercept")[..., None], b], axis=-1)
    post["b"], dims["b"] = b, ["coef"]
    layouts = group_layouts(design)
    for lay in layouts:
        g = lay.group
        coords[lay.coef_dim] = list(lay.coefs)
        coords[lay.level_dim] = list(lay.levels)
        post[f"sd_{g}"] = np.concatenate([var(f"sd_{k}") for k in lay.terms], axis=-1)
        dims[f"sd_{g}"] = [lay.coef_dim]
        if lay.pairs:
            cors = {k: var(f"Cor_{k}") for k in {p[0] for p in lay.pairs}}
            post[f"cor_{g}"] = np.stack([cors[k][..., i, j] for k, j, i in lay.pairs], axis=-1)
            dims[f"cor_{g}"] = [lay.pair_dim]
            coords[lay.pair_dim] = list(lay.pair_labels)
        post[f"r_{g}"] = np.concatenate([var(f"r_{k}") for k in lay.terms], axis=-1)
        dims[f"r_{g}"] = [lay.level_dim, lay.coef_dim]
    fam = {"gaussian": "sigma", "negbinomial": "phi", "Gamma": "shape"}.get(design.family.name)
    if fam:
        post[fam], dims[fam] = var(fam), []
    return NamedDraws(post, dims, coords, tuple(layouts))


# ---------------------------------------------------------------- readable names


# netCDF (idata.to_netcdf) forbids "/" in names: I(x/2) is written with U+2215 (looks alike)
_SLASH = "\u2215"


def fixed_label(column: str) -> str:
    """A design column as a variable: "(Intercept)" -> "Intercept", others unchanged
    (but "/", which netCDF forbids in names, becomes U+2215)."""
    return "Intercept" if column == "(Intercept)" else column.replace("/", _SLASH)


def _term_label(coef: str) -> str:
    return "1" if coef == "(Intercept)" else coef.replace("/", _SLASH)


def ranef_name(coef: str, group: str) -> str:
    """The variable of one coefficient's group-level effects: "1|school", "open|school"."""
    return f"{_term_label(coef)}|{group}"


def sd_name(coef: str, group: str) -> str:
    return f"sd({ranef_name(coef, group)})"


def cor_name(coef_a: str, coef_b: str, group: str) -> str:
    return f"cor({_term_label(coef_a)},{_term_label(coef_b)}|{group})"


def fixed_names(design) -> list[str]:
    """The variable of each design column, in X's order (collisions prefixed with "b_")."""
    taken = set(FAMILY_PARAMS)
    for lay in group_layouts(design):
        taken.update(ranef_name(c, lay.group) for c in lay.coefs)
        taken.update(sd_name(c, lay.group) for c in lay.coefs)
    return [("b_" + fixed_label(c)) if fixed_label(c) in taken else fixed_label(c)
            for c in design.X_names]


@dataclass(frozen=True)
class ReadableDraws:
    """The user-facing posterior (or prior): one variable per scalar, except random
    effects, which carry their factor's levels as a coordinate."""

    variables: dict[str, np.ndarray]
    dims: dict[str, list[str]]
    coords: dict[str, list]


def readable_draws(design, nd: NamedDraws) -> ReadableDraws:
    """Split the internal arrays of `named_draws` into readable variables (module doc)."""
    out: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    coords: dict[str, list] = {}
    post = nd.posterior  # a subset of named_draws' arrays gives the matching subset here
    if "b" in post:
        for j, name in enumerate(fixed_names(design)):
            out[name] = post["b"][..., j]
    # brms's order: population-level, sds and correlations, family parameter, then the
    # (many) group-level effects last, so summaries and trace plots start with the few
    for lay in nd.layouts:
        g = lay.group
        for m, c in enumerate(lay.coefs if f"sd_{g}" in post else ()):
            out[sd_name(c, g)] = post[f"sd_{g}"][..., m]
        for p, label in enumerate(lay.pair_labels if f"cor_{g}" in post else ()):
            a, c = label.split(", ", 1)
            out[cor_name(a, c, g)] = post[f"cor_{g}"][..., p]
    for p in FAMILY_PARAMS:
        if p in post:
            out[p] = post[p]
    for lay in nd.layouts:
        if f"r_{lay.group}" not in post:
            continue
        r = post[f"r_{lay.group}"]
        coords[lay.level_dim] = list(lay.levels)
        for m, c in enumerate(lay.coefs):
            name = ranef_name(c, lay.group)
            out[name], dims[name] = r[..., m], [lay.level_dim]
    return ReadableDraws(out, dims, coords)


def _constant_data(design, stan_data: dict) -> tuple[dict, dict]:
    data: dict[str, np.ndarray] = {}
    seen = set()
    for t in design.terms:
        if t.group not in seen:  # each grouping factor's level of every observation
            seen.add(t.group)
            data[t.group] = np.asarray(t.levels, dtype=object)[np.asarray(t.index)].astype(str)
    if "trials" in stan_data and design.family.name == "binomial":
        data["trials"] = np.asarray(stan_data["trials"])
    if design.offset is not None:
        data["offset"] = np.asarray(design.offset, dtype=float)
    if design.weights is not None:
        data["weights"] = np.asarray(design.weights, dtype=float)
    return data, {k: ["obs"] for k in data}


def to_inference_data(fit, prior: NamedDraws | None = None,
                      prior_predictive: np.ndarray | None = None) -> "az.InferenceData":
    """InferenceData of a PosteriorFit: posterior, sample_stats, observed_data,
    constant_data, and log_likelihood / posterior_predictive when they were saved;
    `prior` (internal names, e.g. from `bayesmix.bayes.priordraws`) adds a prior group and
    `prior_predictive` (draws x observations) a prior_predictive group."""
    import arviz as az

    design = fit.design
    readable = readable_draws(design, fit.named_draws())
    yname = response_name(design)
    cfit = fit.cmdstan_fit
    chains = fit.chains
    stats = {}
    for col, name in SAMPLE_STATS.items():
        arr = cfit.method_variables().get(col)
        if arr is not None:
            arr = np.asarray(arr).reshape(-1, chains).T  # (draws, chains) -> (chains, draws)
            stats[name] = arr.astype(bool) if name == "diverging" else (
                arr.astype(np.int64) if name in ("tree_depth", "n_steps") else arr)
    # arrays, not lists: ArviZ deep-copies the coords once per variable
    coords = {k: np.asarray(v) for k, v in readable.coords.items()}
    coords["obs"] = np.arange(design.n)
    dims = dict(readable.dims)
    dims[yname] = ["obs"]
    kwargs = {}
    if fit.stan_data.get("save_log_lik", 0):
        kwargs["log_likelihood"] = {yname: fit.draws("log_lik")}
    if fit.stan_data.get("save_y_rep", 0):
        kwargs["posterior_predictive"] = {yname: fit.draws("y_rep")}
    constant, cdims = _constant_data(design, fit.stan_data)
    if constant:
        kwargs["constant_data"] = constant
        dims.update(cdims)
    if prior is not None:
        kwargs["prior"] = readable_draws(design, prior).variables
    if prior_predictive is not None:
        kwargs["prior_predictive"] = {yname: prior_predictive}
    y = np.asarray(fit.stan_data["Y"])
    idata = az.from_dict(posterior=readable.variables, sample_stats=stats,
                         observed_data={yname: y}, coords=coords, dims=dims, **kwargs)
    label = getattr(fit, "inference_label", "Stan NUTS")
    attrs = {"inference_library": f"bayesmix ({label})", "engine": fit.run.engine.name,
             "stan_version": fit.run.engine.stan_version, "formula": design.formula.text.strip(),
             "family": str(design.family), "chains": chains}
    for grp in idata.groups():
        idata[grp].attrs.update(attrs)
    return idata


__all__ = ["FAMILY_PARAMS", "GroupLayout", "NamedDraws", "ReadableDraws", "cor_name",
           "fixed_label", "fixed_names", "group_layouts", "named_draws", "ranef_name",
           "readable_draws", "response_name", "sd_name", "to_inference_data"]
