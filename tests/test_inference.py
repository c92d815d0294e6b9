"""Satterthwaite / Kenward-Roger tests and profile intervals of lmer fits against R.

References: tests/reference/inference_refs.json, written by tests/reference/inference_refs.R
(lmerTest 3.1-3, pbkrtest 0.5.2, lme4 1.1-31). Every number compared below comes from R.

Tolerances. The fits themselves (Stan's L-BFGS vs lme4's bobyqa) agree with lme4 to ~1e-5
relative in the standard errors, which carries into everything downstream, so:

* coefficient tables: Std. Error and t value within 1e-4 relative; df within 1e-3 relative
  (Satterthwaite's df needs a numerical Hessian here and in lmerTest; seen: 9e-5);
  Pr(>|t|) within 1e-3 relative or 1e-8 absolute (tiny p-values amplify the 1e-5 differences
  of t: seen 2.4e-3 relative at p = 1.7e-6, which is 2e-10 absolute).
* type III anova: Sum Sq, Mean Sq, F value within 1e-4 relative, DenDF within 1e-3
  relative, Pr(>F) within 1e-3 relative or 1e-8 absolute, NumDF exactly.
* profile intervals: each limit within 1e-3 of the width of lme4's interval (seen: < 1e-4
  of the width; lme4 interpolates a spline through its profile, we solve for the crossing).
* Wald intervals: within 1e-5 relative, NaN rows (variance parameters) as lme4.
* glmer profile intervals (cbpp binomial, a poisson random slope): each limit within 1e-3 of
  the width of lme4's interval (seen: 3e-4; lme4's default glmer optimum is itself slightly
  short of the Laplace optimum).
"""

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix
from bayesmix.datasets import load
from bayesmix.errors import BayesmixError

REFS = json.loads((Path(__file__).parent / "reference" / "inference_refs.json").read_text())
CASES = REFS["cases"]
GLMER_CASES = REFS["glmer_cases"]
KR_CASES = [k for k, c in CASES.items() if "coef_kenward_roger" in c]
SLOW_PROFILE = {"lmmdata_nested_REML"}


@lru_cache(maxsize=None)
def fitted(case: str):
    spec = CASES[case]
    return bayesmix.lmer(spec["formula"], load(spec["data"]), REML=spec["REML"])


def table(ref: dict) -> pd.DataFrame:
    rows = ref["rows"]
    rows = [rows] if isinstance(rows, str) else list(rows)
    values = np.array(ref["values"], dtype=float).reshape(len(rows), len(ref["columns"]))
    return pd.DataFrame(values, index=rows, columns=ref["columns"])


def close_p(ours, ref):
    ours, ref = np.asarray(ours, float), np.asarray(ref, float)
    return np.all((np.abs(ours - ref) <= 1e-3 * np.abs(ref)) | (np.abs(ours - ref) <= 1e-8))


DDF = [("Satterthwaite", "satterthwaite", list(CASES)), ("Kenward-Roger", "kenward_roger", KR_CASES)]
COEF_PARAMS = [(ddf, key, case) for ddf, key, cases in DDF for case in cases]


@pytest.mark.parametrize("ddf,key,case", COEF_PARAMS)
def test_coef_table_matches_lmertest(ddf, key, case):
    ref = table(CASES[case][f"coef_{key}"])
    ours = fitted(case).coef_table(ddf=ddf)
    assert list(ours.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    assert list(ours.index) == list(ref.index)
    np.testing.assert_allclose(ours["Std. Error"], ref["Std. Error"], rtol=1e-4)
    np.testing.assert_allclose(ours["t value"], ref["t value"], rtol=1e-4)
    np.testing.assert_allclose(ours["df"], ref["df"], rtol=1e-3)
    assert close_p(ours["Pr(>|t|)"], ref["Pr(>|t|)"])


@pytest.mark.parametrize("ddf,key,case", COEF_PARAMS)
def test_type3_anova_matches_lmertest(ddf, key, case):
    ref = table(CASES[case][f"anova_{key}"])
    ours = bayesmix.anova(fitted(case), ddf=ddf)
    assert list(ours.columns) == ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    assert list(ours.index) == list(ref.index)
    if not len(ref):
        return  # intercept-only models: an empty table, as lmerTest
    np.testing.assert_array_equal(ours["NumDF"], ref["NumDF"])
    for col in ("Sum Sq", "Mean Sq", "F value"):
        np.testing.assert_allclose(ours[col], ref[col], rtol=1e-4)
    np.testing.assert_allclose(ours["DenDF"], ref["DenDF"], rtol=1e-3)
    assert close_p(ours["Pr(>F)"], ref["Pr(>F)"])
    method = "Satterthwaite's" if ddf == "Satterthwaite" else "Kenward-Roger's"
    assert str(ours).splitlines()[0] == f"Type III Analysis of Variance Table with {method} method"


def test_multi_df_term_is_a_three_df_f_test():
    ours = bayesmix.anova(fitted("lmmdata_factor_REML"))
    assert ours.loc["class", "NumDF"] == 3


def test_kenward_roger_refuses_ml_fits():
    fit = fitted("sleepstudy_slope_ML")
    with pytest.raises(BayesmixError, match="only available for REML"):
        fit.coef_table(ddf="Kenward-Roger")
    with pytest.raises(BayesmixError, match="only available for REML"):
        bayesmix.anova(fit, ddf="Kenward-Roger")


def test_unknown_ddf_is_a_clear_error():
    with pytest.raises(BayesmixError, match="unknown ddf"):
        fitted("sleepstudy_slope_REML").coef_table(ddf="Wilks")


def test_summary_prints_lmertest_columns():
    fit = fitted("sleepstudy_slope_REML")
    text = str(fit.summary())
    assert "t-tests use Satterthwaite's method [lmerModLmerTest]" in text.splitlines()[0]
    assert "Estimate Std. Error      df t value Pr(>|t|)" in text
    assert "Signif. codes" in text
    kr = str(fit.summary(ddf="Kenward-Roger"))
    assert "t-tests use Kenward-Roger's method" in kr
    plain = str(fit.summary(ddf=None))  # lme4's own printout stays available
    assert "lmerModLmerTest" not in plain and "Pr(>|t|)" not in plain
    assert "Estimate Std. Error t value" in plain
    assert list(fit.coef_table(ddf=None).columns) == ["Estimate", "Std. Error", "t value"]


# ------------------------------------------------------------------------ confidence intervals

PROFILE_PARAMS = [pytest.param(case, i, marks=pytest.mark.slow) if case in SLOW_PROFILE
                  else pytest.param(case, i)
                  for case, c in CASES.items() for i in range(len(c["confint_profile"]))]


@pytest.mark.parametrize("case,i", PROFILE_PARAMS)
def test_profile_confint_matches_lme4(case, i):
    ref_entry = CASES[case]["confint_profile"][i]
    ref = table(ref_entry)
    ours = fitted(case).confint(level=ref_entry["level"])  # method="profile" is the default
    assert list(ours.index) == list(ref.index)
    assert list(ours.columns) == list(ref.columns)
    width = (ref.iloc[:, 1] - ref.iloc[:, 0]).to_numpy()
    dev = np.abs(ours.to_numpy() - ref.to_numpy())
    assert np.all(dev <= 1e-3 * width[:, None]), (ours, ref)


@pytest.mark.parametrize("case", list(CASES))
def test_wald_confint_matches_lme4(case):
    ref = table(CASES[case]["confint_wald"])
    ours = fitted(case).confint(method="Wald")
    assert list(ours.index) == list(ref.index)
    assert list(ours.columns) == ["2.5 %", "97.5 %"]
    np.testing.assert_array_equal(np.isnan(ours.to_numpy()), np.isnan(ref.to_numpy()))
    ok = ~np.isnan(ref.to_numpy())
    np.testing.assert_allclose(ours.to_numpy()[ok], ref.to_numpy()[ok], rtol=1e-5)


def test_confint_parm_selection():
    fit = fitted("sleepstudy_intercept_REML")
    ref = table(CASES["sleepstudy_intercept_REML"]["confint_profile"][0])
    beta = fit.confint(parm="beta_")
    assert list(beta.index) == ["(Intercept)", "Days"]
    width = (ref.loc["Days"].iloc[1] - ref.loc["Days"].iloc[0])
    assert np.all(np.abs(beta.loc["Days"].to_numpy() - ref.loc["Days"].to_numpy()) <= 1e-3 * width)
    assert list(fit.confint(parm="theta_", method="Wald").index) == ["sd_(Intercept)|Subject",
                                                                     "sigma"]
    with pytest.raises(BayesmixError, match="unknown parameter"):
        fit.confint(parm="nope")
    with pytest.raises(BayesmixError, match="unknown confint method"):
        fit.confint(method="bca")


def test_boot_confint_goes_through_bayesmix_bootstrap():
    """method='boot' hands over to bayesmix.bootstrap (percentile intervals); the statistics
    are checked against lme4 in that module's tests, here only the plumbing and the names."""
    try:
        import bayesmix.parboot  # noqa: F401
    except ImportError:
        with pytest.raises(BayesmixError, match="bayesmix.bootstrap"):
            fitted("sleepstudy_intercept_REML").confint(method="boot", nsim=5, seed=1)
        return
    fit = fitted("sleepstudy_intercept_REML")
    ci = fit.confint(method="boot", nsim=20, seed=1, executor="serial")
    assert list(ci.index) == ["sd_(Intercept)|Subject", "sigma", "(Intercept)", "Days"]
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    assert np.all(ci.iloc[:, 0] < ci.iloc[:, 1])
    again = fit.confint(method="boot", nsim=20, seed=1, executor="serial")
    pd.testing.assert_frame_equal(ci, again)


def test_type3_contained_term_needs_treatment_contrasts():
    # lmerTest's orthogonalised type III contrasts are implemented for treatment coding (the
    # case lmmdata_factor_interaction_REML checks them against lmerTest); sum contrasts on a
    # factor in an interaction are refused with a message
    data = load("sleepstudy")
    data["half"] = np.where(data["Days"] < 5, "early", "late")
    fit = bayesmix.lmer("Reaction ~ Days * C(half, contr.sum) + (1 | Subject)", data)
    with pytest.raises(BayesmixError, match="treatment contrasts"):
        bayesmix.anova(fit)


# ------------------------------------------------------------------------ glmer


@lru_cache(maxsize=None)
def glmer_fitted(case: str):
    spec = GLMER_CASES[case]
    if spec["data"] == "cbpp":
        data = load("cbpp")
    else:
        data = pd.read_csv(Path(__file__).parent / "reference" / f"{spec['data']}.csv",
                           dtype={"g": str})
    return bayesmix.glmer(spec["formula"], data, family=spec["family"])


@pytest.mark.parametrize("case", list(GLMER_CASES))
def test_glmer_profile_confint_matches_lme4(case):
    ref = table(GLMER_CASES[case]["confint_profile"][0])
    ours = glmer_fitted(case).confint()
    assert list(ours.index) == list(ref.index)
    width = (ref.iloc[:, 1] - ref.iloc[:, 0]).to_numpy()
    assert np.all(np.abs(ours.to_numpy() - ref.to_numpy()) <= 1e-3 * width[:, None]), (ours, ref)


@pytest.mark.parametrize("case", list(GLMER_CASES))
def test_glmer_wald_confint_matches_lme4(case):
    ref = table(GLMER_CASES[case]["confint_wald"])
    ours = glmer_fitted(case).confint(method="Wald")
    assert list(ours.index) == list(ref.index)
    np.testing.assert_array_equal(np.isnan(ours.to_numpy()), np.isnan(ref.to_numpy()))
    ok = ~np.isnan(ref.iloc[:, 0].to_numpy())
    o, r = ours.to_numpy()[ok], ref.to_numpy()[ok]
    # centres are the estimates; the half-widths are z * SE, and lme4's default SEs for glmer
    # come from a finite-difference Hessian that is 0.5-1.3% low on cbpp (see glmm_refs.R and
    # test_glmer.py), hence 2% there
    np.testing.assert_allclose(o.mean(axis=1), r.mean(axis=1), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.diff(o, axis=1), np.diff(r, axis=1), rtol=2e-2)


@pytest.mark.slow
def test_singular_fit_runs_at_the_boundary():
    """Smoke test, no R numbers (lme4's optimizer stops short on this singular fit, so its
    numbers are not a reference): every method runs at the boundary, the SDs estimated at zero
    get the lower profile limit 0 and the correlations there the whole range."""
    fit = bayesmix.lmer("extro ~ open + agree + social + (1 + open | school/class)",
                        load("lmmdata"))
    assert fit.is_singular()
    for ddf in ("Satterthwaite", "Kenward-Roger"):
        ct = fit.coef_table(ddf=ddf)
        assert np.all(np.isfinite(ct.to_numpy())) and np.all(ct["df"] > 1)
    ci = fit.confint(parm="theta_")
    assert ci.loc["sd_open|school", "2.5 %"] == 0.0
    assert ci.loc["cor_open.(Intercept)|school"].tolist() == [-1.0, 1.0]
    assert np.all(ci.iloc[:, 0] <= ci.iloc[:, 1])


def test_no_fixed_effects():
    data = load("sleepstudy")
    data["yc"] = data["Reaction"] - data["Reaction"].mean()
    fit = bayesmix.lmer("yc ~ 0 + (1 | Subject)", data)
    assert fit.coef_table().empty and bayesmix.anova(fit).empty
    assert list(fit.confint().index) == ["sd_(Intercept)|Subject", "sigma"]
