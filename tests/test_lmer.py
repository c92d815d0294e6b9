"""lmer-equivalent fits (Stan's L-BFGS on the profiled deviance) against lme4 1.1-31.

Tolerances (issue #4): logLik / REML criterion 1e-3 absolute; fixed effects
1e-4 relative plus 1e-3 of their SE; sigma 1e-4 relative; SDs 1e-3 relative
(1e-3 of sigma absolute at a singular boundary); SEs 1e-3 relative;
correlations 1e-3 absolute (non-singular fits); conditional modes 1e-3
relative to the largest mode of the term."""

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.datasets import load

REFS = json.loads((Path(__file__).parent / "reference" / "lme4_refs.json").read_text())
GAUSSIAN = {k: v for k, v in REFS["cases"].items() if v["family"] == "gaussian"}
SLOW = {"insteval_REML"}
DATASET = {"lmmdata": "lmmdata", "sleepstudy": "sleepstudy", "Penicillin": "Penicillin",
           "Pastes": "Pastes", "Dyestuff": "Dyestuff", "InstEval": "InstEval"}


@lru_cache(maxsize=None)
def fitted(case: str):
    spec = GAUSSIAN[case]
    data = load(Path(spec["data_file"]).stem)
    return bayesmix.lmer(spec["formula"], data, REML=spec["method"] == "REML")


def cases():
    return [pytest.param(k, marks=pytest.mark.slow) if k in SLOW else k for k in GAUSSIAN]


@pytest.mark.parametrize("case", cases())
def test_objective(case):
    ref, fit = GAUSSIAN[case]["results"], fitted(case)
    if ref["isSingular"]:
        # lme4's default optimizer can stop short on singular fits (docs/math.md 2)
        assert fit.loglik() >= ref["logLik"] - 1e-3
    else:
        assert fit.loglik() == pytest.approx(ref["logLik"], abs=1e-3)
        assert fit.aic() == pytest.approx(ref["AIC"], abs=2e-3)
        assert fit.bic() == pytest.approx(ref["BIC"], abs=2e-3)
    if fit.reml:
        assert fit.deviance() is None
        assert fit.reml_criterion() == pytest.approx(-2 * fit.loglik(), abs=1e-9)
    else:
        assert fit.deviance() == pytest.approx(ref["deviance"], abs=2e-3)
    assert fit.df() == ref["logLik_df"]
    assert fit.nobs() == ref["nobs"]
    assert fit.ngrps() == ref["ngrps"]
    assert fit.is_singular() == ref["isSingular"]
    assert fit.converged


@pytest.mark.parametrize("case", [c for c in cases()
                                  if not GAUSSIAN[c if isinstance(c, str) else c.values[0]]
                                  ["results"]["isSingular"]])
def test_estimates(case):
    ref, fit = GAUSSIAN[case]["results"], fitted(case)
    fe, se = pd.Series(ref["fixef"]), pd.Series(ref["fixef_se"])
    ours = fit.fixef()
    assert list(ours.index) == list(fe.index)
    np.testing.assert_allclose(ours, fe, rtol=1e-4, atol=0)  # rel 1e-4 ...
    assert np.all(np.abs(ours - fe) <= 1e-4 * np.abs(fe) + 1e-3 * se)  # ... + 1e-3 SE
    np.testing.assert_allclose(fit.coef_table()["Std. Error"], se, rtol=1e-3)
    np.testing.assert_allclose(fit.vcov().to_numpy(), np.array(ref["vcov_fixef"]), rtol=2e-3)
    assert fit.sigma() == pytest.approx(ref["sigma"], rel=1e-4)
    vc = fit.varcorr()
    for row in ref["varcorr_table"]:
        mask = (vc.grp == row["grp"]) & (vc.var1.fillna("") == (row["var1"] or "")) \
            & (vc.var2.fillna("") == (row["var2"] or ""))
        assert mask.sum() == 1, row
        ours_val = float(vc.loc[mask, "sdcor"].iloc[0])
        if row["var2"] is None:
            assert ours_val == pytest.approx(row["sdcor"], rel=1e-3)
        else:
            assert ours_val == pytest.approx(row["sdcor"], abs=1e-3)


@pytest.mark.parametrize("case", [c for c in GAUSSIAN if GAUSSIAN[c]["results"]["isSingular"]])
def test_singular_fit(case):
    ref, fit = GAUSSIAN[case]["results"], fitted(case)
    assert fit.is_singular()
    # the boundary: a diagonal of some relative factor T_k at ~0, which here
    # means correlations of -1 as lme4 reports
    diag = [np.diag(T) for T in fit.estimates.factors]
    assert min(np.min(np.abs(d)) for d in diag) < 1e-4
    vc = fit.varcorr()
    cors = vc[vc.var2.notna()].sdcor
    np.testing.assert_allclose(np.abs(cors), 1, atol=1e-3)
    assert fit.sigma() == pytest.approx(ref["sigma"], rel=1e-2)
    assert "singular" in str(fit.summary())


@pytest.mark.parametrize("case", [c for c in cases() if not GAUSSIAN[
    c if isinstance(c, str) else c.values[0]]["results"]["isSingular"]])
def test_ranef(case):
    ref, fit = GAUSSIAN[case]["results"], fitted(case)
    ours = fit.ranef(condvar=True)
    for group, block in ref["ranef"].items():
        modes, sds = ours[group]
        if "omitted" in block:  # lme4's reference keeps only factors of <= 100 levels
            assert len(modes) == block["n_levels"]
            continue
        assert list(modes.index) == block["levels"]
        for coef, values in block["values"].items():
            values = np.array(values)
            tol = 1e-3 * np.max(np.abs(values))
            np.testing.assert_allclose(modes[coef], values, atol=tol)
            np.testing.assert_allclose(sds[coef], block["condsd"][coef], rtol=1e-3)


@pytest.mark.parametrize("case", cases())
def test_predict_first_rows(case):
    ref, fit = GAUSSIAN[case]["results"], fitted(case)
    pred = ref["predict_first5"]
    data = fit.design.data.iloc[:5]
    rtol = 1e-3 if ref["isSingular"] else 1e-5
    np.testing.assert_allclose(fit.predict(data), pred["re_form_NULL"], rtol=rtol)
    np.testing.assert_allclose(fit.predict(data, re_form="~0"), pred["re_form_NA"], rtol=rtol)
    np.testing.assert_allclose(fit.predict(data, re_form=np.nan), pred["re_form_NA"], rtol=rtol)


def test_theta_matches_lme4_names_and_values():
    ref, fit = GAUSSIAN["sleepstudy_slope_REML"]["results"], fitted("sleepstudy_slope_REML")
    assert list(fit.theta.index) == list(ref["theta"])
    np.testing.assert_allclose(fit.theta, list(ref["theta"].values()), rtol=1e-3, atol=1e-5)


def test_new_levels_in_predictions():
    fit = fitted("sleepstudy_slope_REML")
    new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": ["999", "308"]})
    with pytest.raises(bayesmix.DataError, match="999.*allow_new_levels"):
        fit.predict(new)
    got = fit.predict(new, allow_new_levels=True)
    population = fit.predict(new, re_form="~0")
    assert got[0] == pytest.approx(population[0])      # a new subject: no random effect
    assert got[1] != pytest.approx(population[1])      # a known one keeps its own


def test_partial_re_form():
    fit = fitted("lmmdata_nested_REML")
    data = fit.design.data.iloc[:3]
    fe = fit.predict(data, re_form="~0")
    school_only = fit.predict(data, re_form="~(1|school)")
    b = fit.ranef()["school"].loc[data["school"].astype(str), "(Intercept)"].to_numpy()
    np.testing.assert_allclose(school_only, fe + b)


def test_summary_reads_like_lme4():
    text = str(fitted("sleepstudy_slope_REML").summary())
    for piece in ("REML criterion at convergence: 1743.6", "Random effects:", "Subject",
                  "Residual", "Number of obs: 180, groups:  Subject, 18", "Fixed effects:",
                  "Correlation of Fixed Effects:", "Scaled residuals"):
        assert piece in text
    ml = str(fitted("sleepstudy_slope_ML").summary())
    assert "maximum likelihood" in ml and "logLik" in ml


def test_coef_and_confint():
    fit = fitted("sleepstudy_slope_REML")
    coef = fit.coef()["Subject"]
    np.testing.assert_allclose(coef["Days"], fit.fixef()["Days"] + fit.ranef()["Subject"]["Days"])
    ci = fit.confint(method="Wald", parm="beta_")  # profile is the default, as in lme4
    se = fit.coef_table()["Std. Error"]
    np.testing.assert_allclose(ci.iloc[:, 1] - ci.iloc[:, 0], 2 * 1.959963985 * se, rtol=1e-6)


def test_simulate_reproduces_variance():
    fit = fitted("dyestuff_ML")
    sims = fit.simulate(nsim=4000, seed=1)
    np.testing.assert_array_equal(sims[:2], fit.simulate(nsim=2, seed=1))
    # total variance of one observation: between-batch + residual
    vc = fit.varcorr()
    total = vc.vcov.sum()
    assert sims[:, 0].var() == pytest.approx(total, rel=0.08)


def test_stan_code_is_the_generic_program():
    m1 = bayesmix.Model("Reaction ~ Days + (Days | Subject)", load("sleepstudy"))
    m2 = bayesmix.Model("Yield ~ 1 + (1 | Batch)", load("Dyestuff"))
    code = m1.stan_code("reml")
    assert code == m2.stan_code("ml")          # one program for every lmer formula
    assert "#include" not in code and "lmm_reduce" in code
    data = m1.stan_data("reml")
    assert data["REML"] == 1 and data["p_term"] == [2]


def test_display_like_arm():
    text = str(fitted("sleepstudy_slope_REML").display())
    assert text.splitlines()[0].startswith("lmer(formula = Reaction ~ Days + (Days|Subject)")
    assert "coef.est coef.se" in text and "Error terms:" in text
    assert "Residual" in text and "Corr((Intercept):Days)" in text
    assert "AIC = 1755.6" in text
