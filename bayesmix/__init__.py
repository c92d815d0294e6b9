"""bayesmix: lme4-syntax multilevel models compiled to Stan.

`Model(formula, data, family)` builds and validates the design; `.fit()`
gives lme4's lmer/glmer numbers through Stan's optimizer (lm/glm without
random terms), `.sample()` a full posterior with NUTS."""

import warnings

# ArviZ 0.2x announces its coming refactor with a FutureWarning banner on
# import; it is about ArviZ's own future API, not the user's code.
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor",
                        category=FutureWarning)

# Methods, inference and io register what result objects and bundles delegate to
# (bayesmix.registry) when imported; importing them here makes that complete.
from . import bayes, bundle, glmerfit, glmfit, inference, ml  # noqa: F401
from .dist import ml as _dist_ml, nuts as _dist_nuts  # noqa: F401  (dist_* bundles)
from .anovatable import AnovaTable, anova
from .bayes.compare import compare
from .bundle import export, load, rerun
from .calibration import SbcResult, sbc
from .design import Design, build_design
from .errors import (BayesmixError, DataError, FamilyError, FormulaError,
                     StanError, ToolchainError)
from .families import Family, get_family
from .formula import DistributionalFormula, ParsedFormula, bf, parse_formula
from .lmlistfit import LmList, lmlist
from .model import Model, glm, glmer, lm, lmer
from .parboot import BootstrapResult, PBModComp, bootstrap, pb_modcomp
from .plots import plot_coef, plot_effects, plot_ppc, plot_ranef, plot_residuals
from .priors import Prior, prior
from .results.glm import GlmFit
from .version import __version__

__all__ = [
    "AnovaTable", "BayesmixError", "BootstrapResult", "DataError", "Design",
    "DistributionalFormula", "Family", "FamilyError", "FormulaError", "GlmFit", "LmList",
    "Model", "PBModComp", "ParsedFormula", "Prior", "SbcResult", "StanError", "ToolchainError",
    "anova", "bf", "bootstrap", "build_design", "compare", "export", "get_family", "glm",
    "glmer", "lm", "lmer", "lmlist", "load",
    "parse_formula", "pb_modcomp", "plot_coef", "plot_effects", "plot_ppc", "plot_ranef",
    "plot_residuals", "prior", "rerun", "sbc",
]
