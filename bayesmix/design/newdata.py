"""Model structures for new rows (predictions): the training data's factor
codings, scale() centres and grouping-factor levels are reused."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError
from .columns import evaluate_column, numeric_column
from .factors import group_variables, new_group_labels


@dataclass(frozen=True, eq=False)
class NewTermData:
    group: str
    index: np.ndarray  # int64 (m,): training level of each row, -1 for a new level
    Z: np.ndarray  # float64 (m, p)


@dataclass(frozen=True, eq=False)
class NewData:
    X: np.ndarray  # float64 (m, p), the training design's columns
    offset: np.ndarray | None
    terms: tuple[NewTermData, ...]  # aligned with design.terms (empty if random=False)

    @property
    def n(self) -> int:
        return self.X.shape[0]


def term_columns(term: Any) -> list[str]:
    """Data columns a group-level term reads for new rows: its covariates and its grouping
    factor's variables."""
    return [*term.spec.columns, *group_variables(term.group)]


def check_new_columns(data: pd.DataFrame, needed: list[str]) -> None:
    """DataError naming the columns of `needed` that new data lacks or holds NA in."""
    missing = [c for c in dict.fromkeys(needed) if c not in data.columns]
    if missing:
        raise DataError(f"new data lacks column(s) {', '.join(map(repr, missing))}")
    na = [c for c in dict.fromkeys(needed) if data[c].isna().any()]
    if na:
        raise DataError(f"new data has missing values in {', '.join(na)}")


def new_fixed_matrix(fixed_spec: Any, X_names: tuple[str, ...], data: pd.DataFrame) -> np.ndarray:
    """The training fixed-effect columns `X_names` (rank-deficient ones already dropped)
    rebuilt for new rows from their `ModelMatrixSpec`."""
    kept = [fixed_spec.column_names.index(n) for n in X_names]
    return fixed_spec.get_model_matrix(data, "new data")[:, kept]


def new_term_data(term: Any, data: pd.DataFrame, allow_new_levels: bool = False) -> NewTermData:
    """Level index (-1 for a level unseen in training: an error unless allow_new_levels)
    and Z of one group-level term for new rows."""
    lookup = {level: i for i, level in enumerate(term.levels)}
    labels = new_group_labels(data, term.group)
    index = np.array([lookup.get(lab, -1) for lab in labels], dtype=np.int64)
    if not allow_new_levels and np.any(index < 0):
        new = sorted(set(labels[index < 0]))
        raise DataError(
            f"new level(s) {', '.join(map(repr, new[:10]))}{' ...' if len(new) > 10 else ''} "
            f"of grouping factor {term.group!r} not in the training data; "
            "pass allow_new_levels=True to predict them at the population level"
        )
    return NewTermData(term.group, index, term.spec.get_model_matrix(data, "new data"))


def design_for_newdata(
    design: Any, data: pd.DataFrame, allow_new_levels: bool = False, random: bool = True
) -> NewData:
    """X, offset and, unless random=False, each term's level index and Z for
    new rows. A level unseen in training gets index -1, which is an error
    unless allow_new_levels=True. Rows must be complete (no NA)."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"new data must be a pandas DataFrame, not {type(data).__name__}")
    needed = list(design.fixed_spec.columns)
    for t in design.terms if random else ():
        needed += term_columns(t)
    check_new_columns(data, needed)

    X = new_fixed_matrix(design.fixed_spec, design.X_names, data)
    offset = None
    if design.formula.offset is not None:
        expr = design.formula.offset
        offset = numeric_column(evaluate_column(expr, data, "offset", design.transforms), expr,
                                "offset")

    terms = [new_term_data(t, data, allow_new_levels) for t in (design.terms if random else ())]
    return NewData(X, offset, tuple(terms))
