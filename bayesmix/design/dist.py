"""Stage 2 for distributional models (issue #17): one linear predictor per distributional
parameter, each with its own fixed effects and group-level terms.

A `DistDesign` is what both programs of a distributional model read (``stan/dist_nuts.stan``
for NUTS, ``stan/dist_ml.stan`` for Laplace maximum likelihood), through one data layout,
`dist_stan_data`. Predictor 1 is mu (the main formula); predictors 2.. are the family's
distributional parameters in `FamilySpec.dpars` order, each modelled by its formula in
``bf(...)`` or, when it has none, by an intercept only (a constant: its link-scale intercept
is the parameter). Cumulative models have mu only (their cutpoints are separate parameters
and ``disc`` stays 1) and no intercept in mu (the cutpoints absorb it, as brms and clmm).

The response follows the family's support: numbers in (0, 1) for beta, cbind(successes,
failures) for beta_binomial, an ordered pandas Categorical or whole numbers for cumulative
(categories 1..K in their order), counts, positive numbers, anything real.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError, FamilyError, FormulaError, user_stacklevel
from ..families import ALL_FAMILIES, EXTENDED_FAMILIES, Family, get_family
from ..formula import ParsedFormula, parse_formula
from ..formula.distributional import DistributionalFormula, check_dpars, dpar_formulas
from ..formula.safety import check_transforms
from .build import (RandomTerm, _check_columns, _counts, _independent_columns, _random_term,
                    _referenced)
from .columns import evaluate_column as _evaluate, numeric_column as _numeric
from .modelmatrix import ModelMatrixSpec, build_model_matrix

# family codes of stan/dist_functions.stan (the `family` data of both programs): each family's
# FamilySpec.dist_code
DIST_FAMILY_CODES: dict[str, int] = {name: spec.dist_code for name, spec in ALL_FAMILIES.items()
                                     if spec.dist_code is not None}
# link codes of every predictor: mu's links keep bayesmix.families.LINKS' codes; logm1
# (student's nu = 1 + exp(eta)) is code 8
DIST_LINK_CODES: dict[str, int] = {"logit": 1, "probit": 2, "cloglog": 3, "log": 4,
                                   "identity": 5, "inverse": 6, "sqrt": 7, "logm1": 8}
DIST_FAMILIES = tuple(DIST_FAMILY_CODES)


@dataclass(frozen=True, eq=False)
class Predictor:
    """One linear predictor: the distributional parameter it models and its terms."""

    dpar: str                      # "mu", "sigma", "nu", "phi", "shape", "zi", "hu"
    link: str                      # its link (DIST_LINK_CODES)
    formula: str                   # the right side as written ("1" when not modelled)
    X: np.ndarray                  # (n, k) fixed-effect columns, rank-deficient ones dropped
    X_names: tuple[str, ...]
    terms: tuple[RandomTerm, ...]  # lme4's order within this predictor
    fixed_spec: ModelMatrixSpec
    modelled: bool                 # False: a constant (intercept only, not in bf())

    @property
    def has_intercept(self) -> bool:
        return bool(self.X_names) and self.X_names[0] == "(Intercept)"


@dataclass(frozen=True, eq=False)
class DistDesign:
    """The validated structures of a distributional model (stage 2 -> Stan data)."""

    formula: DistributionalFormula
    family: Family
    y: np.ndarray                  # float (n,): response; successes (beta_binomial); 1..K
    trials: np.ndarray | None      # beta_binomial trials
    categories: tuple[str, ...]    # cumulative: the K categories in order; else ()
    predictors: tuple[Predictor, ...]  # mu first, then the family's dpars
    offset: np.ndarray | None      # added to mu's linear predictor
    data: pd.DataFrame             # the rows used (after dropping NA), original index
    dropped_na: int
    transforms: dict | None = None

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def terms(self) -> tuple[RandomTerm, ...]:
        """Every group-level term, predictor by predictor (the programs' term order)."""
        return tuple(t for p in self.predictors for t in p.terms)

    @property
    def term_predictor(self) -> tuple[int, ...]:
        """0-based predictor of each of `terms`."""
        return tuple(d for d, p in enumerate(self.predictors) for _ in p.terms)

    def predictor(self, dpar: str) -> Predictor:
        for p in self.predictors:
            if p.dpar == dpar:
                return p
        raise KeyError(dpar)

    def __str__(self) -> str:
        lines = [f"Distributional design: {self.formula.formula.strip()}",
                 f"  family {self.family}, n = {self.n}"]
        for p in self.predictors:
            lines.append(f"  {p.dpar} ({p.link}) ~ {p.formula.strip()}: "
                         f"{', '.join(p.X_names) or '(no fixed effects)'}")
            lines += [f"    term {t}" for t in p.terms]
        if self.categories:
            lines.append(f"  categories: {' < '.join(self.categories)}")
        if self.dropped_na:
            lines.append(f"  dropped {self.dropped_na} rows with missing values")
        return "\n".join(lines)

    __repr__ = __str__


def needs_dist_design(formula, family: str | Family) -> bool:
    """True when a model is distributional: bf() with parameter formulas, or a family only the
    distributional programs fit (student, lognormal, beta, ...)."""
    name = family.name if isinstance(family, Family) else get_family(family, fittable=False).name
    dpars = dpar_formulas(formula) if not isinstance(formula, ParsedFormula) else {}
    return name in EXTENDED_FAMILIES or bool(dpars)


# ---------------------------------------------------------------- response


def _ordinal(values: pd.Series, expr: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if isinstance(values.dtype, pd.CategoricalDtype):
        if not values.cat.ordered:
            raise DataError(f"the cumulative response {expr!r} is an unordered categorical; "
                            "make it ordered (pd.Categorical(..., ordered=True)) so the "
                            "categories have an order")
        used = values.cat.remove_unused_categories()
        unused = [str(c) for c in values.cat.categories if c not in set(used.cat.categories)]
        if unused:
            warnings.warn(f"the cumulative response {expr!r} has no rows in categor"
                          f"{'ies' if len(unused) > 1 else 'y'} {', '.join(unused)}; "
                          "dropped (their cutpoints are not identified)",
                          stacklevel=user_stacklevel())
        cats = tuple(str(c) for c in used.cat.categories)
        y = used.cat.codes.to_numpy().astype(float) + 1.0
    else:
        if pd.api.types.is_string_dtype(values) or values.dtype == object:
            raise DataError(f"the cumulative response {expr!r} holds text; give it an order: "
                            "an ordered pandas Categorical (pd.Categorical(values, "
                            "categories=[...], ordered=True))")
        y = _numeric(values, expr, "response")
        if np.any(y != np.round(y)):
            raise DataError(f"the cumulative response {expr!r} must be ordered categories: "
                            "whole numbers or an ordered pandas Categorical")
        uniq = np.unique(y)
        cats = tuple(str(int(v)) for v in uniq)
        y = np.searchsorted(uniq, y).astype(float) + 1.0
    if len(cats) < 2:
        raise DataError(f"the cumulative response {expr!r} has {len(cats)} category; "
                        "an ordinal model needs at least 2")
    return y, cats


def _dist_response(parsed: ParsedFormula, data: pd.DataFrame, family: Family, transforms):
    support = family.spec.support
    name = family.name
    if parsed.cbind is not None:
        if support != "trials":
            raise FamilyError(f"a cbind(successes, failures) response needs family "
                              f"'binomial' or 'beta_binomial', not {name!r}")
        s_expr, f_expr = parsed.cbind
        succ = _numeric(_evaluate(s_expr, data, "response", transforms), s_expr, "successes")
        fail = _numeric(_evaluate(f_expr, data, "response", transforms), f_expr, "failures")
        _counts(succ, s_expr, "successes")
        _counts(fail, f_expr, "failures")
        return succ, succ + fail, ()
    if support == "trials":
        raise DataError(f"the {name} response is successes out of trials: write it "
                        "cbind(successes, failures) ~ ...")
    expr = parsed.response
    values = _evaluate(parsed.response, data, "response", transforms)
    if support == "ordinal":
        y, cats = _ordinal(values, expr)
        return y, None, cats
    y = _numeric(values, expr, "response")
    if not np.all(np.isfinite(y)):
        raise DataError(f"the {name} response {expr!r} has non-finite values")
    if support == "count":
        _counts(y, expr, f"the {name} response")
    elif support == "positive" and np.any(y <= 0):
        raise DataError(f"the {name} response {expr!r} must be positive")
    elif support == "unit" and np.any((y <= 0) | (y >= 1)):
        bad = y[(y <= 0) | (y >= 1)][0]
        raise DataError(f"the {name} response {expr!r} must lie strictly between 0 and 1 "
                        f"(found {bad:g}); brms and glmmTMB need the same")
    return y, None, ()


# ---------------------------------------------------------------- build


def _predictor(dpar: str, link: str, rhs: str, parsed: ParsedFormula, work: pd.DataFrame,
               family: Family, transforms, modelled: bool, drop_intercept: bool) -> Predictor:
    where = "fixed-effects part" if dpar == "mu" else f"{dpar} formula"
    X_full, spec = build_model_matrix(parsed.fixed, work, where, transforms)
    names = list(spec.column_names)
    for j, nm in enumerate(names):
        if not np.all(np.isfinite(X_full[:, j])):
            raise DataError(f"column {nm!r} of the {where} has non-finite values")
    cols = list(range(len(names)))
    if drop_intercept and "(Intercept)" in names:
        cols.remove(names.index("(Intercept)"))  # the cutpoints are the intercepts
    keep = [cols[j] for j in _independent_columns(X_full[:, cols])] if cols else []
    dropped = [names[j] for j in cols if j not in keep]
    if dropped:
        warnings.warn(f"the {where} is rank deficient so dropping {', '.join(dropped)}",
                      stacklevel=user_stacklevel())
    terms = [_random_term(part, work, family, transforms) for part in parsed.random]
    nl = [t.n_levels for t in terms]
    if any(b > a for a, b in zip(nl, nl[1:])):  # lme4's order, as build_design
        terms = [terms[i] for i in np.argsort(nl, kind="stable")[::-1]]
    return Predictor(dpar, link, rhs, np.ascontiguousarray(X_full[:, keep]),
                     tuple(names[j] for j in keep), tuple(terms), spec, modelled)


def build_dist_design(formula: DistributionalFormula | str, data: pd.DataFrame,
                      family: str | Family = "gaussian", transforms: dict | None = None,
                      weights=None) -> DistDesign:
    """Validate a distributional model's input and build its predictors (see module doc).

    Raises FormulaError / FamilyError / DataError naming the culprit, before anything
    compiles; nothing in a formula is executed (every formula passes the allow-list)."""
    fam = get_family(family, fittable=False)
    if weights is not None:
        raise DataError("weights are not supported for distributional models (families "
                        f"{', '.join(DIST_FAMILIES)} and bf() formulas) yet")
    if isinstance(formula, str):
        formula = DistributionalFormula(formula)
    if not isinstance(formula, DistributionalFormula):
        raise FormulaError(f"expected a formula string or bf(...), not "
                           f"{type(formula).__name__}")
    transforms = check_transforms(transforms) or None
    modelled = {d.name for d in check_dpars(formula, fam)}  # names a parameter it lacks
    if fam.name not in DIST_FAMILY_CODES:
        raise FamilyError(f"family {fam.name!r} has no distributional parameters to model; "
                          f"distributional models: {', '.join(DIST_FAMILIES)}")
    if fam.name == "cumulative" and "disc" in modelled:
        raise FormulaError("a disc formula is not supported yet: cumulative models keep "
                           "disc = 1 (brms's default)")
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if len(data) == 0:
        raise DataError("data has no rows")

    main = parse_formula(formula.formula, transforms)
    texts = dpar_formulas(formula)
    main_rhs = formula.formula.split("~", 1)[1].strip()
    subs: list[tuple[str, str, str, ParsedFormula, bool]] = [("mu", fam.link, main_rhs,
                                                              main, True)]
    if fam.name != "cumulative":
        for d in fam.spec.dpars:
            rhs = texts[d.name].split("~", 1)[1].strip() if d.name in texts else "1"
            parsed = parse_formula(f"{d.name} ~ {rhs}", transforms)
            if parsed.offset is not None:
                raise FormulaError(f"the {d.name} formula has an offset; only the main "
                                   "formula (mu) takes one")
            subs.append((d.name, d.link, rhs, parsed, d.name in texts))

    names: dict[str, str] = {}
    for dpar, _, _, parsed, _ in subs:
        for k, where in _referenced(parsed, None).items():
            if dpar != "mu" and where == "response":
                continue  # "sigma ~ x" parses sigma as a response; it is not a column
            names.setdefault(k, where if dpar == "mu" else f"{dpar} formula ({where})")
    _check_columns(names, data)
    used = [c for c in names if c in data.columns]
    missing = data[used].isna()
    bad = missing.any(axis=1).to_numpy(copy=True)
    n_bad = int(bad.sum())
    if n_bad:
        cols = [c for c in used if missing[c].any()]
        warnings.warn(f"dropped {n_bad} of {len(data)} rows with missing values in "
                      f"{', '.join(cols)}", stacklevel=user_stacklevel())
        if n_bad == len(data):
            raise DataError("no rows left after dropping rows with missing values")
    work = data.loc[~bad]

    y, trials, cats = _dist_response(main, work, fam, transforms)
    offset = None
    if main.offset is not None:
        offset = _numeric(_evaluate(main.offset, work, "offset", transforms), main.offset,
                          "offset")
    preds = tuple(_predictor(dpar, link, rhs, parsed, work, fam, transforms, mod,
                             drop_intercept=(dpar == "mu" and fam.name == "cumulative"))
                  for dpar, link, rhs, parsed, mod in subs)
    for p in preds[1:]:
        if not p.X_names and not p.terms:
            raise FormulaError(f"the {p.dpar} formula ~ {p.formula.strip()} has no terms; "
                               f"write {p.dpar}='~ 1' for a constant")
    return DistDesign(formula, fam, y, trials, cats, preds, offset, work, n_bad, transforms)


# ---------------------------------------------------------------- Stan data


def dist_stan_data(design: DistDesign) -> dict:
    """The data both distributional programs read (their common data block, documented in
    stan/dist_functions.stan). Each program adds its own entries (priors, Newton controls)."""
    n = design.n
    fam = design.family
    preds = design.predictors
    terms = design.terms
    y = np.asarray(design.y, dtype=float)
    X = (np.column_stack([p.X for p in preds if p.X.shape[1]])
         if any(p.X.shape[1] for p in preds) else np.zeros((n, 0)))
    return {
        "N": n,
        "family": DIST_FAMILY_CODES[fam.name],
        "D": len(preds),
        "dlink": [DIST_LINK_CODES[p.link] for p in preds],
        "Y": y,
        "Yi": (np.rint(y).astype(np.int64) if fam.spec.discrete
               else np.zeros(n, dtype=np.int64)),
        "trials": (np.rint(design.trials).astype(np.int64) if design.trials is not None
                   else np.ones(n, dtype=np.int64)),
        "n_cat": len(design.categories),
        "K_lp": [p.X.shape[1] for p in preds],
        "int_lp": [int(p.has_intercept) for p in preds],
        "K_all": int(X.shape[1]),
        "X": X,
        "has_offset": int(design.offset is not None),
        "offsets": (np.asarray(design.offset, dtype=float) if design.offset is not None
                    else np.zeros(n)),
        "n_terms": len(terms),
        "lp_term": [d + 1 for d in design.term_predictor],
        "p_term": [t.p for t in terms],
        "l_term": [t.n_levels for t in terms],
        "cor_term": [int(t.correlated and t.p > 1) for t in terms],
        "J": (np.stack([np.asarray(t.index, dtype=np.int64) + 1 for t in terms])
              if terms else np.zeros((0, n), dtype=np.int64)),
        "R": int(sum(t.p for t in terms)),
        "Z": (np.column_stack([np.asarray(t.Z, dtype=float).reshape(n, -1) for t in terms])
              if terms else np.zeros((n, 0))),
    }


__all__ = ["DIST_FAMILIES", "DIST_FAMILY_CODES", "DIST_LINK_CODES", "DistDesign", "Predictor",
           "build_dist_design", "dist_stan_data", "needs_dist_design"]
