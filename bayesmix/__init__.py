"""bayesmix: lme4-syntax multilevel models compiled to Stan."""

__version__ = "0.1.0"
