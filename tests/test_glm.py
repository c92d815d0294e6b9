"""lm/glm fits against R: the school tutorial's lm/glm numbers in
tests/reference/lme4_refs.json (glm_cases), further R 4.2.2 fits of the
binomial, bernoulli, poisson, Gamma and weighted gaussian families
(tests/reference/glm_refs.json, written by `Rscript tests/reference/glm_refs.R`), and independent
Newton-Raphson maximum likelihood for the binomial and poisson fits."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix
from bayesmix import datasets
from bayesmix.design import build_design
from bayesmix.errors import BayesmixError, FamilyError
from bayesmix.families import get_family
from bayesmix.glmfit import fit_glm
from bayesmix.results.format import Display
from bayesmix.results.glm import GlmFit

REF = json.loads((Path(__file__).parent / "reference" / "lme4_refs.json").read_text())["glm_cases"]
LMM_KEYS = [k for k, v in REF.items() if isinstance(v, dict) and "coef" in v]

# formula, data set, family, link, weights column, fitter
R_CASES = {
    "binomial": ("cbind(incidence, size - incidence) ~ period", "cbpp", "binomial", None, None, "glm"),
    "binomial_probit": ("cbind(incidence, size - incidence) ~ period", "cbpp", "binomial", "probit",
                        None, "glm"),
    "bernoulli": ("any ~ period + size", "cbpp", "bernoulli", None, None, "glm"),
    "bernoulli_weighted": ("any ~ period + size", "cbpp", "binomial", None, "w", "glm"),
    "poisson_offset": ("incidence ~ period + offset(log(size))", "cbpp", "poisson", None, None, "glm"),
    "poisson_noint": ("incidence ~ 0 + period", "cbpp", "poisson", None, None, "glm"),
    "gamma_log": ("extro ~ open + agree + school", "lmmdata", "Gamma", "log", None, "glm"),
    "gamma_inverse": ("size ~ period", "cbpp", "Gamma", None, None, "glm"),
    "lm_weighted": ("incidence ~ period + size", "cbpp", "gaussian", None, "w", "lm"),
    "glm_gauss_weighted": ("incidence ~ period + size", "cbpp", "gaussian", None, "w", "glm"),
    "lm_noint": ("incidence ~ 0 + size", "cbpp", "gaussian", None, None, "lm"),
}

# R's numbers for R_CASES: `Rscript tests/reference/glm_refs.R` (from the repository root)
# fits each case with the R call in that script and writes glm_refs.json.
GLM_REFS = json.loads((Path(__file__).parent / "reference" / "glm_refs.json").read_text())
R_GLM = GLM_REFS["cases"]
R_SUMMARY_OLSEXAMP = GLM_REFS["summaries"]["OLSexamp"]
R_CONFINT_OLSEXAMP = GLM_REFS["confint_OLSexamp"]


@pytest.fixture(scope="module")
def data():
    cbpp = datasets.load("cbpp")
    cbpp["any"] = (cbpp["incidence"] > 0).astype(int)
    cbpp["w"] = (np.arange(1, len(cbpp) + 1) % 3) + 0.5
    return {"cbpp": cbpp, "lmmdata": datasets.load("lmmdata")}


def fit(formula, df, family="gaussian", link=None, weights=None, fitter=None, data_name=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rank-deficiency notes
        design = build_design(formula, df, family=get_family(family, link), weights=weights)
    return fit_glm(design, fitter=fitter, data_name=data_name)


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


# ---------------------------------------------------------------- the tutorial's fits


@pytest.mark.parametrize("key", LMM_KEYS)
def test_lmmdata_reference(key, data):
    ref = REF[key]
    fitter = ref.get("fitter", "glm")
    f = fit(ref["formula"], data["lmmdata"], fitter=fitter)
    assert isinstance(f, GlmFit) and f.fitter == fitter
    coef = f.coef()
    for name, value in ref["coef"].items():
        if value is None:
            assert np.isnan(coef[name]) and name in f.aliased
        else:
            assert rel(coef[name], value) < 1e-8, name
    assert sorted(f.aliased) == sorted(ref.get("aliased_coefs", []))
    table = f.coef_table()
    assert list(table.columns) == ref["coef_table"]["columns"]
    for name, row in ref["coef_table"]["rows"].items():
        est, se, t, p = row
        assert rel(table.loc[name, "Std. Error"], se) < 1e-6, name
        assert rel(table.loc[name, "t value"], t) < 1e-6, name
        assert abs(table.loc[name, "Pr(>|t|)"] - p) <= 1e-6 * max(p, 1e-300), name
    if "se" in ref:
        assert rel(f.se()[list(ref["se"])], list(ref["se"].values())) < 1e-6
    for attr, method in [("AIC", f.aic), ("BIC", f.bic), ("logLik", f.loglik),
                         ("deviance", f.deviance), ("null_deviance", f.null_deviance),
                         ("sigma", f.sigma), ("r_squared", f.r_squared),
                         ("adj_r_squared", f.adj_r_squared), ("dispersion", f.dispersion)]:
        if attr in ref:
            assert abs(method() - ref[attr]) <= 1e-6 * abs(ref[attr]) + 1e-12, attr
    if "df_residual" in ref:
        assert f.df_residual() == ref["df_residual"]
    if "logLik_df" in ref:
        assert f.df() == ref["logLik_df"]
    if "fstatistic" in ref:
        fs = f.fstatistic()
        assert rel(fs["value"], ref["fstatistic"]["value"]) < 1e-6
        assert (fs["numdf"], fs["dendf"]) == (ref["fstatistic"]["numdf"], ref["fstatistic"]["dendf"])
        assert fs["p_value"] == pytest.approx(stats.f.sf(fs["value"], fs["numdf"], fs["dendf"]))
    assert f.nobs() == 1200


def test_aliased_coefficient_printed_as_na(data):
    f = fit(REF["MLexamp.4"]["formula"], data["lmmdata"], fitter="glm")
    assert f.aliased == ("schoolVI:classd",)
    assert "schoolVI:classd" not in f.fixef().index
    assert np.isnan(f.coef()["schoolVI:classd"])
    assert len(f.coef()) == len(f.fixef()) + 1
    text = str(f.summary())
    assert "Coefficients: (1 not defined because of singularities)" in text
    assert "schoolVI:classd          NA         NA       NA       NA" in text


def test_front_door_lm(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = bayesmix.lm("extro ~ open + agree + social", data["lmmdata"])
    assert isinstance(f, GlmFit) and f.fitter == "lm"
    assert rel(f.fixef().to_numpy(), [REF["OLSexamp"]["coef"][n] for n in f.fixef().index]) < 1e-8


def test_lm_summary_prints_like_r(data):
    f = fit("extro ~ open + agree + social", data["lmmdata"], fitter="lm", data_name="lmmdata")
    assert str(f.summary()) == R_SUMMARY_OLSEXAMP
    assert f.summary()._repr_html_().startswith("<pre")
    assert rel(f.confint().to_numpy(), R_CONFINT_OLSEXAMP) < 1e-6  # R printed 8 digits
    assert list(f.confint().columns) == ["2.5 %", "97.5 %"]


def test_display_lm_and_glm(data):
    f = fit("extro ~ open + agree + social", data["lmmdata"], fitter="lm", data_name="lmmdata")
    d = f.display()
    assert isinstance(d, Display)
    lines = str(d).splitlines()
    assert lines[0] == "lm(formula = extro ~ open + agree + social, data = lmmdata)"
    assert lines[1].split() == ["coef.est", "coef.se"]
    assert lines[2].split() == ["(Intercept)", "60.39", "3.08"]
    assert lines[-3:] == ["---", "n = 1200, k = 4", "residual sd = 10.13, R-Squared = 0.00"]
    assert d._repr_html_().startswith("<pre")

    g = fit("extro ~ open + agree + social", data["lmmdata"], fitter="glm")
    tail = str(g.display()).splitlines()[-5:]
    assert tail == ["---", "  n = 1200, k = 4",
                    "  residual deviance = 122848.3, null deviance = 123106.9 (difference = 258.7)",
                    "  overdispersion parameter = 102.7",
                    "  residual sd is sqrt(overdispersion) = 10.13"]

    b = fit(*R_CASES["binomial"][:1], data["cbpp"], family="binomial")
    tail = str(b.display()).splitlines()
    assert tail[0] == "glm(formula = cbind(incidence, size - incidence) ~ period, family = binomial)"
    assert tail[-2:] == ["  n = 56, k = 4",
                         "  residual deviance = 114.1, null deviance = 154.8 (difference = 40.7)"]


# ---------------------------------------------------------------- other families vs R


def _case(key, data):
    formula, dname, family, link, weights, fitter = R_CASES[key]
    return fit(formula, data[dname], family, link, weights, fitter, data_name=dname)


@pytest.mark.parametrize("key", list(R_CASES))
def test_against_r(key, data):
    ref = R_GLM[key]
    f = _case(key, data)
    assert list(f.coef().index) == list(ref["coef"])
    assert rel(f.coef().to_numpy(), list(ref["coef"].values())) < 1e-8
    table = f.coef_table()
    assert rel(table["Std. Error"], ref["se"]) < 1e-6
    assert rel(table.iloc[:, 2], ref["stat"]) < 1e-6
    assert rel(table.iloc[:, 3], ref["p"]) < 1e-5
    assert table.columns[2] == ("z value" if key.startswith(("binom", "bern", "poisson"))
                                else "t value")
    for attr, method in [("logLik", f.loglik), ("AIC", f.aic), ("BIC", f.bic),
                         ("deviance", f.deviance)]:
        assert rel(method(), ref[attr]) < 1e-6, attr
    assert f.df_residual() == ref["df_residual"] and f.nobs() == ref["nobs"]
    assert rel(f.fitted()[:5], ref["fitted_first5"]) < 1e-6
    assert rel(f.residuals()[:5], ref["resid_first5"]) < 1e-6
    assert rel(f.residuals("pearson")[:5], ref["pearson_first5"]) < 1e-6
    assert rel(f.confint().to_numpy(), ref["confint"]) < 1e-6
    if "null_deviance" in ref:
        assert rel(f.null_deviance(), ref["null_deviance"]) < 1e-6
        assert rel(f.dispersion(), ref["dispersion"]) < 1e-6
        assert f.iterations == ref["iter"]
    if "sigma" in ref:
        assert rel(f.sigma(), ref["sigma"]) < 1e-6
        assert rel(f.r_squared(), ref["r_squared"]) < 1e-6
        assert rel(f.adj_r_squared(), ref["adj_r_squared"]) < 1e-6
        assert rel(f.fstatistic()["value"], ref["F"]) < 1e-6


def _after_call(text):
    lines = text.split("\n")
    i = lines.index("Call:") + 1
    while lines[i] != "":
        i += 1
    return "\n".join(lines[i:])


def test_glm_and_weighted_lm_summaries_print_like_r(data):
    # R's Call: line names its own data object; the rest must match R character for character
    for key in ("binomial", "lm_weighted"):
        ours = _after_call(str(_case(key, data).summary()))
        assert ours == _after_call(GLM_REFS["summaries"][key]), key


# ---------------------------------------------------------------- independent ML


def _newton(X, loglik_grad_hess, beta0, tol=1e-13):
    beta = beta0.copy()
    for _ in range(100):
        g, H = loglik_grad_hess(beta)
        step = np.linalg.solve(H, g)
        beta = beta - step
        if np.max(np.abs(step)) < tol:
            break
    g, H = loglik_grad_hess(beta)
    return beta, np.sqrt(np.diag(np.linalg.inv(-H)))


def test_binomial_matches_newton_raphson(data):
    cbpp = data["cbpp"]
    X = np.column_stack([np.ones(len(cbpp))] + [(cbpp["period"] == p).to_numpy(float)
                                               for p in ["2", "3", "4"]])
    k, n = cbpp["incidence"].to_numpy(float), cbpp["size"].to_numpy(float)

    def gh(beta):
        p = 1 / (1 + np.exp(-X @ beta))
        return X.T @ (k - n * p), -(X * (n * p * (1 - p))[:, None]).T @ X

    beta, se = _newton(X, gh, np.zeros(4))
    f = _case("binomial", data)
    assert rel(f.fixef().to_numpy(), beta) < 1e-8
    assert rel(f.se().to_numpy(), se) < 1e-6
    p = 1 / (1 + np.exp(-X @ beta))
    ll = stats.binom.logpmf(k, n, p).sum()
    assert f.loglik() == pytest.approx(ll, rel=1e-10)
    assert f.aic() == pytest.approx(-2 * ll + 8, rel=1e-10)
    sat = stats.binom.logpmf(k, n, k / n).sum()
    assert f.deviance() == pytest.approx(2 * (sat - ll), rel=1e-9)
    pbar = k.sum() / n.sum()
    assert f.null_deviance() == pytest.approx(2 * (sat - stats.binom.logpmf(k, n, pbar).sum()),
                                              rel=1e-9)
    assert np.allclose(f.predict(type="response"), p) and np.allclose(f.predict(), X @ beta)


def test_poisson_with_offset_matches_newton_raphson(data):
    cbpp = data["cbpp"]
    X = np.column_stack([np.ones(len(cbpp))] + [(cbpp["period"] == p).to_numpy(float)
                                               for p in ["2", "3", "4"]])
    y, off = cbpp["incidence"].to_numpy(float), np.log(cbpp["size"].to_numpy(float))

    def gh(beta):
        mu = np.exp(X @ beta + off)
        return X.T @ (y - mu), -(X * mu[:, None]).T @ X

    beta, se = _newton(X, gh, np.zeros(4))
    f = _case("poisson_offset", data)
    assert rel(f.fixef().to_numpy(), beta) < 1e-8
    assert rel(f.se().to_numpy(), se) < 1e-6
    mu = np.exp(X @ beta + off)
    assert f.loglik() == pytest.approx(stats.poisson.logpmf(y, mu).sum(), rel=1e-10)
    # null model with an offset: intercept-only refit, as R's glm()
    b0 = np.log(y.sum() / np.exp(off).sum())
    mu0 = np.exp(b0 + off)
    sat = stats.poisson.logpmf(y, y).sum()
    assert f.null_deviance() == pytest.approx(2 * (sat - stats.poisson.logpmf(y, mu0).sum()),
                                              rel=1e-9)


# ---------------------------------------------------------------- accessors


def test_predict_newdata_and_se(data):
    cbpp = data["cbpp"]
    f = _case("binomial", data)
    new = cbpp.iloc[[0, 1, 2, 3]]
    assert np.allclose(f.predict(new), f.predict()[:4])
    assert np.allclose(f.predict(new, type="response"), f.fitted()[:4])
    pred, se = f.predict(new, se_fit=True)
    X = f.design.X[:4]
    assert np.allclose(se, np.sqrt(np.einsum("ij,jk,ik->i", X, f.vcov().to_numpy(), X)))
    po = _case("poisson_offset", data)
    assert np.allclose(po.predict(cbpp.iloc[:5], type="response"), po.fitted()[:5])
    with pytest.raises(BayesmixError, match="type"):
        f.predict(type="probability")


def test_simulate(data):
    b = _case("binomial", data)
    s1, s2 = b.simulate(3, seed=1), b.simulate(3, seed=1)
    assert s1.shape == (3, 56) and np.array_equal(s1, s2)
    assert np.all(s1 <= data["cbpp"]["size"].to_numpy()) and np.all(s1 == np.round(s1))
    g = fit("extro ~ open + agree + social + school", data["lmmdata"])
    sims = g.simulate(200, seed=2)
    assert sims.shape == (200, 1200)
    assert np.std(sims - g.fitted(), axis=None) == pytest.approx(g.sigma(), rel=0.01)
    assert np.all(_case("poisson_offset", data).simulate(2, seed=3) >= 0)


def test_zero_weight_rows_are_left_out(data):
    cbpp = data["cbpp"].copy()
    cbpp["w0"] = 1.0
    cbpp.loc[cbpp.index[:3], "w0"] = 0.0
    full = fit("incidence ~ period + size", cbpp, weights="w0", fitter="lm")
    sub = fit("incidence ~ period + size", cbpp.iloc[3:], fitter="lm")
    assert np.allclose(full.fixef(), sub.fixef(), rtol=1e-10)
    assert full.nobs() == sub.nobs() == 53 and full.df_residual() == sub.df_residual()
    for m in ("loglik", "aic", "bic", "sigma", "r_squared", "adj_r_squared"):
        assert getattr(full, m)() == pytest.approx(getattr(sub, m)(), rel=1e-10), m


def test_vcov_and_methods_shapes(data):
    f = _case("gamma_log", data)
    V = f.vcov()
    assert V.shape == (8, 8) and np.allclose(V, V.T)
    assert np.allclose(np.sqrt(np.diag(V)), f.coef_table()["Std. Error"])
    assert f.df() == 9  # coefficients + dispersion
    with pytest.raises(BayesmixError, match="R-squared"):
        f.r_squared()
    assert "GlmFit glm Gamma(log)" in repr(f)


def test_errors(data):
    with pytest.raises(BayesmixError, match="lm is gaussian"):
        fit(*R_CASES["binomial"][:1], data["cbpp"], family="binomial", fitter="lm")
    with pytest.raises(FamilyError, match="negbinomial"):
        fit("incidence ~ period", data["cbpp"], family="negbinomial")
