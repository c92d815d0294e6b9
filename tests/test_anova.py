"""anova(): R's tables for nested lm/glm fits (against the tutorial's
reference anova entries and R's printout) and lme4's likelihood-ratio table
for mixed fits (against lme4's logLiks), with the REML -> ML refit."""

import json
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix
from bayesmix.anovatable import REFIT_MESSAGE, AnovaTable, anova
from bayesmix.datasets import load
from bayesmix.design import build_design
from bayesmix.errors import BayesmixError
from bayesmix.families import get_family
from bayesmix.glmfit import fit_glm

REFS = json.loads((Path(__file__).parent / "reference" / "lme4_refs.json").read_text())
GLM = REFS["glm_cases"]
CASES = REFS["cases"]
ANOVA_KEYS = [k for k in GLM if k.startswith("anova_")]

# R 4.2.2: print(anova(lm(extro ~ open + agree + social), lm(... + class)))
R_ANOVA_LM = """Analysis of Variance Table

Model 1: extro ~ open + agree + social
Model 2: extro ~ open + agree + social + class
  Res.Df    RSS Df Sum of Sq      F  Pr(>F)  
1   1196 122848                              
2   1193 122201  3    647.02 2.1055 0.09778 .
---
Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1"""

# lme4 1.1-31: anova(m1, m2) of the REML fits (1|school) and (1|school/class)
LME4_LRT = """Data: lmmdata
Models:
m1: extro ~ open + agree + social + (1|school)
m2: extro ~ open + agree + social + (1|school/class)
   npar    AIC    BIC  logLik deviance  Chisq Df Pr(>Chisq)    
m1    6 5802.4 5832.9 -2895.2   5790.4                         
m2    7 3633.5 3669.1 -1809.7   3619.5 2170.9  1  < 2.2e-16 ***
---
Signif. codes:  0 ‘***’ 0.001 ‘**’ 0.01 ‘*’ 0.05 ‘.’ 0.1 ‘ ’ 1"""


@lru_cache(maxsize=None)
def lmmdata():
    return load("lmmdata")


@lru_cache(maxsize=None)
def glm_fit(formula: str, fitter: str = "glm", rows: int | None = None):
    data = lmmdata() if rows is None else lmmdata().iloc[:rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design = build_design(formula, data, family=get_family("gaussian"))
    return fit_glm(design, fitter=fitter)


@lru_cache(maxsize=None)
def lmer_fit(case: str, reml: bool):
    return bayesmix.lmer(CASES[case]["formula"], lmmdata(), REML=reml)


def _ref_formula(call_name: str) -> str:
    return GLM[{"MLexamp": "MLexamp"}.get(call_name, call_name)]["formula"]


@pytest.mark.parametrize("key", ANOVA_KEYS)
def test_glm_f_test_matches_reference(key):
    ref = GLM[key]
    names = ref["call"][len("anova("):].split(",")[:2]
    fits = [glm_fit(_ref_formula(n.strip())) for n in names]
    table = anova(*fits, test="F")
    assert isinstance(table, AnovaTable)
    assert list(table.columns) == ref["columns"]
    for row, ref_row in zip(table.to_numpy(), ref["rows"]):
        for value, expected in zip(row, ref_row):
            if expected is None:
                assert np.isnan(value)
            else:
                assert value == pytest.approx(expected, rel=1e-8, abs=1e-300)


def test_lm_table_f_test_and_print():
    small = glm_fit("extro ~ open + agree + social", "lm")
    big = glm_fit("extro ~ open + agree + social + class", "lm")
    table = anova(small, big)
    assert list(table.columns) == ["Res.Df", "RSS", "Df", "Sum of Sq", "F", "Pr(>F)"]
    rss1, rss2 = small.deviance(), big.deviance()
    df1, df2 = small.df_residual(), big.df_residual()
    F = ((rss1 - rss2) / (df1 - df2)) / (rss2 / df2)
    assert table["F"].iloc[1] == pytest.approx(F, rel=1e-12)
    assert table["Pr(>F)"].iloc[1] == pytest.approx(stats.f.sf(F, df1 - df2, df2), rel=1e-10)
    assert table["Sum of Sq"].iloc[1] == pytest.approx(rss1 - rss2)
    assert table.loc["2", "Df"] == 3 and np.isnan(table.loc["1", "F"])
    assert str(table) == R_ANOVA_LM
    assert table._repr_html_().startswith("<pre")
    # slices are plain DataFrames
    assert type(table[["F"]]) is pd.DataFrame


def test_glm_default_and_chisq_tests():
    small = glm_fit("extro ~ open + agree + social")
    big = glm_fit("extro ~ open + agree + social + school")
    assert "F" in anova(small, big).columns  # estimated dispersion: F by default
    chi = anova(small, big, test="Chisq")
    dev = small.deviance() - big.deviance()
    assert chi["Pr(>Chi)"].iloc[1] == pytest.approx(
        stats.chi2.sf(dev / big.dispersion(), 5), abs=1e-300)
    assert list(anova(small, big, test="none").columns) == ["Resid. Df", "Resid. Dev", "Df",
                                                           "Deviance"]
    cbpp = load("cbpp")
    b0 = bayesmix.Model("cbind(incidence, size - incidence) ~ 1", cbpp, family="binomial").fit()
    b1 = bayesmix.Model("cbind(incidence, size - incidence) ~ period", cbpp,
                        family="binomial").fit()
    t = anova(b0, b1)  # known dispersion: likelihood-ratio chi-square by default
    assert t["Pr(>Chi)"].iloc[1] == pytest.approx(
        stats.chi2.sf(b0.deviance() - b1.deviance(), 3), rel=1e-10)
    with pytest.raises(BayesmixError, match="unknown test"):
        anova(small, big, test="Wald")


def test_different_data_sizes_are_an_error():
    with pytest.raises(BayesmixError, match="same size of dataset"):
        anova(glm_fit("extro ~ open + agree + social"),
              glm_fit("extro ~ open + agree + social + class", rows=1000))
    with pytest.raises(BayesmixError, match="response"):
        anova(glm_fit("extro ~ open + agree + social"), glm_fit("open ~ agree + social"))
    with pytest.raises(BayesmixError, match="two or more"):
        anova(glm_fit("extro ~ open + agree + social"))


# ---------------------------------------------------------------- mixed models


def test_likelihood_ratio_between_nested_ml_fits():
    m1, m2 = lmer_fit("lmmdata_school_ML", False), lmer_fit("lmmdata_nested_ML", False)
    ll1 = CASES["lmmdata_school_ML"]["results"]["logLik"]
    ll2 = CASES["lmmdata_nested_ML"]["results"]["logLik"]
    table = anova(m2, m1, names=["m2", "m1"])  # ordered by npar whatever the input order
    assert list(table.index) == ["m1", "m2"]
    assert list(table.columns) == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df",
                                   "Pr(>Chisq)"]
    assert list(table["npar"]) == [6, 7]
    assert table["Chisq"].iloc[1] == pytest.approx(2 * (ll2 - ll1), abs=1e-3)
    assert table["Df"].iloc[1] == 1
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(stats.chi2.sf(table["Chisq"].iloc[1], 1))
    for row, case in zip(table.itertuples(), ["lmmdata_school_ML", "lmmdata_nested_ML"]):
        ref = CASES[case]["results"]
        assert row.AIC == pytest.approx(ref["AIC"], abs=2e-3)
        assert row.BIC == pytest.approx(ref["BIC"], abs=2e-3)
        assert row.logLik == pytest.approx(ref["logLik"], abs=1e-3)
    assert table.refitted == []


def test_reml_fits_are_refitted_by_ml(capsys):
    m1, m2 = lmer_fit("lmmdata_school_REML", True), lmer_fit("lmmdata_nested_REML", True)
    table = anova(m1, m2, data_name="lmmdata")
    assert REFIT_MESSAGE in capsys.readouterr().err
    assert table.refitted == ["m1", "m2"]
    ll1 = CASES["lmmdata_school_ML"]["results"]["logLik"]
    ll2 = CASES["lmmdata_nested_ML"]["results"]["logLik"]
    assert table["logLik"].tolist() == pytest.approx([ll1, ll2], abs=1e-3)
    assert str(table) == LME4_LRT
    # refit=False compares the REML criteria as they are (lme4's refit = FALSE)
    raw = anova(m1, m2, refit=False)
    assert raw["logLik"].tolist() == pytest.approx([m1.loglik(), m2.loglik()])
    assert capsys.readouterr().err == ""


def test_lm_against_mixed_fit():
    m1 = lmer_fit("lmmdata_school_ML", False)
    l0 = glm_fit("extro ~ open + agree + social", "lm")
    table = anova(m1, l0, names=["m1", "l0"])
    assert list(table.index) == ["l0", "m1"]
    assert table.loc["l0", "logLik"] == pytest.approx(GLM["OLSexamp"]["logLik"], rel=1e-10)
    assert table.loc["l0", "npar"] == 5
    assert table.loc["m1", "Chisq"] == pytest.approx(
        2 * (CASES["lmmdata_school_ML"]["results"]["logLik"] - GLM["OLSexamp"]["logLik"]),
        abs=1e-3)
    with pytest.raises(BayesmixError, match="same size of dataset"):
        anova(m1, glm_fit("extro ~ open + agree + social", "lm", rows=600))
