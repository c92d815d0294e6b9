"""Stage 2: model structures from a parsed formula and data."""
from .build import Design, RandomTerm, build_design
from .modelmatrix import ModelMatrixSpec
from .newdata import NewData, NewTermData, design_for_newdata

__all__ = [
    "Design",
    "ModelMatrixSpec",
    "NewData",
    "NewTermData",
    "RandomTerm",
    "build_design",
    "design_for_newdata",
]
