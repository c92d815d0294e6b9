"""The table R's anova() prints: a DataFrame with a heading (see bayesmix.anovatable for
the comparisons that fill it and bayesmix.inference.anova for lmerTest's type III table)."""

from __future__ import annotations

import pandas as pd

from .format import html_pre
from .glm import anova_text


class AnovaTable(pd.DataFrame):
    """A pandas DataFrame that prints like R's anova tables (heading, stars).

    `heading` holds the lines printed above the table; `refitted` the names of
    fits that were refitted by ML before a likelihood-ratio test."""

    _metadata = ["heading", "refitted", "bootstrap"]

    @property
    def _constructor(self):
        return pd.DataFrame  # slices and arithmetic give plain DataFrames

    def __str__(self) -> str:
        return anova_text(pd.DataFrame(self), getattr(self, "heading", ()) or ())

    def __repr__(self) -> str:
        return self.__str__()

    def _repr_html_(self) -> str:
        return html_pre(str(self))
