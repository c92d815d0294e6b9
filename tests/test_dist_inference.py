"""Inference on distributional ML fits against glmmTMB 1.1.5
(tests/reference/families/dist_inference_refs.R / .json): Wald intervals (DistMLFit.confint)
and the likelihood-ratio table of a glmer poisson fit against a zero-inflated Poisson
DistMLFit (bayesmix.anova across kinds)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.errors import BayesmixError

HERE = Path(__file__).parent / "reference" / "families"
REF = json.loads((HERE / "dist_inference_refs.json").read_text())
DATA = pd.read_csv(HERE / "zero_inflated_poisson.csv")
# glmmTMB's confint row names -> ours
NAMES = {"cond.(Intercept)": "mu.(Intercept)", "cond.x": "mu.x",
         "zi.(Intercept)": "zi.(Intercept)", "cond.Std.Dev.(Intercept)|g": "mu.Std.Dev.(Intercept)|g"}


@pytest.fixture(scope="module")
def fits():
    zip_ = bayesmix.Model("y ~ x + (1 | g)", data=DATA, family="zero_inflated_poisson").fit()
    pois = bayesmix.Model("y ~ x + (1 | g)", data=DATA, family="poisson").fit()
    return pois, zip_


@pytest.mark.slow
def test_wald_confint_matches_glmmtmb(fits):
    ci = fits[1].confint(method="Wald")
    ref = REF["confint_zip"]
    ours = ci.loc[[NAMES[n] for n in ref["names"]]]
    # estimates agree to 1e-3 (test_dist_ml), SEs to 1e-3 relative: bounds to 1e-3 relative
    np.testing.assert_allclose(ours["2.5 %"], ref["lower"], rtol=1e-3)
    np.testing.assert_allclose(ours["97.5 %"], ref["upper"], rtol=1e-3)
    np.testing.assert_allclose(ours["Estimate"], ref["estimate"], rtol=1e-3)
    with pytest.raises(BayesmixError, match="profile"):
        fits[1].confint(method="profile")


@pytest.mark.slow
def test_anova_poisson_vs_zip_matches_glmmtmb(fits):
    tab = bayesmix.anova(*fits)
    ref = REF["anova_pois_zip"]
    assert list(tab["npar"]) == ref["npar"]
    # logLik: glmer (adaptive quadrature nAGQ=1 = Laplace) and our Laplace vs glmmTMB, 1e-3 abs
    np.testing.assert_allclose(tab["logLik"], ref["logLik"], atol=2e-3)
    np.testing.assert_allclose(tab["AIC"], ref["AIC"], atol=5e-3)
    np.testing.assert_allclose(tab["BIC"], ref["BIC"], atol=5e-3)
    assert tab["Chisq"].iloc[1] == pytest.approx(ref["Chisq"], abs=5e-3)
    assert tab["Df"].iloc[1] == ref["Df"]
    assert tab["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p"], rel=1e-2)


@pytest.mark.slow
def test_anova_refuses_different_rows(fits):
    other = bayesmix.Model("y ~ x + (1 | g)", data=DATA.iloc[:-5],
                           family="zero_inflated_poisson").fit()
    with pytest.raises(BayesmixError, match="same size"):
        bayesmix.anova(fits[0], other)
