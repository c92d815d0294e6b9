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
        needed += [*t.spec.columns, *group_variables(t.group)]
    missing = [c for c in dict.fromkeys(needed) if c not in data.columns]
    if missing:
        raise DataError(f"new data lacks column(s) {', '.join(map(repr, missing))}")
    na = [c for c in dict.fromkeys(needed) if data[c].isna().any()]
    if na:
        raise DataError(f"new data has missing values in {', '.join(na)}")

    kept = [design.fixed_spec.column_names.index(n) for n in design.X_names]
    X = design.fixed_spec.get_model_matrix(data, "new data")[:, kept]
    offset = None
    if design.formula.offset is not None:
        expr = design.formula.offset
        offset = numeric_column(evaluate_column(expr, data, "offset", design.transforms), expr,
                                "offset")

    terms = []
    for t in design.terms if random else ():
        lookup = {level: i for i, level in enumerate(t.levels)}
        labels = new_group_labels(data, t.group)
        index = np.array([lookup.get(lab, -1) for lab in labels], dtype=np.int64)
        if not allow_new_levels and np.any(index < 0):
            new = sorted(set(labels[index < 0]))
            raise DataError(
                f"new level(s) {', '.join(map(repr, new[:10]))}{' ...' if len(new) > 10 else ''} "
                f"of grouping factor {t.group!r} not in the training data; "
                "pass allow_new_levels=True to predict them at the population level"
            )
        terms.append(NewTermData(t.group, index, t.spec.get_model_matrix(data, "new data")))
    return NewData(X, offset, tuple(terms))
