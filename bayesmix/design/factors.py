"""Grouping factors the way R builds them: factor() level order, `a:b`
interactions with only the level combinations that occur (droplevels)."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd


def group_variables(group: str) -> list[str]:
    """Data columns of a grouping factor name such as "c:(b:a)" or "`my g`"."""
    names = re.findall(r"`[^`]+`|[^:()\s]+", group)
    return [n.strip("`") for n in names]


def _num_label(value: float) -> str:
    # as.character() of a number: integral values print without decimals
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def factor_labels(values: pd.Series) -> np.ndarray:
    """Level label of each row as R's factor() would print it."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return np.asarray(values.astype(object).map(str), dtype=object)
    if pd.api.types.is_bool_dtype(values):
        return np.where(values.to_numpy(dtype=bool), "TRUE", "FALSE").astype(object)
    if pd.api.types.is_numeric_dtype(values):
        return np.array([_num_label(v) for v in values], dtype=object)
    return np.asarray(values.map(str), dtype=object)


def _factor(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """R's factor(): 0-based codes and all levels in R's order."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return values.cat.codes.to_numpy(np.int64), [str(c) for c in values.cat.categories]
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=np.int64), ["FALSE", "TRUE"]
    if pd.api.types.is_numeric_dtype(values):
        uniq, codes = np.unique(values.to_numpy(dtype=float), return_inverse=True)
        return codes.astype(np.int64), [_num_label(v) for v in uniq]
    labels = values.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(labels, skipna=False) != "string":
        labels = values.map(str).to_numpy(dtype=object)
    # hash the rows, sort only the distinct labels (np.unique's order: argsort of n Python
    # strings was most of InstEval's design time)
    codes, uniq = pd.factorize(labels)
    order = np.argsort(uniq)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    return rank[codes], [str(u) for u in uniq[order]]


def grouping_factor(data: pd.DataFrame, group: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes (0-based) and level labels of the grouping factor `group`.

    For `a:b` the levels are "a_level:b_level" ordered with `a` slowest (R's `:`
    on factors) and unused combinations dropped, as lme4 does."""
    parts = [_factor(data[name]) for name in group_variables(group)]
    sizes = [len(levels) for _, levels in parts]
    combined = np.ravel_multi_index([codes for codes, _ in parts], sizes) if len(parts) > 1 else parts[0][0]
    used, index = np.unique(combined, return_inverse=True)
    per_part = np.unravel_index(used, sizes)
    labels = tuple(
        ":".join(levels[i] for (_, levels), i in zip(parts, combo)) for combo in zip(*per_part)
    )
    return index.astype(np.int64), labels


def new_group_labels(data: pd.DataFrame, group: str) -> np.ndarray:
    """Level label of every row of new data for the grouping factor `group`."""
    labels = [factor_labels(data[name]) for name in group_variables(group)]
    out = labels[0]
    for more in labels[1:]:
        out = np.array([f"{a}:{b}" for a, b in zip(out, more)], dtype=object)
    return out
