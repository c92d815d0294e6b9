"""Model matrices that equal R's model.matrix(): formulaic evaluates each
variable (factors, scale(), poly(), C(), ...) and keeps the state for new
data; the columns are then assembled with R's rules, which formulaic does not
follow: terms sorted by degree with variables in order of first appearance,
contrasts vs indicator coding decided per term like R's TermCode, the first
factor of an interaction varying fastest, and R's column names."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulaic import Formula, model_matrix as _formulaic_matrix
from formulaic.errors import FormulaicError
from formulaic.parser.types import Term
from formulaic.transforms.contrasts import HelmertContrasts, PolyContrasts, SumContrasts

from ..errors import DataError, FormulaError
from ..formula.safety import check_rhs
from .transforms import formula_context

_SYNTACTIC = re.compile(r"(?:[A-Za-z]|\.[._A-Za-z]?)[._A-Za-z0-9]*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m|[⧛⧚]")


def error_detail(exc: Exception) -> str:
    """First line of a formulaic/pandas error, without terminal colour codes."""
    text = _ANSI.sub("", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def python_powers(expr: str, inside_i_only: bool = True) -> str:
    """R's `^` is a power inside I() (and in plain arithmetic); Python's is `**`."""
    if not inside_i_only:
        return expr.replace("^", "**")
    out, i = [], 0
    for m in re.finditer(r"(?<![\w.])I\s*\(", expr):
        if m.start() < i:
            continue
        depth = 0
        for j in range(m.end() - 1, len(expr)):
            depth += {"(": 1, ")": -1}.get(expr[j], 0)
            if depth == 0:
                break
        out.append(expr[i : m.start()] + expr[m.start() : j + 1].replace("^", "**"))
        i = j + 1
    return "".join(out) + expr[i:]


def _r_label(factor) -> str:
    """R's deparsed name: backticks around non-syntactic column names, `^` powers."""
    if factor.eval_method.value == "lookup" and not _SYNTACTIC.fullmatch(factor.expr):
        return f"`{factor.expr}`"
    return factor.expr.replace(" ** ", "^")


def names_in_expression(expr: str) -> list[str]:
    """Variable names an expression reads (not function names, keyword values
    such as raw=TRUE or the contrast argument of C())."""
    ticks = re.findall(r"`([^`]+)`", expr)
    code = re.sub(r"`[^`]+`", lambda m: f"__bt{ticks.index(m.group(0)[1:-1])}__", expr)
    try:
        tree = ast.parse(python_powers(code, inside_i_only=False), mode="eval")
    except SyntaxError:
        return ticks
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            skip.add(id(node.func))
            literal = [kw.value for kw in node.keywords]
            if isinstance(node.func, ast.Name) and node.func.id == "C":
                literal += node.args[1:]
            skip.update(id(sub) for arg in literal for sub in ast.walk(arg))
        elif isinstance(node, ast.Attribute):
            skip.add(id(node.value))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in skip:
            m = re.fullmatch(r"__bt(\d+)__", node.id)
            name = ticks[int(m.group(1))] if m else node.id
            if name not in names:
                names.append(name)
    return names


def parse_rhs(rhs: str, what: str) -> list[Term]:
    """formulaic terms of a right-hand side, in the order written."""
    try:
        return list(Formula(python_powers(rhs), _ordering="none"))
    except (FormulaicError, ValueError, TypeError, SyntaxError) as exc:
        raise FormulaError(f"cannot parse the {what} {rhs!r}: {error_detail(exc)}") from None


def rhs_names(rhs: str, what: str) -> list[str]:
    """Names of the variables the right-hand side reads."""
    names: list[str] = []
    for term in parse_rhs(rhs, what):
        for factor in term.factors:
            method = factor.eval_method.value
            found = [factor.expr] if method == "lookup" else (
                names_in_expression(factor.expr) if method == "python" else []
            )
            names.extend(n for n in found if n not in names)
    return names


def unknown_names(names: list[str], columns) -> list[str]:
    return [n for n in names if n not in columns]


@dataclass(frozen=True, eq=False)
class Variable:
    """One variable of the formula (R's sense): a factor or a numeric matrix."""

    label: str  # R's name, the prefix of its columns
    categorical: bool
    levels: tuple = ()
    contrasts: np.ndarray | None = None  # k x m, used where R codes by contrasts
    contrast_names: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()  # names of a numeric matrix's columns (poly: "1", "2")


@dataclass(frozen=True, eq=False)
class ModelMatrixSpec:
    """Everything needed to rebuild the same columns for new data. `formulaic`
    is formulaic's ModelSpec of the variables (None if there are none)."""

    rhs: str
    intercept: bool
    variables: tuple[Variable, ...]
    terms: tuple[tuple[int, ...], ...]  # variable indices of each term, R's order
    codes: tuple[tuple[int, ...], ...]  # per term and variable: 1 contrasts, 2 indicators
    column_names: tuple[str, ...]
    columns: tuple[str, ...]  # data columns read
    column_levels: dict  # categorical data column -> its levels in training
    formulaic: object
    context: dict  # formulaic's evaluation context (see bayesmix.design.transforms)

    def __repr__(self) -> str:
        return f"ModelMatrixSpec(~ {self.rhs}: {', '.join(self.column_names) or 'no columns'})"

    def get_model_matrix(self, data: pd.DataFrame, what: str = "new data") -> np.ndarray:
        """The same columns for other rows (levels, scale() centres etc. from training)."""
        missing = [c for c in self.columns if c not in data.columns]
        if missing:
            raise DataError(f"{what} lacks column(s) {', '.join(map(repr, missing))}")
        prepared = _prepare_like(data, self.columns, self.column_levels, what)
        blocks = (
            _evaluate(self.formulaic, prepared, self.variables, what, self.context)
            if self.variables else []
        )
        return _assemble(self, blocks, len(data))


# ---------------------------------------------------------------- data preparation


def _as_categorical(values: pd.Series) -> pd.Categorical | None:
    """R's factor() for a predictor column, or None if it stays numeric."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.remove_unused_categories().array
    if pd.api.types.is_bool_dtype(values):
        return pd.Categorical(np.where(values, "TRUE", "FALSE"), categories=["FALSE", "TRUE"])
    if pd.api.types.is_numeric_dtype(values):
        return None
    return pd.Categorical(values, categories=sorted(values.dropna().unique(), key=str))


def _prepare(data: pd.DataFrame, columns: tuple[str, ...]) -> tuple[pd.DataFrame, dict]:
    out, levels = {}, {}
    for col in columns:
        cat = _as_categorical(data[col])
        if cat is None:
            out[col] = data[col]
        else:
            out[col] = pd.Series(cat, index=data.index)
            levels[col] = tuple(cat.categories)
    return pd.DataFrame(out, index=data.index), levels


def _prepare_like(data: pd.DataFrame, columns, column_levels: dict, what: str) -> pd.DataFrame:
    out = {}
    for col in columns:
        values = data[col]
        if col in column_levels:
            if pd.api.types.is_bool_dtype(values):
                values = values.map({True: "TRUE", False: "FALSE"})
            known = set(column_levels[col])
            unseen = sorted({str(v) for v in values.dropna().unique() if v not in known})
            if unseen:
                raise DataError(
                    f"column {col!r} of the {what} has level(s) not seen in the training "
                    f"data: {', '.join(unseen)} (known: {', '.join(map(str, column_levels[col]))})"
                )
            values = pd.Series(pd.Categorical(values, categories=list(column_levels[col])), index=data.index)
        out[col] = values
    return pd.DataFrame(out, index=data.index)


# ---------------------------------------------------------------- evaluation


def _evaluate(spec, data: pd.DataFrame, variables, what: str, context: dict) -> list[np.ndarray]:
    """Per variable: numeric columns, or the full indicator matrix of a factor."""
    try:
        with np.errstate(all="ignore"):  # log(0) etc. are reported by the caller
            mm = spec.get_model_matrix(data, context=context, na_action="ignore")
    except (FormulaicError, ValueError, TypeError, KeyError, NameError) as exc:
        raise DataError(f"cannot evaluate the {what}: {error_detail(exc)}") from None
    values = np.asarray(mm, dtype=float)
    blocks = [values[:, [mm.columns.get_loc(c) for c in s.columns]] for s in spec.structure]
    for var, block in zip(variables, blocks):
        if var.categorical and block.shape[1] != len(var.levels):
            raise DataError(f"cannot evaluate {var.label!r} in the {what}")
    return blocks


def _contrast_names(contrasts, coding: pd.DataFrame) -> tuple[str, ...]:
    # R's contr.sum and contr.helmert have no column names: model.matrix numbers them
    if isinstance(contrasts, (SumContrasts, HelmertContrasts)):
        return tuple(str(i + 1) for i in range(coding.shape[1]))
    return tuple(str(c) for c in coding.columns)


def _variable(factor, cols: list[str], contrasts_state, ordered: bool, what: str) -> Variable:
    label = _r_label(factor)
    if contrasts_state is None:
        prefix = f"{factor.expr}["
        suffixes = tuple(c[len(prefix) : -1] if c.startswith(prefix) else c for c in cols)
        if suffixes == tuple(map(str, range(len(cols)))):
            # an unnamed matrix (poly(x, 2, raw=TRUE)): R numbers its columns from 1
            suffixes = tuple(str(i + 1) for i in range(len(cols)))
        return Variable(label, False, suffixes=suffixes if len(cols) > 1 else ())
    levels = tuple(contrasts_state.levels)
    # R codes an ordered factor with contr.poly unless told otherwise
    contrasts = PolyContrasts() if ordered else contrasts_state.contrasts
    full = contrasts.get_coding_matrix(list(levels), reduced_rank=False)
    if full.shape != (len(levels), len(levels)) or not np.allclose(full.to_numpy(), np.eye(len(levels))):
        raise FormulaError(f"the contrasts of {label!r} in the {what} are not supported; use a named contrast")
    coding = contrasts.get_coding_matrix(list(levels), reduced_rank=True)
    return Variable(
        label,
        True,
        levels=levels,
        contrasts=coding.to_numpy(dtype=float),
        contrast_names=_contrast_names(contrasts, coding),
    )


def _term_codes(terms, variables, intercept: bool) -> list[list[int]]:
    """R's TermCode: a factor is coded by contrasts (1) if the term without it
    is empty or contained in an earlier term, else by indicators (2); without
    an intercept the first factor of the first term holding one gets indicators."""
    codes = []
    for k, term in enumerate(terms):
        row = []
        for v in term:
            rest = set(term) - {v}
            row.append(1 if not rest or any(rest <= set(t) for t in terms[:k]) else 2)
        codes.append(row)
    if not intercept:
        for k, term in enumerate(terms):
            cats = [j for j, v in enumerate(term) if variables[v].categorical]
            if cats:
                codes[k][cats[0]] = 2
                break
    return codes


def _assemble(spec: ModelMatrixSpec, blocks: list[np.ndarray], n: int) -> np.ndarray:
    cols = [np.ones((n, 1))] if spec.intercept else []
    for term, codes in zip(spec.terms, spec.codes):
        out = np.ones((n, 1))
        for v, code in zip(term, codes):
            var, block = spec.variables[v], blocks[v]
            if var.categorical and code == 1:
                block = block @ var.contrasts
            # the earlier variable varies fastest, like R's model.matrix
            out = (block[:, :, None] * out[:, None, :]).reshape(n, -1)
        cols.append(out)
    return np.hstack(cols) if cols else np.zeros((n, 0))


def _column_names(spec_vars, terms, codes, intercept: bool) -> tuple[str, ...]:
    names = ["(Intercept)"] if intercept else []
    for term, tcodes in zip(terms, codes):
        out = [""]
        for v, code in zip(term, tcodes):
            var = spec_vars[v]
            if var.categorical:
                parts = var.contrast_names if code == 1 else tuple(map(str, var.levels))
                own = [var.label + p for p in parts]
            else:
                own = [var.label + s for s in var.suffixes] or [var.label]
            out = [f"{prev}:{name}" if prev else name for name in own for prev in out]
        names.extend(out)
    return tuple(names)


def build_model_matrix(
    rhs: str, data: pd.DataFrame, what: str, transforms=None
) -> tuple[np.ndarray, ModelMatrixSpec]:
    """R's model.matrix(~ rhs, data) with R's column order and names.

    rhs must have passed bayesmix.formula.safety (parse_formula does that);
    `transforms` are the caller's own functions, the only additions to the
    evaluation context."""
    check_rhs(rhs, what, transforms)  # parse_formula did this already; cheap to repeat
    context = formula_context(transforms)
    written = parse_rhs(rhs, what)
    intercept = any(not t.factors or str(t) == "1" for t in written)
    factors = []  # variables in order of first appearance (R's "variables")
    for term in written:
        for f in term.factors:
            if f.eval_method.value != "literal" and f not in factors:
                factors.append(f)
    terms: list[tuple[int, ...]] = []
    for term in written:
        idx = tuple(sorted(factors.index(f) for f in term.factors if f in factors))
        if idx and idx not in terms:
            terms.append(idx)
    terms.sort(key=len)  # R orders terms by degree, stable within a degree

    columns = tuple(c for c in rhs_names(rhs, what) if c in data.columns)
    prepared, column_levels = _prepare(data, columns)
    variables: list[Variable] = []
    fspec = None
    if factors:
        try:
            with np.errstate(all="ignore"):
                mm = _formulaic_matrix(
                    Formula([Term([f]) for f in factors], _ordering="none"),
                    prepared,
                    ensure_full_rank=False,
                    na_action="ignore",
                    context=context,
                )
        except (FormulaicError, ValueError, TypeError, KeyError, NameError) as exc:
            raise DataError(f"cannot evaluate the {what} {rhs!r}: {error_detail(exc)}") from None
        fspec = mm.model_spec
        contrasts = {str(k): v for k, v in fspec.factor_contrasts.items()}
        for f, s in zip(factors, fspec.structure):
            ordered = (
                f.eval_method.value == "lookup"
                and isinstance(prepared[f.expr].dtype, pd.CategoricalDtype)
                and prepared[f.expr].cat.ordered
            )
            variables.append(_variable(f, list(s.columns), contrasts.get(f.expr), ordered, what))
    codes = _term_codes(terms, variables, intercept)
    for term, tcodes in zip(terms, codes):
        for v, code in zip(term, tcodes):
            var = variables[v]
            if var.categorical and code == 1 and len(var.levels) < 2:
                raise DataError(
                    f"factor {var.label!r} in the {what} has only one level "
                    f"({', '.join(map(str, var.levels))}); contrasts need at least 2 levels"
                )
    spec = ModelMatrixSpec(
        rhs=rhs,
        intercept=intercept,
        variables=tuple(variables),
        terms=tuple(terms),
        codes=tuple(tuple(c) for c in codes),
        column_names=_column_names(variables, terms, codes, intercept),
        columns=columns,
        column_levels=column_levels,
        formulaic=fspec,
        context=context,
    )
    blocks = _evaluate(fspec, prepared, variables, what, context) if factors else []
    return _assemble(spec, blocks, len(data)), spec
