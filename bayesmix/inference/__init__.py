"""Frequentist inference for linear mixed fits beyond lme4's summary: denominator degrees of
freedom (Satterthwaite, Kenward-Roger) with t and type III F tests as lmerTest reports them, and
profile-likelihood confidence intervals as lme4's confint. See docs/inference.md."""

from .ddf import contrast_test, coef_table, kenward_roger, normalize_ddf, satterthwaite
from .profile import profile_confint, varpar_names

__all__ = ["coef_table", "contrast_test", "kenward_roger", "normalize_ddf", "profile_confint",
           "satterthwaite", "varpar_names"]
