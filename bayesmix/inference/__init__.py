"""Frequentist inference for mixed fits beyond lme4's summary: denominator degrees of freedom
(Satterthwaite, Kenward-Roger) with t and type III F tests as lmerTest reports them, and
profile-likelihood confidence intervals as lme4's confint. See docs/inference.md.

The fit methods are the front door: ``fit.coef_table(ddf=...)``, ``fit.summary(ddf=...)``,
``bayesmix.anova(fit, ddf=...)``, ``fit.confint(method=...)``; this package holds the
machinery (e.g. ``contrast_test(fit, L)`` for any contrast matrix)."""

from .anova import anova_type3, type3_contrasts
from .confint import merfit_confint
from .ddf import coef_table, contrast_test, kenward_roger, normalize_ddf, satterthwaite
from .profile import profile_confint, varpar_names

__all__ = ["anova_type3", "coef_table", "contrast_test", "kenward_roger", "merfit_confint",
           "normalize_ddf",
           "profile_confint", "satterthwaite", "type3_contrasts", "varpar_names"]
