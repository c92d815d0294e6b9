"""Stage 1: parse lme4 formula syntax (and brms-style distributional formulas, bf())."""
from .distributional import DistributionalFormula, bf, check_dpars, dpar_formulas
from .parse import ParsedFormula, RandomPart, parse_formula

__all__ = ["DistributionalFormula", "ParsedFormula", "RandomPart", "bf", "check_dpars",
           "dpar_formulas", "parse_formula"]
