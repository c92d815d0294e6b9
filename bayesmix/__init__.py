"""bayesmix: lme4-syntax multilevel models compiled to Stan.

`Model(formula, data, family)` builds and validates the design; `.fit()`
gives lme4's lmer/glmer numbers through Stan's optimizer, `.sample()` a
full posterior with NUTS."""

from .design import Design, build_design
from .errors import (BayesmixError, DataError, FamilyError, FormulaError,
                     StanError, ToolchainError)
from .families import Family, get_family
from .formula import ParsedFormula, parse_formula
from .model import Model, glm, glmer, lm, lmer

__version__ = "0.1.0"

__all__ = [
    "BayesmixError", "DataError", "Design", "Family", "FamilyError", "FormulaError", "Model",
    "ParsedFormula", "StanError", "ToolchainError", "build_design", "get_family", "glm",
    "glmer", "lm", "lmer", "parse_formula",
]
from .export import export, load, rerun  # noqa: E402
__all__ += ["export", "load", "rerun"]
