"""lmerTest's type III analysis-of-variance table for one linear mixed fit.

For every term of the fixed part (R's term labels, the intercept excluded), the F test of "all
coefficients of the term are zero" with Satterthwaite's or Kenward-Roger's denominator df
(``bayesmix.inference.ddf.contrast_test``). Testing a term's own coefficients is lmerTest's
type III hypothesis whenever the term is not contained in a higher-order term that involves a
factor (for numeric covariates the containment changes nothing); the remaining case, a factor's
main effect or interaction marginal to a higher-order interaction, needs lmerTest's
orthogonalised contrasts and is refused with a clear message.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import BayesmixError
from .ddf import contrast_test, normalize_ddf

COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]


def fixed_terms(design) -> list[tuple[str, list[int], tuple[int, ...]]]:
    """(label, X column indices, variable indices) of each term of the fixed part."""
    from ..design.modelmatrix import _column_names
    spec = design.fixed_spec
    kept = {name: i for i, name in enumerate(design.X_names)}
    out = []
    for term, codes in zip(spec.terms, spec.codes):
        label = ":".join(spec.variables[v].label for v in term)
        names = _column_names(spec.variables, [term], [codes], False)
        cols = [kept[nm] for nm in names if nm in kept]
        out.append((label, cols, tuple(term)))
    return out


def anova_type3(fit, ddf="Satterthwaite", type=3):
    """lmerTest's anova(fit, type = 3, ddf = ...) as an AnovaTable."""
    from ..compare import AnovaTable
    if str(type).upper() not in ("3", "III"):
        raise BayesmixError(f"anova() of a single lmer fit gives lmerTest's type III table; "
                            f"type={type!r} is not implemented (use type=3)")
    method = normalize_ddf(ddf)
    if method is None:
        raise BayesmixError("anova() of a single lmer fit needs ddf='Satterthwaite' or "
                            "'Kenward-Roger'")
    terms = fixed_terms(fit.design)
    spec = fit.design.fixed_spec
    rows, labels = [], []
    p = fit.design.p
    for label, cols, vars_ in terms:
        higher = [t for t in terms if set(vars_) < set(t[2])]
        if higher and any(spec.variables[v].categorical
                          for t in higher for v in t[2]):
            raise BayesmixError(
                f"type III test of {label!r}: the term is marginal to "
                f"{', '.join(repr(t[0]) for t in higher)}, which involve factors; lmerTest "
                "tests orthogonalised contrasts there, which bayesmix does not implement yet. "
                "Compare nested models with anova(m0, m1) or test the coefficients with "
                "bayesmix.inference.contrast_test(fit, L)")
        if not cols:
            continue
        L = np.zeros((len(cols), p))
        L[np.arange(len(cols)), cols] = 1.0
        rows.append(contrast_test(fit, L, ddf=method))
        labels.append(label)
    table = pd.DataFrame(rows, index=labels, columns=COLUMNS) if rows else \
        pd.DataFrame(columns=COLUMNS, dtype=float)
    out = AnovaTable(table)
    method_txt = "Satterthwaite's" if method == "Satterthwaite" else "Kenward-Roger's"
    out.heading = [f"Type III Analysis of Variance Table with {method_txt} method"]
    out.refitted = []
    return out
