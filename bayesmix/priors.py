"""Priors of the fully Bayesian (joint) programs: defaults, overrides, summary.

Parameter classes (brms's names)
--------------------------------
``Intercept``  the intercept of the centred linear predictor (models with an intercept).
``b``          population-level (fixed) slopes, one per non-intercept column of X;
               `coef` = lme4's column name, e.g. ``"Days"``.
``sd``         group-level standard deviations; `group` = lme4's grouping factor
               (``"Subject"``, ``"class:school"``), `coef` = the term's column name.
``cor``        correlation matrices of correlated group-level terms (LKJ priors).
``sigma``      residual standard deviation (gaussian).
``phi``        negative binomial precision (lme4's glmer.nb theta; Var = mu + mu^2 / phi).
``shape``      Gamma shape (mean mu, variance mu^2 / shape).
``nu``         student-t degrees of freedom (distributional models only).

Distributional models (bayesmix.dist) have one linear predictor per distributional
parameter; ``prior(..., dpar="sigma")`` targets the Intercept, b, sd or cor classes of the
sigma predictor (``dpar=None``, the default, or ``"mu"``: the main formula). A class named
after a constant (unmodelled) parameter (``cls="sigma"``, ``"nu"``, ``"phi"``, ``"shape"``)
puts the prior on that parameter's natural scale. docs/families.md lists their defaults.

Defaults (weakly informative, scaled to the data, passed to Stan as data so that
two models of the same shape share one compiled program)
-------------------------------------------------------------------------------
Write ``l(y)`` for the response on the link scale (binomial: the proportion
successes / trials) and ``s_y = max(2.5, mad(l(y)))`` over its finite values
(2.5 when none is finite, e.g. 0/1 responses); ``mad`` is R's (1.4826 x the
median absolute deviation).

* ``Intercept ~ student_t(3, median(l(y)), s_y)`` -- brms's default; for
  gaussian(identity) this is ``student_t(3, median(y), max(2.5, mad(y)))``; the
  location falls back to 0 when ``median(l(y))`` is not finite (e.g. bernoulli).
  It is the prior of the intercept at the mean of the predictors (X is centred).
* ``b[j] ~ normal(0, 2.5 * s_b / sd(x_j))`` -- rstanarm's autoscaled prior (brms
  uses an improper flat prior here). ``s_b = sd(y)`` for gaussian(identity) and,
  more generally, ``sd(l(y))`` for links that keep the response's units
  (identity, sqrt); ``s_b = 1`` on the link scale of the other links (logit,
  probit, cloglog, log, inverse). A column with ``sd(x_j) = 0`` uses ``sd = 1``.
* ``sd ~ student_t(3, 0, s_y)``, half (the parameter is bounded below by 0).
* ``sigma ~ student_t(3, 0, s_y)``, half.
* ``cor``: ``L ~ lkj_corr_cholesky(1)``, i.e. LKJ(1) -- uniform over correlation matrices.
* ``phi ~ gamma(0.01, 0.01)`` and ``shape ~ gamma(0.01, 0.01)`` (brms's defaults).

Overrides
---------
``prior(dist, cls, coef=None, group=None)``; the most specific prior wins:
coefficient-and-group, then coefficient, then group, then class, then the
default. Priors on bounded classes (sd, sigma, phi, shape) are truncated at 0
(half-distributions). User priors are written literally into the Stan program.

Distributions: normal(mu, sigma), student_t(nu, mu, sigma), cauchy(mu, sigma),
double_exponential(mu, sigma), logistic(mu, sigma), std_normal(), flat (improper,
Intercept and b only); for positive classes also exponential(rate), gamma(alpha,
beta), inv_gamma(alpha, beta), lognormal(mu, sigma), weibull(alpha, sigma); for
``cor``: lkj(eta) (``lkj_corr_cholesky(eta)`` is accepted as a synonym).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import BayesmixError


class PriorError(BayesmixError, ValueError):
    """A prior specification that cannot be used (bad distribution, class, coef or group)."""


CLASSES = ("Intercept", "b", "sd", "cor", "sigma", "phi", "shape", "nu")
_POSITIVE_CLASSES = ("sd", "sigma", "phi", "shape", "nu")
_SCALAR_CLASSES = ("Intercept", "sigma", "phi", "shape", "nu")
# the classes a prior with dpar= (one predictor of a distributional model) may target
DPAR_CLASSES = ("Intercept", "b", "sd", "cor")

# name -> (argument names, support, constraint per argument: "pos" or None)
_DISTS: dict[str, tuple[tuple[str, ...], str, tuple[str | None, ...]]] = {
    "normal": (("mu", "sigma"), "real", (None, "pos")),
    "student_t": (("nu", "mu", "sigma"), "real", ("pos", None, "pos")),
    "cauchy": (("mu", "sigma"), "real", (None, "pos")),
    "double_exponential": (("mu", "sigma"), "real", (None, "pos")),
    "logistic": (("mu", "sigma"), "real", (None, "pos")),
    "std_normal": ((), "real", ()),
    "flat": ((), "flat", ()),
    "exponential": (("beta",), "positive", ("pos",)),
    "gamma": (("alpha", "beta"), "positive", ("pos", "pos")),
    "inv_gamma": (("alpha", "beta"), "positive", ("pos", "pos")),
    "lognormal": (("mu", "sigma"), "positive", (None, "pos")),
    "weibull": (("alpha", "sigma"), "positive", ("pos", "pos")),
    "lkj": (("eta",), "cor", ("pos",)),
}
_SYNONYMS = {"lkj_corr_cholesky": "lkj", "lkj_corr": "lkj", "": "flat"}
_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.S)


def fmt_number(x: float) -> str:
    """A number as Stan source: integers without a decimal point, else the shortest repr."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def fmt_short(x: float, digits: int = 4) -> str:
    """A number for display (prior_summary): `digits` significant digits."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    return fmt_number(float(f"{x:.{digits}g}"))


@dataclass(frozen=True)
class Prior:
    """One prior statement: a distribution for a class, optionally one coef / group."""

    dist: str                  # distribution name, e.g. "normal"
    args: tuple[float, ...]    # its numeric arguments
    cls: str                   # parameter class (see CLASSES)
    coef: str | None = None
    group: str | None = None
    dpar: str | None = None    # distributional models: the predictor (None: mu)

    @property
    def text(self) -> str:
        """The distribution as the user would write it: ``normal(5, 0.001)``."""
        if self.dist == "flat":
            return "flat"
        return f"{self.dist}({', '.join(fmt_number(a) for a in self.args)})"

    def stan_call(self) -> str | None:
        """The Stan distribution call (None for an improper flat prior)."""
        if self.dist == "flat":
            return None
        name = "lkj_corr_cholesky" if self.dist == "lkj" else self.dist
        return f"{name}({', '.join(fmt_number(a) for a in self.args)})"

    def to_dict(self) -> dict:
        """A JSON-able form (export bundles); `prior(**d)` restores it."""
        out = {"dist": self.text, "cls": self.cls, "coef": self.coef, "group": self.group}
        if self.dpar is not None:  # absent otherwise: bundles written before dpar= read alike
            out["dpar"] = self.dpar
        return out

    def __str__(self) -> str:
        where = "".join(f", {k}={v!r}" for k, v in (("coef", self.coef), ("group", self.group),
                                                     ("dpar", self.dpar))
                        if v is not None)
        return f"prior({self.text!r}, cls={self.cls!r}{where})"

    __repr__ = __str__


def _parse_dist(dist: str) -> tuple[str, tuple[float, ...]]:
    if not isinstance(dist, str):
        raise PriorError(f"a prior distribution must be a string like 'normal(0, 1)', "
                         f"not {type(dist).__name__}")
    m = _CALL.match(dist)
    if not m and dist.strip() == "":
        return "flat", ()
    if not m:
        raise PriorError(f"cannot read the prior distribution {dist!r}; write it like "
                         f"'normal(0, 2.5)' (choose one of: {', '.join(_DISTS)})")
    name = _SYNONYMS.get(m.group(1), m.group(1))
    if name not in _DISTS:
        raise PriorError(f"unknown prior distribution {m.group(1)!r} in {dist!r}; "
                         f"choose one of: {', '.join(_DISTS)}")
    argnames, _, constraints = _DISTS[name]
    body = (m.group(2) or "").strip()
    if m.group(2) is None and argnames:
        raise PriorError(f"the prior {dist!r} needs arguments: {name}({', '.join(argnames)})")
    raw = [a.strip() for a in body.split(",")] if body else []
    if len(raw) != len(argnames):
        raise PriorError(f"{name} takes {len(argnames)} argument"
                         f"{'' if len(argnames) == 1 else 's'} ({', '.join(argnames) or 'none'}), "
                         f"got {len(raw)} in {dist!r}")
    args = []
    for a, an, c in zip(raw, argnames, constraints):
        try:
            v = float(a)
        except ValueError:
            raise PriorError(f"argument {an} = {a!r} of {dist!r} is not a number") from None
        if not math.isfinite(v):
            raise PriorError(f"argument {an} of {dist!r} must be finite")
        if c == "pos" and v <= 0:
            raise PriorError(f"argument {an} of {dist!r} must be positive, got {a}")
        args.append(v)
    return name, tuple(args)


def prior(dist: str, cls: str, coef: str | None = None, group: str | None = None,
          dpar: str | None = None) -> Prior:
    """A prior: ``prior("normal(0, 1)", cls="b", coef="Days")``,
    ``prior("lkj(2)", cls="cor")``, ``prior("exponential(1)", cls="sd", group="Subject")``;
    distributional models: ``prior("normal(0, 1)", cls="b", coef="x", dpar="sigma")``.

    Checks the distribution and the class here; coef, group and dpar are checked
    against a model when it is fitted (see `resolve_priors`)."""
    name, args = _parse_dist(dist)
    if cls not in CLASSES:
        raise PriorError(f"unknown prior class {cls!r}; choose one of: {', '.join(CLASSES)}")
    support = _DISTS[name][1]
    if cls == "cor" and support != "cor":
        raise PriorError(f"class 'cor' takes an LKJ prior such as 'lkj(2)', not {dist!r}")
    if cls != "cor" and support == "cor":
        raise PriorError(f"{name} is a prior for correlation matrices (class 'cor'), "
                         f"not for class {cls!r}")
    if support == "positive" and cls not in _POSITIVE_CLASSES:
        raise PriorError(f"{name} has positive support; it can be a prior for "
                         f"{', '.join(_POSITIVE_CLASSES)}, not for class {cls!r}")
    if support == "flat" and cls not in ("Intercept", "b"):
        raise PriorError(f"an improper flat prior is allowed for Intercept and b only, "
                         f"not for class {cls!r}")
    for what, v in (("coef", coef), ("group", group), ("dpar", dpar)):
        if v is not None and not isinstance(v, str):
            raise PriorError(f"{what} must be a string (an lme4 name), not {type(v).__name__}")
    if dpar == "mu":
        dpar = None  # the main formula's predictor, as brms's dpar = "mu"
    if dpar is not None and cls not in DPAR_CLASSES:
        raise PriorError(f"class {cls!r} takes no dpar; a distributional parameter's predictor "
                         f"has classes {', '.join(DPAR_CLASSES)} (e.g. prior(..., "
                         f"cls='Intercept', dpar={dpar!r})), and cls={dpar!r} without dpar "
                         "is the prior of a constant parameter on its natural scale")
    if cls in _SCALAR_CLASSES and (coef is not None or group is not None):
        raise PriorError(f"class {cls!r} is a single parameter; it takes no coef or group")
    if cls == "b" and group is not None:
        raise PriorError("class 'b' (population-level effects) takes no group; "
                         "use cls='sd' for group-level standard deviations")
    if cls == "cor" and coef is not None:
        raise PriorError("class 'cor' takes a group, not a coef (the LKJ prior is on the "
                         "whole correlation matrix)")
    return Prior(name, args, cls, coef, group, dpar)


# ---------------------------------------------------------------- defaults


def _mad(x: np.ndarray) -> float:
    """R's mad(): 1.4826 x median absolute deviation from the median."""
    if x.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


@dataclass(frozen=True)
class DefaultScales:
    """Data-dependent numbers of the default priors (passed to Stan as data)."""

    intercept_loc: float
    intercept_scale: float
    b_scale: tuple[float, ...]   # one per population-level slope
    sd_scale: float
    sigma_scale: float


def _has_intercept(design) -> bool:
    return len(design.X_names) > 0 and design.X_names[0] == "(Intercept)"


def slope_names(design) -> tuple[str, ...]:
    """Names of the coefficients of class b (X's columns without the intercept)."""
    return tuple(design.X_names[1:] if _has_intercept(design) else design.X_names)


def default_scales(design) -> DefaultScales:
    fam = design.family
    y = np.asarray(design.y, dtype=float)
    if fam.name == "binomial" and design.trials is not None:
        t = np.asarray(design.trials, dtype=float)
        y = np.divide(y, t, out=np.full_like(y, np.nan), where=t > 0)
    with np.errstate(all="ignore"):  # 0 and 1 leave the range of most links: dropped below
        ly = fam.linkfun(y)
    finite = ly[np.isfinite(ly)]
    if fam.name == "gaussian" and fam.link == "identity":
        loc = float(np.median(y))
    else:
        med = float(np.median(ly)) if ly.size else 0.0
        loc = med if math.isfinite(med) else 0.0
    s_y = max(2.5, _mad(finite))
    if fam.link in ("identity", "sqrt") and finite.size > 1 and np.std(finite, ddof=1) > 0:
        s_b = float(np.std(finite, ddof=1))
    else:
        s_b = 1.0
    X = np.asarray(design.X, dtype=float)
    cols = range(1, X.shape[1]) if _has_intercept(design) else range(X.shape[1])
    b_scale = []
    for j in cols:
        sx = float(np.std(X[:, j], ddof=1)) if X.shape[0] > 1 else 0.0
        b_scale.append(2.5 * s_b / (sx if sx > 0 else 1.0))
    return DefaultScales(loc, s_y, tuple(b_scale), s_y, s_y)


# ---------------------------------------------------------------- resolution


@dataclass(frozen=True)
class PriorSlot:
    """One parameter (or vector element) that gets a prior in a given model."""

    cls: str
    coef: str | None
    group: str | None
    term: int | None          # 1-based random-term index (sd, cor)
    index: int | None         # 1-based position in the Stan vector (b, sd)
    user: Prior | None        # the user prior in effect, None for the default

    @property
    def source(self) -> str:
        return "default" if self.user is None else "user"


def family_classes(design) -> tuple[str, ...]:
    """The family parameter's class (sigma, phi, shape), if the family has one."""
    par = design.family.dispersion
    return () if par is None else (par,)


def _cor_terms(design) -> list[int]:
    return [k for k, t in enumerate(design.terms, 1) if t.correlated and t.p > 1]


def model_classes(design) -> tuple[str, ...]:
    """The prior classes a model has, in CLASSES order."""
    have = set(family_classes(design))
    if _has_intercept(design):
        have.add("Intercept")
    if slope_names(design):
        have.add("b")
    if design.terms:
        have.add("sd")
    if _cor_terms(design):
        have.add("cor")
    return tuple(c for c in CLASSES if c in have)


def _slots(design) -> list[PriorSlot]:
    slots: list[PriorSlot] = []
    if _has_intercept(design):
        slots.append(PriorSlot("Intercept", None, None, None, None, None))
    for i, name in enumerate(slope_names(design), 1):
        slots.append(PriorSlot("b", name, None, None, i, None))
    for k, t in enumerate(design.terms, 1):
        for m, name in enumerate(t.coef_names, 1):
            slots.append(PriorSlot("sd", name, t.group, k, m, None))
    for k in _cor_terms(design):
        slots.append(PriorSlot("cor", None, design.terms[k - 1].group, k, None, None))
    for c in family_classes(design):
        slots.append(PriorSlot(c, None, None, None, None, None))
    return slots


def _check(p: Prior, design, classes: tuple[str, ...]) -> None:
    if p.dpar is not None:
        raise PriorError(f"{p}: dpar= targets a distributional parameter's predictor; this "
                         "model has one linear predictor (mu): drop dpar, or fit a "
                         "distributional model (bf(...) or its family)")
    if p.cls not in classes:
        raise PriorError(f"{p}: this model has no parameters of class {p.cls!r}; its classes "
                         f"are: {', '.join(classes)}")
    if p.cls == "b" and p.coef is not None:
        names = slope_names(design)
        if p.coef not in names:
            hint = ("; the intercept has its own class: use cls='Intercept'"
                    if p.coef == "(Intercept)" else "")
            raise PriorError(f"{p}: no population-level coefficient {p.coef!r}; valid coefs "
                             f"are: {', '.join(map(repr, names))}{hint}")
    if p.cls in ("sd", "cor"):
        terms = design.terms if p.cls == "sd" else [design.terms[k - 1]
                                                     for k in _cor_terms(design)]
        groups = list(dict.fromkeys(t.group for t in terms))
        if p.group is not None and p.group not in groups:
            raise PriorError(f"{p}: no grouping factor {p.group!r} with class {p.cls!r}; "
                             f"valid groups are: {', '.join(map(repr, groups))}")
        if p.coef is not None:
            pool = [t for t in terms if p.group is None or t.group == p.group]
            coefs = list(dict.fromkeys(c for t in pool for c in t.coef_names))
            if p.coef not in coefs:
                where = f" of group {p.group!r}" if p.group is not None else ""
                raise PriorError(f"{p}: no group-level coefficient {p.coef!r}{where}; valid "
                                 f"coefs are: {', '.join(map(repr, coefs))}")


def resolve_priors(design, priors: Iterable[Prior] = ()) -> list[PriorSlot]:
    """Every prior slot of the model with the user prior in effect (or None)."""
    priors = list(priors)
    classes = model_classes(design)
    seen: dict[tuple, Prior] = {}
    for p in priors:
        if not isinstance(p, Prior):
            raise PriorError(f"priors must be made with bayesmix.priors.prior(...), "
                             f"got {type(p).__name__}: {p!r}")
        _check(p, design, classes)
        key = (p.cls, p.coef, p.group)
        if key in seen:
            raise PriorError(f"duplicated prior specification: {seen[key]} and {p}")
        seen[key] = p
    out = []
    for s in _slots(design):
        best, best_rank = None, -1
        for p in priors:
            if p.cls != s.cls:
                continue
            if p.coef is not None and p.coef != s.coef:
                continue
            if p.group is not None and p.group != s.group:
                continue
            rank = 2 * (p.coef is not None) + (p.group is not None)
            if rank > best_rank:
                best, best_rank = p, rank
        out.append(PriorSlot(s.cls, s.coef, s.group, s.term, s.index, best))
    return out


# The default prior of each class, the one table behind prior_summary, the generated program's
# text and the generic programs' prior codes. A string argument names the DefaultScales field
# holding the data-dependent number (the generated program reads it as data "prior_<...>").
DEFAULT_PRIORS: dict[str, tuple[str, tuple[float | str, ...]]] = {
    "Intercept": ("student_t", (3, "intercept_loc", "intercept_scale")),
    "b": ("normal", (0, "b_scale")),          # b_scale: one per slope
    "sd": ("student_t", (3, 0, "sd_scale")),
    "sigma": ("student_t", (3, 0, "sigma_scale")),
    "phi": ("gamma", (0.01, 0.01)),
    "shape": ("gamma", (0.01, 0.01)),
    "cor": ("lkj", (1,)),
}


def default_prior(cls: str, scales: DefaultScales, index: int | None = None
                  ) -> tuple[str, tuple[float, ...]]:
    """(distribution, numbers) of a class's default prior; ``index``: the slope (b, 1-based)."""
    dist, args = DEFAULT_PRIORS[cls]
    out = []
    for a in args:
        v = getattr(scales, a) if isinstance(a, str) else a
        out.append(float(v[index - 1] if a == "b_scale" else v))
    return dist, tuple(out)


def default_stan_call(cls: str, data_name=lambda field: field) -> str:
    """A class's default prior as Stan source, scales as data: ``data_name(field)`` gives the
    expression of a DefaultScales field (e.g. ``prior_b_scale[2:3]``)."""
    dist, args = DEFAULT_PRIORS[cls]
    name = "lkj_corr_cholesky" if dist == "lkj" else dist
    text = [data_name(a) if isinstance(a, str) else fmt_number(a) for a in args]
    return f"{name}({', '.join(text)})"


# Prior codes of the generic programs (joint_prior_lpdf: stan/glmm_joint.stan, lmm_marginal.stan)
PRIOR_CODES = {"flat": 0, "normal": 1, "student_t": 2, "cauchy": 3, "double_exponential": 4,
               "logistic": 5, "std_normal": 6, "exponential": 7, "gamma": 8, "inv_gamma": 9,
               "lognormal": 10, "weibull": 11}


def prior_row(slot: PriorSlot, scales: DefaultScales) -> tuple[int, list[float]]:
    """A scalar slot's prior as the generic programs read it: (code, 3 arguments, 0-padded);
    the user's prior, else the class's default."""
    if slot.user is not None:
        name, args = slot.user.dist, slot.user.args
    else:
        name, args = default_prior(slot.cls, scales, slot.index)
    return PRIOR_CODES[name], [float(x) for x in list(args) + [0.0] * (3 - len(args))]


def prior_data(design, priors: Iterable[Prior] = ()) -> dict:
    """Every prior of the generic joint program as data (also what exact prior draws read):
    (code, 3 arguments) per scalar in the order Intercept, b, sd (term by term), family
    parameter; the LKJ shape per term."""
    slots = resolve_priors(design, tuple(priors))
    scales = default_scales(design)
    rows = []
    for sl in slots:
        if sl.cls == "Intercept":
            rows.append(prior_row(sl, scales))
    for sl in sorted((s for s in slots if s.cls == "b"), key=lambda s: s.index):
        rows.append(prior_row(sl, scales))
    sd = {(sl.term, sl.index): sl for sl in slots if sl.cls == "sd"}
    for k, t in enumerate(design.terms, 1):
        for m in range(1, t.p + 1):
            rows.append(prior_row(sd[(k, m)], scales))
    par = design.family.dispersion
    if par is not None:
        sl = [s for s in slots if s.cls == par][0]
        rows.append(prior_row(sl, scales))
    cor = {sl.term: sl for sl in slots if sl.cls == "cor"}
    eta = [float(cor[k].user.args[0]) if k in cor and cor[k].user is not None else 1.0
           for k in range(1, len(design.terms) + 1)]
    return {"n_prior": len(rows), "prior_dist": [r[0] for r in rows],
            "prior_args": [r[1] for r in rows], "lkj_eta": eta}


def default_text(slot: PriorSlot, scales: DefaultScales) -> str:
    """The default prior of a slot with its numbers, e.g. ``student_t(3, 0, 35.6)``."""
    dist, args = default_prior(slot.cls, scales, slot.index)
    return f"{dist}({', '.join(fmt_short(a) for a in args)})"


def prior_summary(design, priors: Sequence[Prior] = ()) -> pd.DataFrame:
    """Every prior in effect for the model: columns prior, class, coef, group, source.

    Bounded classes (sd, sigma, phi, shape) are truncated at 0 (half-distributions)."""
    scales = default_scales(design)
    rows = []
    for s in resolve_priors(design, priors):
        text = s.user.text if s.user is not None else default_text(s, scales)
        rows.append({"prior": text, "class": s.cls, "coef": s.coef or "",
                     "group": s.group or "", "source": s.source})
    return pd.DataFrame(rows, columns=["prior", "class", "coef", "group", "source"])


__all__ = ["CLASSES", "DEFAULT_PRIORS", "PRIOR_CODES", "DefaultScales", "Prior", "PriorError", "PriorSlot",
           "default_prior", "default_scales", "default_stan_call", "default_text", "model_classes",
           "prior", "prior_data", "prior_row", "prior_summary", "resolve_priors", "slope_names"]
