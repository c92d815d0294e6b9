"""Stage 1: parse lme4 formula syntax."""
from .parse import ParsedFormula, RandomPart, parse_formula

__all__ = ["ParsedFormula", "RandomPart", "parse_formula"]
