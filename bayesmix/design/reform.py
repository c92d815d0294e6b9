"""lme4's re.form: which grouping factors a prediction includes. One home for the
ML results (results/) and the posterior predictions (bayes/predict.py)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FormulaError
from ..formula import parse_formula


def re_form_groups(re_form: Any, design: Any) -> set[str]:
    """The grouping factors of `design` (a Design) that re_form keeps: all of them for None,
    none for "~0", "NA", "~1", "0" or NaN, else those named by a formula of bars such as
    "~(1|school)". Unknown grouping factors are a FormulaError naming them."""
    all_groups = {t.group for t in design.terms}
    if re_form is None:
        return all_groups
    if isinstance(re_form, float) and np.isnan(re_form):
        return set()
    text = str(re_form).replace(" ", "")
    if text in ("~0", "NA", "~1", "0"):
        return set()
    parsed = parse_formula("y " + (str(re_form) if "~" in str(re_form) else "~" + str(re_form)))
    groups = {p.group for p in parsed.random}
    unknown = groups - all_groups
    if unknown:
        raise FormulaError(f"re_form names grouping factor(s) {sorted(unknown)} that the model "
                           f"does not have; valid: {sorted(all_groups)}")
    return groups
