"""Bundled example data sets (lme4's classics, the tutorial's lmmdata, glmmTMB's Salamanders).

Factor columns come back as pandas Categoricals in the level order lme4 uses,
so that ranef() and coefficient names line up with lme4's output."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DataError

_DIR = Path(__file__).resolve().parent

# dataset -> {factor column: explicit level order or None}; None means R's
# factor() order of the original column (numeric order for numeric-looking
# codes, which R had stored as numbers before making them factors).
_FACTORS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "sleepstudy": {"Subject": None},
    "Dyestuff": {"Batch": None},
    "Penicillin": {"plate": None, "sample": None},
    "Pastes": {"batch": None, "cask": None, "sample": None},
    "cbpp": {"herd": None, "period": None},
    "InstEval": {
        "s": None,
        "d": None,
        "studage": None,
        "lectage": None,
        "service": None,
        # lme4's InstEval keeps the department codes in this (non-sorted) order
        "dept": ("15", "5", "10", "12", "6", "7", "4", "8", "9", "14", "1", "3", "11", "2"),
    },
    "lmmdata": {"class": None, "school": None},
    # glmmTMB's Salamanders (Price et al. 2016): counts of 7 salamander species at 23 sites,
    # some affected by mountaintop mining; levels in glmmTMB's order
    "Salamanders": {
        "site": ("R-1", "R-2", "R-3", "R-4", "R-5", "R-6", "R-7", "R-8", "R-9", "R-10", "R-11",
                 "R-12", "VF-1", "VF-2", "VF-3", "VF-4", "VF-5", "VF-6", "VF-7", "VF-8", "VF-9",
                 "VF-10", "VF-11"),
        "mined": ("yes", "no"),
        "spp": ("GP", "PR", "DM", "EC-A", "EC-L", "DES-L", "DF"),
    },
}
_ORDERED = {("InstEval", "studage"), ("InstEval", "lectage")}


def names() -> tuple[str, ...]:
    """Names of the bundled data sets, for load()."""
    return tuple(_FACTORS)


def _level_order(values: pd.Series) -> list[str]:
    levels = values.dropna().unique().tolist()
    try:
        return sorted(levels, key=float)
    except ValueError:
        return sorted(levels)


def load(name: str) -> pd.DataFrame:
    """Read a bundled data set; factor columns are Categoricals in lme4's order."""
    if name not in _FACTORS:
        raise DataError(f"unknown data set {name!r}; choose one of: {', '.join(names())}")
    factors = _FACTORS[name]
    df = pd.read_csv(_DIR / f"{name}.csv", dtype={col: str for col in factors})
    for col, order in factors.items():
        levels = list(order) if order is not None else _level_order(df[col])
        df[col] = pd.Categorical(df[col], categories=levels, ordered=(name, col) in _ORDERED)
    return df
