"""Stage 2: build the model structures (X, per-term Z and group index,
response, weights, offset) from a parsed formula and data, validating the
input first like lme4's lFormula/glFormula."""
from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError, FamilyError, user_stacklevel
from ..families import FAMILIES, Family, get_family
from ..formula import ParsedFormula, parse_formula
from ..formula.safety import check_parsed, check_transforms
from .columns import evaluate_column as _evaluate, numeric_column as _numeric
from .factors import group_variables, grouping_factor
from .newdata import design_for_newdata
from .modelmatrix import (
    ModelMatrixSpec,
    build_model_matrix,
    names_in_expression,
    rhs_names,
    unknown_names,
)

_RANK_TOL = 1e-7  # lme4's chkRank.drop.cols / R's qr() tolerance


@dataclass(frozen=True, eq=False)
class RandomTerm:
    group: str  # lme4's name of the grouping factor, e.g. "class:school"
    coef_names: tuple[str, ...]  # lme4 names of the term's columns
    levels: tuple[str, ...]  # level labels in R's order
    index: np.ndarray  # int64 (n,): 0-based level of each row
    Z: np.ndarray  # float64 (n, p): the term's covariates
    correlated: bool
    spec: ModelMatrixSpec  # rebuilds Z for new data

    @property
    def p(self) -> int:
        return self.Z.shape[1]

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def __str__(self) -> str:
        bar = "|" if self.correlated else "||"
        return f"({' + '.join(self.coef_names)} {bar} {self.group}): {self.n_levels} levels"


@dataclass(frozen=True, eq=False)
class Design:
    formula: ParsedFormula
    family: Family
    y: np.ndarray  # float64 (n,): response; successes for cbind(); 0/1 for bernoulli
    trials: np.ndarray | None  # binomial trials per row, else None
    X: np.ndarray  # float64 (n, p), rank-deficient columns dropped
    X_names: tuple[str, ...]  # R/lme4 column names
    terms: tuple[RandomTerm, ...]  # lme4's order (see build_design)
    weights: np.ndarray | None
    offset: np.ndarray | None
    data: pd.DataFrame  # the rows used (after dropping NA), original index
    fixed_spec: ModelMatrixSpec  # rebuilds X (before dropping columns) for new data
    dropped_na: int  # rows dropped for missing values
    dropped_columns: tuple[str, ...]  # aliased X columns dropped, R's names
    transforms: dict | None = None  # the caller's own formula functions (transforms=)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def q(self) -> int:
        return sum(t.p * t.n_levels for t in self.terms)

    def new_data(self, data: pd.DataFrame, allow_new_levels: bool = False, random: bool = True):
        """X, offset and per-term level index / Z for new rows (see design_for_newdata)."""
        return design_for_newdata(self, data, allow_new_levels=allow_new_levels, random=random)

    def __str__(self) -> str:
        lines = [
            f"Design: {self.formula.text.strip()}",
            f"  family {self.family}, n = {self.n}, p = {self.p}, q = {self.q}",
            f"  X: {', '.join(self.X_names) or '(none)'}",
        ]
        lines += [f"  term {t}" for t in self.terms]
        if self.offset is not None:
            lines.append(f"  offset: {self.formula.offset}")
        if self.weights is not None:
            lines.append("  weights: yes")
        if self.dropped_na:
            lines.append(f"  dropped {self.dropped_na} rows with missing values")
        if self.dropped_columns:
            lines.append(f"  dropped rank-deficient columns: {', '.join(self.dropped_columns)}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html
        return f"<pre style='font-size: 0.85em'>{html.escape(str(self))}</pre>"


# ---------------------------------------------------------------- validation helpers


def _check_columns(names: dict[str, str], data: pd.DataFrame) -> None:
    for name in unknown_names(list(names), data.columns):
        close = difflib.get_close_matches(name, [str(c) for c in data.columns], n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise DataError(
            f"unknown column {name!r} in the {names[name]}{hint} "
            f"(data columns: {', '.join(map(str, data.columns))})"
        )


def _referenced(parsed: ParsedFormula, weights) -> dict[str, str]:
    """Names the formula reads -> where they occur (for messages)."""
    names: dict[str, str] = {}

    def add(found, where):
        for name in found:
            names.setdefault(name, where)

    resp = parsed.cbind if parsed.cbind else (parsed.response,)
    for expr in resp:
        add(names_in_expression(expr), "response")
    add(rhs_names(parsed.fixed, "fixed-effects part"), "fixed-effects part")
    if parsed.offset is not None:
        add(names_in_expression(parsed.offset), "offset")
    for part in parsed.random:
        add(rhs_names(part.expr, f"random-effects term {part}"), f"random-effects term {part}")
        add(group_variables(part.group), f"grouping factor of {part}")
    if isinstance(weights, str):
        add([weights], "weights")
    return names


def _counts(values: np.ndarray, expr: str, what: str) -> None:
    if np.any(values < 0) or np.any(values != np.round(values)):
        raise DataError(f"{what} {expr!r} must be non-negative whole numbers")


def _response(parsed: ParsedFormula, data: pd.DataFrame, family: Family, transforms=None):
    """y and binomial trials, with the checks the family's support needs
    (`bayesmix.families.SUPPORTS`)."""
    support = family.spec.support
    binom = support == "binary"
    if parsed.cbind is not None:
        if family.name != "binomial":
            raise FamilyError(
                f"a cbind(successes, failures) response needs family 'binomial', not {family.name!r}"
            )
        s_expr, f_expr = parsed.cbind
        succ = _numeric(_evaluate(s_expr, data, "response", transforms), s_expr, "successes")
        fail = _numeric(_evaluate(f_expr, data, "response", transforms), f_expr, "failures")
        _counts(succ, s_expr, "successes")
        _counts(fail, f_expr, "failures")
        return succ, succ + fail
    values = _evaluate(parsed.response, data, "response", transforms)
    expr = parsed.response
    if binom and (isinstance(values.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(values)):
        # R's rule: the first level is failure, every other level success
        cat = values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype("category")
        cat = cat.cat.remove_unused_categories()
        y = (cat.cat.codes.to_numpy() > 0).astype(float)
    else:
        y = _numeric(values, expr, "response")
    if binom:
        if not np.all((y == 0) | (y == 1)):
            raise DataError(
                f"the {family.name} response {expr!r} must be 0/1, logical or a factor; "
                "for counts of successes use cbind(successes, failures) with family='binomial'"
            )
        return y, (np.ones_like(y) if family.name == "binomial" else None)
    if support == "count":
        _counts(y, expr, f"the {family.name} response")
    if support == "positive" and np.any(y <= 0):
        raise DataError(f"the {family.name} response {expr!r} must be positive")
    return y, None


def _independent_columns(X: np.ndarray) -> list[int]:
    """Columns kept by R's pivoted QR (dqrdc2): left to right, a column is
    dropped when its part orthogonal to the kept ones is below tol x its norm."""
    keep: list[int] = []
    basis = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        col = X[:, j]
        norm = np.linalg.norm(col)
        resid = col - basis @ (basis.T @ col)
        resid -= basis @ (basis.T @ resid)  # second pass keeps the basis orthogonal
        r = np.linalg.norm(resid)
        if norm > 0 and r > _RANK_TOL * norm:
            keep.append(j)
            basis = np.column_stack([basis, resid / r])
    return keep


def _random_term(part, data: pd.DataFrame, family: Family, transforms=None) -> RandomTerm:
    where = f"random-effects term {part}"
    Z, spec = build_model_matrix(part.expr, data, where, transforms)
    index, levels = grouping_factor(data, part.group)
    n = len(data)
    if len(levels) < 2:
        raise DataError(
            f"grouping factor {part.group!r} has only one level ({levels[0]}) in the data; "
            "a random effect needs at least 2 levels"
        )
    if family.name == "gaussian":
        if len(levels) >= n:
            raise DataError(
                "number of levels of each grouping factor must be < number of observations "
                f"(grouping factor {part.group!r} has {len(levels)} levels for {n} observations)"
            )
        if Z.shape[1] * len(levels) >= n:
            raise DataError(
                f"number of observations (={n}) <= number of random effects "
                f"(={Z.shape[1] * len(levels)}) for {where}; the random-effects parameters "
                "and the residual variance are probably unidentifiable"
            )
    return RandomTerm(part.group, spec.column_names, levels, index, Z, part.correlated, spec)


# ---------------------------------------------------------------- build


def build_design(
    formula: str | ParsedFormula,
    data: pd.DataFrame,
    family: str | Family = "gaussian",
    weights: str | np.ndarray | None = None,
    transforms: dict | None = None,
) -> Design:
    """Validate the input and build X, the random-effects terms, the response,
    weights and offset. `weights` is a column name or an array (one per row).

    The formula may call only the transforms listed in docs/formulas.md plus
    the caller's own `transforms` (a dict name -> function); nothing else is
    ever evaluated (see bayesmix.formula.safety). The default is none: a
    formula from elsewhere (a bundle, a file) cannot bring code with it.

    Rows with NA in any column the model reads are dropped (with a warning);
    aliased X columns are dropped like lme4 (with a warning); the terms come in
    lme4's order (by decreasing number of levels, see below)."""
    fam = get_family(family)
    if fam.name not in FAMILIES:
        raise FamilyError(f"family {fam.name!r} is fitted by the distributional programs: "
                          "build its design with bayesmix.design.dist.build_dist_design "
                          "(bayesmix.Model does)")
    transforms = check_transforms(transforms) or None
    if isinstance(formula, ParsedFormula):
        check_parsed(formula, transforms)  # it may have been built by hand
        parsed = formula
    else:
        parsed = parse_formula(formula, transforms)
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if len(data) == 0:
        raise DataError("data has no rows")

    names = _referenced(parsed, weights)
    _check_columns(names, data)
    used = [c for c in names if c in data.columns]
    w_all = None
    if weights is not None:
        try:
            raw = data[weights] if isinstance(weights, str) else weights
            w_all = np.asarray(raw, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            what = f"weights column {weights!r}" if isinstance(weights, str) else "weights"
            raise DataError(f"{what} must be numeric") from None
        if len(w_all) != len(data):
            raise DataError(f"weights has {len(w_all)} values for {len(data)} rows of data")

    # drop incomplete rows like na.omit, over every column the model reads
    missing = data[used].isna()
    bad = missing.any(axis=1).to_numpy(copy=True)
    w_na = np.isnan(w_all) if w_all is not None else np.zeros(len(data), bool)
    bad |= w_na
    n_bad = int(bad.sum())
    if n_bad:
        cols = [c for c in used if missing[c].any()] + (["weights"] if w_na.any() else [])
        warnings.warn(
            f"dropped {n_bad} of {len(data)} rows with missing values in {', '.join(cols)}",
            stacklevel=user_stacklevel(),
        )
        if n_bad == len(data):
            raise DataError("no rows left after dropping rows with missing values")
    work = data.loc[~bad]
    w = None
    if w_all is not None:
        w = w_all[~bad]
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise DataError("weights must be finite and non-negative")

    y, trials = _response(parsed, work, fam, transforms)
    X_full, fixed_spec = build_model_matrix(parsed.fixed, work, "fixed-effects part", transforms)
    for j, name in enumerate(fixed_spec.column_names):
        if not np.all(np.isfinite(X_full[:, j])):
            raise DataError(f"fixed-effect column {name!r} has non-finite values")
    keep = _independent_columns(X_full)
    dropped = tuple(n for j, n in enumerate(fixed_spec.column_names) if j not in keep)
    if dropped:
        k = len(dropped)
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {k} column"
            f"{'s' if k > 1 else ''} / coefficient{'s' if k > 1 else ''}: {', '.join(dropped)}",
            stacklevel=user_stacklevel(),
        )
    offset = None
    if parsed.offset is not None:
        offset = _numeric(
            _evaluate(parsed.offset, work, "offset", transforms), parsed.offset, "offset"
        )

    terms = [_random_term(part, work, fam, transforms) for part in parsed.random]
    nl = [t.n_levels for t in terms]
    # lme4's mkReTrms: if any term has more levels than the one before, order
    # by rev(order(nl)) -- decreasing, which reverses the order of ties
    if any(b > a for a, b in zip(nl, nl[1:])):
        terms = [terms[i] for i in np.argsort(nl, kind="stable")[::-1]]

    return Design(
        formula=parsed,
        family=fam,
        y=y,
        trials=trials,
        X=np.ascontiguousarray(X_full[:, keep]),
        X_names=tuple(fixed_spec.column_names[j] for j in keep),
        terms=tuple(terms),
        weights=w,
        offset=offset,
        data=work,
        fixed_spec=fixed_spec,
        dropped_na=n_bad,
        dropped_columns=dropped,
        transforms=transforms,
    )
