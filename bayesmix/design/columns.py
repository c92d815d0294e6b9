"""Response and offset columns from an expression: shared by the training design
(build.py) and new rows (newdata.py), so neither imports the other's internals."""
from __future__ import annotations

import numpy as np
import pandas as pd
from formulaic import model_matrix as formulaic_matrix

from ..errors import DataError
from ..formula.safety import check_expression
from .modelmatrix import error_detail, python_powers
from .transforms import formula_context


def evaluate_column(expr: str, data: pd.DataFrame, where: str, transforms=None) -> pd.Series:
    """A response/offset expression (checked by parse_formula): a column, or
    formulaic's I(expr) with an explicit, minimal context."""
    name = expr.strip("`")
    if name in data.columns:
        return data[name]
    check_expression(expr, where, transforms)  # parse_formula did this already; cheap to repeat
    try:
        code = python_powers(expr, inside_i_only=False)
        values = formulaic_matrix(
            f"0 + I({code})", data, na_action="ignore", context=formula_context(transforms)
        )
    except Exception as exc:  # formulaic wraps whatever the expression raised
        raise DataError(f"cannot evaluate the {where} {expr!r}: {error_detail(exc)}") from None
    if values.shape[1] != 1:
        raise DataError(f"the {where} {expr!r} must give one numeric value per row")
    return values.iloc[:, 0]


def numeric_column(values: pd.Series, expr: str, where: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=float)
    if not pd.api.types.is_numeric_dtype(values):
        raise DataError(f"the {where} {expr!r} is not numeric (dtype {values.dtype})")
    out = values.to_numpy(dtype=float)
    if not np.all(np.isfinite(out)):
        raise DataError(f"the {where} {expr!r} has non-finite values")
    return out
