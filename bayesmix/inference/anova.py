"""lmerTest's type III analysis-of-variance table for one linear mixed fit.

For every term of the fixed part (R's term labels, the intercept excluded), an F test of the
term's type III contrasts with Satterthwaite's or Kenward-Roger's denominator df
(``bayesmix.inference.ddf.contrast_test``). The contrasts are lmerTest's
(``get_contrasts_type3``): without containment they select the term's own coefficients; when a
term is contained in a higher-order one (lmerTest's rule: the other term has all of its
variables and more, the additional ones factors, the numeric variables the same), the
contrasts come from the generalised inverse of X applied to the complete (all-levels)
treatment-coded design, orthogonalised against the containing terms' columns, as lmerTest
does. That last case needs treatment contrasts (R's default); other codings are refused there.
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


def _zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's zapsmall."""
    mx = np.max(np.abs(x)) if x.size else 0.0
    if not mx > 0:
        return x
    return np.round(x, int(max(0, digits - np.ceil(np.log10(mx)))))


def _numeric_vars(spec, vars_) -> set:
    # lmerTest compares R's dataClasses "numeric": plain numeric columns (not factors, not
    # matrix-valued terms such as poly())
    return {v for v in vars_ if not spec.variables[v].categorical
            and not spec.variables[v].suffixes}


def containment(design) -> dict:
    """lmerTest's containment(): for each term, the terms that contain it."""
    spec = design.fixed_spec
    terms = fixed_terms(design)
    out = {}
    for label, _, v1 in terms:
        out[label] = [lab2 for lab2, _, v2 in terms
                      if set(v1) < set(v2) and _numeric_vars(spec, v1) == _numeric_vars(spec, v2)]
    return out


def type3_contrasts(design) -> dict:
    """lmerTest's type III contrast matrix of each term (rows: contrasts, columns: X)."""
    terms = fixed_terms(design)
    p = design.p
    contained = containment(design)
    if not any(contained.values()):
        out = {}
        for label, cols, _ in terms:
            L = np.zeros((len(cols), p))
            L[np.arange(len(cols)), cols] = 1.0
            out[label] = L
        return out
    from dataclasses import replace

    from ..design.modelmatrix import _assemble, _column_names, _evaluate, _prepare_like
    spec = design.fixed_spec
    for var in spec.variables:
        if var.categorical and var.contrasts is not None:
            k = len(var.levels)
            treatment = np.eye(k)[:, 1:]
            if var.contrasts.shape != treatment.shape or not np.allclose(var.contrasts,
                                                                         treatment):
                raise BayesmixError(
                    f"type III tests with a term contained in an interaction need treatment "
                    f"contrasts (R's default) for {var.label!r}, as bayesmix implements "
                    "lmerTest's contrasts for that coding only; refit without C(..., ...)")
    codes2 = tuple(tuple(2 for _ in t) for t in spec.terms)
    prepared = _prepare_like(design.data, spec.columns, spec.column_levels, "data")
    blocks = (_evaluate(spec.formulaic, prepared, spec.variables, "data", spec.context)
              if spec.variables else [])
    rdX = _assemble(replace(spec, codes=codes2), blocks, len(design.data))
    rd_names = list(_column_names(spec.variables, spec.terms, codes2, spec.intercept))
    X = np.asarray(design.X, float)
    L = _zapsmall((np.linalg.pinv(X) @ rdX).T)  # complete columns x X columns
    by_label = {label: cols for label, cols, _ in terms}
    order = sorted(range(len(terms)), key=lambda k: -len(terms[k][2]))
    for k in order:
        label, cols, _ = terms[k]
        contains = contained[label]
        if contains and cols:
            A = L[:, [c for lab in contains for c in by_label[lab]]]
            B = L[:, cols]
            coef = np.linalg.lstsq(A, B, rcond=None)[0]
            L[:, cols] = _zapsmall(B - A @ coef)
    missing = [nm for nm in design.X_names if nm not in rd_names]
    if missing:
        raise BayesmixError(f"cannot build lmerTest's type III contrasts: columns {missing} "
                            "are not in the complete design")
    Lx = L[[rd_names.index(nm) for nm in design.X_names]]
    out = {}
    for label, cols, _ in terms:
        Lt = Lx[:, cols].T
        out[label] = Lt[np.sum(np.abs(Lt), axis=1) > 1e-8]
    return out


def anova_type3(fit, ddf="Satterthwaite", type=3):
    """lmerTest's anova(fit, type = 3, ddf = ...) as an AnovaTable."""
    from ..results.anova import AnovaTable
    if str(type).upper() not in ("3", "III"):
        raise BayesmixError(f"anova() of a single lmer fit gives lmerTest's type III table; "
                            f"type={type!r} is not implemented (use type=3)")
    method = normalize_ddf(ddf)
    if method is None:
        raise BayesmixError("anova() of a single lmer fit needs ddf='Satterthwaite' or "
                            "'Kenward-Roger'")
    rows, labels = [], []
    for label, L in type3_contrasts(fit.design).items():
        if not len(L):
            continue
        rows.append(contrast_test(fit, L, ddf=method))
        labels.append(label)
    table = pd.DataFrame(rows, index=labels, columns=COLUMNS) if rows else \
        pd.DataFrame(columns=COLUMNS, dtype=float)
    out = AnovaTable(table)
    method_txt = "Satterthwaite's" if method == "Satterthwaite" else "Kenward-Roger's"
    out.heading = [f"Type III Analysis of Variance Table with {method_txt} method"]
    out.refitted = []
    return out
