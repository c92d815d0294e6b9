"""Generators of the fully Bayesian (joint) Stan program, brms's layout.

Each generator returns the `Blocks` it contributes; `joint_program` merges
them in order and `assemble` lays the program out. The program depends only
on the model's structure -- family and link, intercept, the number of
group-level terms with each term's size and correlation, offset, weights,
binomial trials and the forms of the user's priors -- never on data values:
sizes and the data-scaled default priors arrive as data, so two formulas of
the same shape share one compiled program.

Layout (per group-level term k = 1, 2, ...):

* population level: ``Xc`` = X without the intercept column, centred;
  slopes ``b``; ``Intercept`` is the intercept at the mean of X, and
  ``b_Intercept = Intercept - dot_product(means_X, b)`` is restored in
  generated quantities (no centring without an intercept);
* group level, non-centred: ``sd_k``, ``z_k`` (M_k x N_k standard normal),
  correlated terms ``L_k ~ lkj_corr_cholesky(eta)`` and
  ``r_k = (diag_pre_multiply(sd_k, L_k) * z_k)'``; uncorrelated terms
  ``r_k = (diag_pre_multiply(sd_k, z_k))'`` (= ``(diag_matrix(sd_k) * z_k)'``);
* linear predictor ``mu = Intercept + Xc * b + sum_k,m r_k[J_k, m] .* Z_k_m (+ offsets)``;
* likelihood with Stan's ``*_glm`` functions where the family and link allow
  it (and there are no weights), otherwise explicit; skipped when
  ``prior_only = 1``;
* generated quantities: ``b_Intercept``, ``Cor_k``, pointwise ``log_lik`` and
  posterior predictive ``y_rep``.

This is the readable program (``model.stan_code("joint")``). Sampling runs, by default,
the generic ``stan/glmm_joint.stan`` (`bayesmix.bayes.generic`), which computes the same
log density with the structure, family, link and priors as data and so compiles once for
every formula; ``sample(program="generated")`` runs this one, and a fit's ``program_kind``
and ``stan_code`` say which program ran.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..errors import BayesmixError
from ..families import FAMILIES, LINKS, get_link
from ..priors import (Prior, PriorSlot, default_scales, default_stan_call, resolve_priors,
                      slope_names)
from .blocks import Blocks, assemble, merge

# (family, link) pairs with a Stan *_glm likelihood: name, extra arguments
_GLM = {
    ("gaussian", "identity"): ("normal_id_glm_lpdf", ", sigma"),
    ("bernoulli", "logit"): ("bernoulli_logit_glm_lpmf", ""),
    ("poisson", "log"): ("poisson_log_glm_lpmf", ""),
    ("negbinomial", "log"): ("neg_binomial_2_log_glm_lpmf", ", phi"),
}

_INV_LINK = {name: link.stan_inverse for name, link in LINKS.items()}  # bayesmix.families

_DISCRETE = tuple(name for name, spec in FAMILIES.items() if spec.discrete)

# family -> its extra (distributional) parameter
FAMILY_PARAMS = {name: spec.dispersion for name, spec in FAMILIES.items() if spec.dispersion}
_FAMILY_PARAM_DOC = {
    "sigma": "residual standard deviation",
    "phi": "negative binomial precision (lme4's theta)",
    "shape": "Gamma shape",
}


@dataclass(frozen=True)
class TermShape:
    p: int
    correlated: bool
    centered: bool = False


@dataclass(frozen=True)
class Structure:
    """Everything the program text depends on."""

    family: str
    link: str
    intercept: bool
    terms: tuple[TermShape, ...]
    offset: bool
    weights: bool
    trials: bool

    @property
    def glm(self) -> bool:
        return (self.family, self.link) in _GLM and not self.weights

    @property
    def family_param(self) -> str | None:
        return FAMILY_PARAMS.get(self.family)


def centered_terms(design, centered: bool | str | Iterable[str] = False) -> tuple[bool, ...]:
    """Which terms use the centred parameterisation: False (none, brms's default),
    True (all), or grouping-factor names (lme4's, e.g. "class:school")."""
    groups = [t.group for t in design.terms]
    if isinstance(centered, bool):
        return tuple(centered for _ in groups)
    names = [centered] if isinstance(centered, str) else list(centered)
    for g in names:
        if g not in groups:
            raise BayesmixError(f"centered: no grouping factor {g!r}; the model has: "
                                f"{', '.join(map(repr, dict.fromkeys(groups))) or '(none)'}")
    return tuple(g in names for g in groups)


def structure_of(design, centered: bool | str | Iterable[str] = False) -> Structure:
    x_names = tuple(design.X_names)
    if "(Intercept)" in x_names[1:]:
        raise BayesmixError("the intercept must be the first column of X")
    cent = centered_terms(design, centered)
    return Structure(
        family=design.family.name,
        link=design.family.link,
        intercept=bool(x_names) and x_names[0] == "(Intercept)",
        terms=tuple(TermShape(t.p, bool(t.correlated) and t.p > 1, c)
                    for t, c in zip(design.terms, cent)),
        offset=design.offset is not None,
        weights=design.weights is not None,
        trials=design.family.name == "binomial",
    )


# ---------------------------------------------------------------- generators


def _response(s: Structure) -> Blocks:
    out = Blocks()
    ytype = "array[N] int<lower=0>" if s.family in _DISCRETE else "vector[N]"
    if s.family == "bernoulli":
        ytype = "array[N] int<lower=0, upper=1>"
    out.data += [
        "int<lower=1> N;  // number of observations",
        f"{ytype} Y;  // response" + (" (successes)" if s.trials else ""),
    ]
    if s.trials:
        out.data.append("array[N] int<lower=0> trials;  // binomial trials")
    if s.weights:
        out.data.append("vector<lower=0>[N] weights;  // likelihood weights")
    return out


def _fixed(s: Structure) -> Blocks:
    out = Blocks()
    out.data += [
        "int<lower=0> K;  // population-level columns of X"
        + (" (with the intercept)" if s.intercept else ""),
        "matrix[N, K] X;  // population-level design matrix",
    ]
    if s.offset:
        out.data.append("vector[N] offsets;  // offset (added to the linear predictor)")
    if s.intercept:
        out.transformed_data += [
            "int Kc = K - 1;  // slopes: the columns of X after the intercept",
            "matrix[N, Kc] Xc;  // X without the intercept, centred",
            "vector[Kc] means_X;  // column means of X before centring",
            "for (i in 2:K) {",
            "means_X[i - 1] = mean(X[, i]);",
            "Xc[, i - 1] = X[, i] - means_X[i - 1];",
            "}",
        ]
        out.parameters += [
            "vector[Kc] b;  // population-level slopes",
            "real Intercept;  // intercept at the mean of the predictors (centred X)",
        ]
        out.generated_quantities += [
            "// the intercept on the original scale of X",
            "real b_Intercept = Intercept - dot_product(means_X, b);",
        ]
    else:
        out.parameters.append("vector[K] b;  // population-level effects (no intercept)")
    return out


def _term(k: int, t: TermShape) -> Blocks:
    out = Blocks()
    out.data += [
        "",
        f"// group-level term {k}",
        f"int<lower=1> N_{k};  // number of levels",
        f"int<lower=1> M_{k};  // coefficients per level",
        f"array[N] int<lower=1, upper=N_{k}> J_{k};  // level of each observation",
    ]
    out.data += [f"vector[N] Z_{k}_{m};  // covariate of coefficient {m}"
                 for m in range(1, t.p + 1)]
    out.parameters += [
        "",
        f"// group-level term {k}",
        f"vector<lower=0>[M_{k}] sd_{k};  // standard deviations",
    ]
    if t.centered:
        out.parameters.append(f"matrix[N_{k}, M_{k}] r_{k};  // group-level effects, one row "
                              "per level (centred)")
    else:
        out.parameters.append(f"matrix[M_{k}, N_{k}] z_{k};  // standardized effects "
                              "(non-centred)")
    if t.correlated:
        out.parameters.append(f"cholesky_factor_corr[M_{k}] L_{k};  // Cholesky factor of "
                              "the correlation matrix")
    if t.correlated:
        out.generated_quantities += [
            f"// correlation matrix of term {k}",
            f"corr_matrix[M_{k}] Cor_{k} = multiply_lower_tri_self_transpose(L_{k});",
        ]
    if t.centered:
        return out
    if t.correlated:
        out.transformed_parameters += [
            f"// group-level effects of term {k}: one row per level",
            f"matrix[N_{k}, M_{k}] r_{k} = (diag_pre_multiply(sd_{k}, L_{k}) * z_{k})';",
        ]
    else:
        out.transformed_parameters += [
            f"// group-level effects of term {k}: one row per level (uncorrelated)",
            f"matrix[N_{k}, M_{k}] r_{k} = (diag_pre_multiply(sd_{k}, z_{k}))';",
        ]
    return out


def _family_param(s: Structure) -> Blocks:
    out = Blocks()
    par = s.family_param
    if par:
        out.parameters += ["", f"real<lower=0> {par};  // {_FAMILY_PARAM_DOC[par]}"]
    return out


def _linear_predictor(s: Structure, with_x: bool) -> list[str]:
    xmat = "Xc" if s.intercept else "X"
    start = "Intercept" if s.intercept else "0.0"
    lines = [f"vector[N] mu = rep_vector({start}, N);"]
    if with_x:
        lines.append(f"mu += {xmat} * b;")
    if s.offset:
        lines.append("mu += offsets;")
    for k, t in enumerate(s.terms, 1):
        parts = " + ".join(f"r_{k}[J_{k}, {m}] .* Z_{k}_{m}" for m in range(1, t.p + 1))
        lines.append(f"mu += {parts};")
    return lines


def _mean(s: Structure, x: str) -> str:
    return _INV_LINK[s.link].format(x=x)


def _lpdf(s: Structure, i: str) -> str:
    """The log density of observation(s) `Y{i}` given the linear predictor `mu{i}`."""
    y, mu = f"Y{i}", f"mu{i}"
    fam, link = s.family, s.link
    if fam == "gaussian":
        return f"normal_lpdf({y} | {_mean(s, mu)}, sigma)"
    if fam == "binomial":
        if link == "logit":
            return f"binomial_logit_lpmf({y} | trials{i}, {mu})"
        return f"binomial_lpmf({y} | trials{i}, {_mean(s, mu)})"
    if fam == "bernoulli":
        if link == "logit":
            return f"bernoulli_logit_lpmf({y} | {mu})"
        return f"bernoulli_lpmf({y} | {_mean(s, mu)})"
    if fam == "poisson":
        if link == "log":
            return f"poisson_log_lpmf({y} | {mu})"
        return f"poisson_lpmf({y} | {_mean(s, mu)})"
    if fam == "negbinomial":
        if link == "log":
            return f"neg_binomial_2_log_lpmf({y} | {mu}, phi)"
        return f"neg_binomial_2_lpmf({y} | {_mean(s, mu)}, phi)"
    if fam == "Gamma":
        return f"gamma_lpdf({y} | shape, {_gamma_rate(s, mu)})"
    raise BayesmixError(f"no joint program for family {fam!r}")


def _gamma_rate(s: Structure, mu: str) -> str:
    # mean m = inverse link of mu; Gamma(shape, rate = shape / m)
    if s.link == "inverse":
        return f"shape * {mu}"
    if s.link == "log":
        return f"shape * exp(-{mu})"
    return f"shape * inv({mu})"


def _rng(s: Structure) -> str:
    fam, link = s.family, s.link
    if fam == "gaussian":
        return f"normal_rng({_mean(s, 'mu')}, sigma)"
    if fam == "binomial":
        return f"binomial_rng(trials, {_mean(s, 'mu')})"
    if fam == "bernoulli":
        return "bernoulli_logit_rng(mu)" if link == "logit" else f"bernoulli_rng({_mean(s, 'mu')})"
    if fam == "poisson":
        return "poisson_log_rng(mu)" if link == "log" else f"poisson_rng({_mean(s, 'mu')})"
    if fam == "negbinomial":
        if link == "log":
            return "neg_binomial_2_log_rng(mu, phi)"
        return f"neg_binomial_2_rng({_mean(s, 'mu')}, phi)"
    return f"gamma_rng(shape, {_gamma_rate(s, 'mu')})"


def _likelihood(s: Structure) -> Blocks:
    out = Blocks()
    out.model.append("// likelihood (skipped for prior predictive draws, prior_only = 1)")
    out.model.append("if (!prior_only) {")
    if s.glm:
        name, extra = _GLM[(s.family, s.link)]
        xmat = "Xc" if s.intercept else "X"
        out.model.append(f"// linear predictor without the population-level slopes "
                         f"({xmat} * b is added by {name.rsplit('_', 1)[0]})")
        out.model += _linear_predictor(s, with_x=False)
        out.model.append(f"target += {name}(Y | {xmat}, mu, b{extra});")
    else:
        out.model.append("// linear predictor")
        out.model += _linear_predictor(s, with_x=True)
        if s.weights:
            out.model += ["for (n in 1:N) {",
                          f"target += weights[n] * {_lpdf(s, '[n]')};",
                          "}"]
        else:
            out.model.append(f"target += {_lpdf(s, '')};")
    out.model.append("}")
    return out


def _flags() -> Blocks:
    out = Blocks()
    out.data += [
        "",
        "int<lower=0, upper=1> prior_only;  // 1: ignore the likelihood (prior predictive)",
        "int<lower=0, upper=1> save_log_lik;  // 1: store the pointwise log-likelihood",
        "int<lower=0, upper=1> save_y_rep;  // 1: store posterior predictive draws",
    ]
    return out


def _default_classes(slots: Sequence[PriorSlot]) -> set[str]:
    """Classes with a data-scaled default in effect (b also when the model has no slopes,
    since K is data and the statement stays in the program)."""
    out = {sl.cls for sl in slots if sl.user is None}
    if not any(sl.cls == "b" for sl in slots):
        out.add("b")
    return out


def _group_slots(slots: list[PriorSlot]) -> list[tuple[Prior | None, list[PriorSlot]]]:
    """Slots of one target grouped by the prior in effect (same text -> one statement)."""
    groups: dict[str, tuple[Prior | None, list[PriorSlot]]] = {}
    for sl in slots:
        key = "default" if sl.user is None else "user:" + sl.user.text
        groups.setdefault(key, (sl.user, []))[1].append(sl)
    return list(groups.values())


def _prior_data(field: str) -> str:
    """The data name of a default prior's number (a DefaultScales field): prior_sd_scale, ..."""
    return "prior_" + field.replace("intercept", "Intercept")


def _subset(var: str, idx: list[int], n_all: int) -> str:
    if len(idx) == n_all:
        return var
    if len(idx) == 1:
        return f"{var}[{idx[0]}]"
    return f"{var}[{{{', '.join(map(str, idx))}}}]"


def _stmt(target: str, dist: str | None, note: str = "") -> str:
    if dist is None:
        return f"// {target}: flat (improper) prior{note}"
    return f"{target} ~ {dist};{note}"


def _priors(s: Structure, slots: Sequence[PriorSlot]) -> Blocks:
    out = Blocks()
    defaults = _default_classes(slots)
    data = []
    if "Intercept" in defaults:
        data += ["real prior_Intercept_loc;  // default prior of Intercept: location",
                 "real<lower=0> prior_Intercept_scale;  // ... and scale"]
    if "b" in defaults:
        size = "K - 1" if s.intercept else "K"
        data.append(f"vector<lower=0>[{size}] prior_b_scale;  // default prior scales of b")
    if "sd" in defaults:
        data.append("real<lower=0> prior_sd_scale;  // default prior scale of the sd's")
    if "sigma" in defaults:
        data.append("real<lower=0> prior_sigma_scale;  // default prior scale of sigma")
    if data:
        out.data += ["", "// data-scaled default priors (see bayesmix.priors)"] + data

    lines = ["", "// priors"]
    by_cls: dict[str, list[PriorSlot]] = {}
    for sl in slots:
        by_cls.setdefault(sl.cls, []).append(sl)

    for sl in by_cls.get("Intercept", []):
        dist = sl.user.stan_call() if sl.user else default_stan_call("Intercept", _prior_data)
        lines.append(_stmt("Intercept", dist, ""))
    b_slots = by_cls.get("b", [])
    if not b_slots:
        # K is data: a model without slopes keeps the statement (over a size-0 b)
        lines.append(f"b ~ {default_stan_call('b', _prior_data)};")
    for user, group in _group_slots(b_slots):
        idx = [g.index for g in group]
        target = _subset("b", idx, len(b_slots))
        if user is None:
            scale = _subset("prior_b_scale", idx, len(b_slots))
            dist = default_stan_call("b", lambda field: scale)
        else:
            dist = user.stan_call()
        lines.append(_stmt(target, dist, ""))
    for k, t in enumerate(s.terms, 1):
        sd_slots = [sl for sl in by_cls.get("sd", []) if sl.term == k]
        for user, group in _group_slots(sd_slots):
            target = _subset(f"sd_{k}", [g.index for g in group], len(sd_slots))
            dist = user.stan_call() if user else default_stan_call("sd", _prior_data)
            lines.append(_stmt(target, dist, ""))
        for sl in by_cls.get("cor", []):
            if sl.term == k:
                dist = sl.user.stan_call() if sl.user else default_stan_call("cor")
                lines.append(_stmt(f"L_{k}", dist, ""))
    for sl in by_cls.get(s.family_param or "-", []):
        dist = sl.user.stan_call() if sl.user else default_stan_call(sl.cls, _prior_data)
        lines.append(_stmt(sl.cls, dist, ""))
    for k, t in enumerate(s.terms, 1):
        lines.append("")
        if not t.centered:
            lines += [f"// standardized group-level effects of term {k}",
                      f"to_vector(z_{k}) ~ std_normal();"]
        elif t.correlated:
            lines += [f"// group-level effects of term {k} (centred): each level's row",
                      f"// ~ multi_normal(0, diag(sd_{k}) * Cor_{k} * diag(sd_{k}))",
                      "{",
                      f"matrix[M_{k}, M_{k}] L_Sigma = diag_pre_multiply(sd_{k}, L_{k});",
                      f"for (j in 1:N_{k}) {{",
                      f"r_{k}[j] ~ multi_normal_cholesky(rep_row_vector(0, M_{k}), L_Sigma);",
                      "}",
                      "}"]
        else:
            lines += [f"// group-level effects of term {k} (centred, uncorrelated)",
                      f"for (m in 1:M_{k}) {{",
                      f"r_{k}[, m] ~ normal(0, sd_{k}[m]);",
                      "}"]
    out.model += lines
    return out


def _generated(s: Structure) -> Blocks:
    out = Blocks()
    ytype = "int" if s.family in _DISCRETE else "real"
    weight = "weights[n] * " if s.weights else ""
    out.generated_quantities += [
        "",
        "// pointwise log-likelihood and posterior predictive draws",
        "vector[save_log_lik ? N : 0] log_lik;",
        f"array[save_y_rep ? N : 0] {ytype} y_rep;",
        "if (save_log_lik || save_y_rep) {",
    ]
    out.generated_quantities += _linear_predictor(s, with_x=True)
    out.generated_quantities += [
        "if (save_log_lik) {",
        "for (n in 1:N) {",
        f"log_lik[n] = {weight}{_lpdf(s, '[n]')};",
        "}",
        "}",
        "if (save_y_rep) {",
        f"y_rep = {_rng(s)};",
        "}",
        "}",
    ]
    return out


# ---------------------------------------------------------------- the program


@dataclass(frozen=True, eq=False)
class JointProgram:
    """The generated joint program of a design with its priors."""

    code: str                       # the program Stan compiles (structure only)
    annotated: str                  # the same program, headed by the formula and names
    blocks: Blocks
    structure: Structure
    slots: tuple[PriorSlot, ...]

    @property
    def name(self) -> str:
        digest = hashlib.sha256(self.code.encode()).hexdigest()[:8]
        return f"joint_{self.structure.family}_{digest}"

    def __str__(self) -> str:
        return self.annotated


def _structure_header(s: Structure) -> list[str]:
    lines = [
        "Multilevel model, fully Bayesian joint parameterisation (generated by bayesmix).",
        f"Family: {s.family}({s.link}); "
        + ("with intercept" if s.intercept else "no intercept")
        + (", offset" if s.offset else "") + (", weights" if s.weights else "") + ".",
    ]
    if s.terms:
        for k, t in enumerate(s.terms, 1):
            kind = "correlated" if t.correlated else "uncorrelated"
            lines.append(f"Group-level term {k}: {t.p} coefficient{'s' if t.p > 1 else ''}"
                         + (f", {kind}" if t.p > 1 else "")
                         + (", centred" if t.centered else ", non-centred") + ".")
    else:
        lines.append("No group-level terms.")
    lines.append("Sizes and the data-scaled default priors are data: the program is shared "
                 "by every model of this shape.")
    return lines


def _names_header(design) -> list[str]:
    text = design.formula.text.strip()
    lines = [f"Formula: {text}", f"Family:  {design.family}",
             f"Data:    {design.n} observations"]
    slopes = slope_names(design)
    lines.append("Stan names:")
    if "(Intercept)" in design.X_names:
        lines.append("  Intercept = (Intercept) at the mean of X; b_Intercept on X's own scale")
    if slopes:
        lines.append("  b = (" + ", ".join(slopes) + ")")
    for k, t in enumerate(design.terms, 1):
        lines.append(f"  term {k} (sd_{k}, r_{k}, ...): {t.group}, {t.n_levels} levels; "
                     f"coefficients ({', '.join(t.coef_names)})")
    lines.append("")
    return lines


def joint_program(design, priors: Iterable[Prior] = (),
                  centered: bool | str | Iterable[str] = False) -> JointProgram:
    """Generate the joint (brms-style) Stan program for a design and priors.

    centered: group-level terms are non-centred by default (brms); True, or
    the names of grouping factors, switches those terms to the centred
    parameterisation, which samples much faster when the data pin each level's
    effect down (many observations per level), e.g. lmmdata's (1 | school/class)."""
    s = structure_of(design, centered)
    if s.family not in ("gaussian", "binomial", "bernoulli", "poisson", "negbinomial", "Gamma"):
        raise BayesmixError(f"no joint program for family {s.family!r}")
    slots = tuple(resolve_priors(design, priors))
    parts = [_response(s), _fixed(s)]
    parts += [_term(k, t) for k, t in enumerate(s.terms, 1)]
    parts += [_family_param(s), _likelihood(s), _priors(s, slots), _flags(), _generated(s)]
    blocks = merge(parts)
    header = _structure_header(s)
    code = assemble(blocks, header)
    annotated = assemble(blocks, _names_header(design) + header)
    return JointProgram(code, annotated, blocks, s, slots)


def joint_stancode(design, priors: Iterable[Prior] = (), annotate: bool = True,
                   centered: bool | str | Iterable[str] = False) -> str:
    """The joint program's text; `annotate` adds the formula and names in a header comment
    (comments only: the compiled program is the same)."""
    prog = joint_program(design, priors, centered)
    return prog.annotated if annotate else prog.code


def joint_stan_data(design, priors: Iterable[Prior] = (), prior_only: bool = False,
                    save_log_lik: bool = True, save_y_rep: bool = True) -> dict:
    """The data of the joint program, under the names the code uses."""
    s = structure_of(design)
    slots = resolve_priors(design, priors)
    n = design.n
    y = np.asarray(design.y)
    data: dict = {"N": n}
    if s.family in _DISCRETE:
        data["Y"] = np.rint(y).astype(np.int64)
    else:
        data["Y"] = y.astype(float)
    if s.trials:
        data["trials"] = np.rint(np.asarray(design.trials)).astype(np.int64)
    if s.weights:
        data["weights"] = np.asarray(design.weights, dtype=float)
    X = np.asarray(design.X, dtype=float).reshape(n, -1)
    data["K"] = X.shape[1]
    data["X"] = X
    if s.offset:
        data["offsets"] = np.asarray(design.offset, dtype=float)
    for k, t in enumerate(design.terms, 1):
        data[f"N_{k}"] = t.n_levels
        data[f"M_{k}"] = t.p
        data[f"J_{k}"] = np.asarray(t.index, dtype=np.int64) + 1
        for m in range(1, t.p + 1):
            data[f"Z_{k}_{m}"] = np.asarray(t.Z[:, m - 1], dtype=float)
    data["prior_only"] = int(bool(prior_only))
    data["save_log_lik"] = int(bool(save_log_lik))
    data["save_y_rep"] = int(bool(save_y_rep))
    scales = default_scales(design)
    defaults = _default_classes(slots)
    if "Intercept" in defaults:
        data["prior_Intercept_loc"] = scales.intercept_loc
        data["prior_Intercept_scale"] = scales.intercept_scale
    if "b" in defaults:
        data["prior_b_scale"] = np.asarray(scales.b_scale, dtype=float)
    if "sd" in defaults:
        data["prior_sd_scale"] = scales.sd_scale
    if "sigma" in defaults:
        data["prior_sigma_scale"] = scales.sigma_scale
    return data


def joint_inits(design, priors: Iterable[Prior] = (),
                centered: bool | str | Iterable[str] = False) -> dict | None:
    """Starting values where random inits would leave the support (non-canonical
    links whose mean must stay positive or inside (0, 1)); None otherwise."""
    s = structure_of(design, centered)
    needs = {("Gamma", "inverse"), ("Gamma", "identity"), ("poisson", "identity"),
             ("poisson", "sqrt"), ("negbinomial", "identity"), ("negbinomial", "sqrt"),
             ("binomial", "log"), ("bernoulli", "log"), ("gaussian", "inverse")}
    if (s.family, s.link) not in needs:
        return None
    y = np.asarray(design.y, dtype=float)
    if s.trials:
        y = y / np.maximum(np.asarray(design.trials, dtype=float), 1)
    m = float(np.mean(y))
    if s.family in ("binomial", "bernoulli"):
        m = min(max(m, 0.05), 0.95)
    if m <= 0:
        m = 0.5
    eta = float(get_link(s.link).linkfun(np.array([m]))[0])
    K = design.X.shape[1]
    kb = K - 1 if s.intercept else K
    inits: dict = {"b": np.zeros(kb)}
    if not s.intercept:
        return None  # without an intercept there is no single place for the mean
    inits["Intercept"] = eta
    for k, t in enumerate(design.terms, 1):
        inits[f"sd_{k}"] = np.full(t.p, 0.01 * max(abs(eta), 1e-3))
        if s.terms[k - 1].centered:
            inits[f"r_{k}"] = np.zeros((t.n_levels, t.p))
        else:
            inits[f"z_{k}"] = np.zeros((t.p, t.n_levels))
        if t.correlated and t.p > 1:
            inits[f"L_{k}"] = np.eye(t.p)
    if s.family_param:
        inits[s.family_param] = 1.0
    return inits


__all__ = ["JointProgram", "Structure", "centered_terms", "joint_inits", "joint_program", "joint_stan_data",
           "joint_stancode", "structure_of"]
