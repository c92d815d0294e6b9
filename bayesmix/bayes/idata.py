"""Draws of a joint fit under the model's own names, and the ArviZ InferenceData.

Posterior variables (dims after chain, draw):

* ``b``            (coef)                  lme4 names: "(Intercept)", "Days", ...
* ``sd_<group>``   (<group>_coef)          e.g. sd_Subject with coef "(Intercept)", "Days"
* ``cor_<group>``  (<group>_pair)          correlations, pairs labelled "(Intercept), Days"
* ``r_<group>``    (<group>_level, <group>_coef)   factor levels and coefficient names
* ``sigma`` / ``phi`` / ``shape``          family parameter (gaussian / negbinomial / Gamma)

Terms that share a grouping factor (lme4's `||` splits) are merged into one
set of ``sd_``/``r_`` variables. The response-named variable (e.g.
``Reaction``; binomial cbind: the successes) holds the pointwise
log-likelihood in ``log_likelihood``, the posterior predictive draws in
``posterior_predictive`` and the data in ``observed_data``, with dim ``obs``
-- ArviZ matches these groups by name (az.loo, az.plot_ppc, az.loo_pit).
Binomial models also carry ``trials`` in ``constant_data``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def to_inference_data(fit) -> "az.InferenceData":
    """InferenceData of a PosteriorFit: posterior, sample_stats, log_likelihood,
    posterior_predictive, observed_data (the last three when they were saved)."""
    import arviz as az

    nd = fit.named_draws()
    design = fit.design
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
    coords = dict(nd.coords)
    coords["obs"] = list(range(design.n))
    dims = dict(nd.dims)
    dims[yname] = ["obs"]
    kwargs = {}
    if fit.stan_data.get("save_log_lik", 0):
        kwargs["log_likelihood"] = {yname: fit.draws("log_lik")}
    if fit.stan_data.get("save_y_rep", 0):
        kwargs["posterior_predictive"] = {yname: fit.draws("y_rep")}
    y = np.asarray(fit.stan_data["Y"])
    if "trials" in fit.stan_data:  # binomial: the number of trials of each observation
        kwargs["constant_data"] = {"trials": np.asarray(fit.stan_data["trials"])}
        dims["trials"] = ["obs"]
    idata = az.from_dict(posterior=nd.posterior, sample_stats=stats, observed_data={yname: y},
                         coords=coords, dims=dims, **kwargs)
    label = getattr(fit, "inference_label", "Stan NUTS")
    attrs = {"inference_library": f"bayesmix ({label})", "engine": fit.run.engine.name,
             "stan_version": fit.run.engine.stan_version, "formula": design.formula.text.strip(),
             "family": str(design.family), "chains": chains}
    for grp in idata.groups():
        idata[grp].attrs.update(attrs)
    return idata


__all__ = ["GroupLayout", "NamedDraws", "group_layouts", "named_draws", "response_name",
           "to_inference_data"]
