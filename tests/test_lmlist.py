"""lmlist: one lm per cell, equal to separate least-squares fits."""

import warnings

import numpy as np
import pandas as pd
import pytest

from bayesmix.datasets import load
from bayesmix.errors import BayesmixError, DataError
from bayesmix.lmlistfit import LmList, lmlist
from bayesmix.results.glm import GlmFit

FORMULA = "extro ~ open + agree + social"
TERMS = ["(Intercept)", "open", "agree", "social"]


@pytest.fixture(scope="module")
def lmmdata():
    return load("lmmdata")


@pytest.fixture(scope="module")
def cells(lmmdata):
    return lmlist(FORMULA, lmmdata, by=["school", "class"], data_name="lmmdata")


def _ols(sub):
    X = np.column_stack([np.ones(len(sub)), sub["open"], sub["agree"], sub["social"]])
    y = sub["extro"].to_numpy()
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    s2 = resid @ resid / (len(y) - 4)
    se = np.sqrt(np.diag(s2 * np.linalg.inv(X.T @ X)))
    return beta, se, np.sqrt(s2)


def test_24_cells_equal_separate_least_squares(cells, lmmdata):
    assert isinstance(cells, LmList) and len(cells) == 24
    schools = list(lmmdata["school"].cat.categories)
    classes = list(lmmdata["class"].cat.categories)
    assert list(cells.fits) == [(s, c) for s in schools for c in classes]  # school slowest
    coef = cells.coef()
    assert list(coef.columns) == TERMS and coef.index.names == ["school", "class"]
    for (school, klass), fit in cells.items():
        assert isinstance(fit, GlmFit)
        sub = lmmdata[(lmmdata["school"] == school) & (lmmdata["class"] == klass)]
        beta, se, sigma = _ols(sub)
        assert fit.nobs() == len(sub)
        np.testing.assert_allclose(coef.loc[(school, klass)].to_numpy(), beta, rtol=1e-8)
        np.testing.assert_allclose(fit.se().to_numpy(), se, rtol=1e-6)
        assert fit.sigma() == pytest.approx(sigma, rel=1e-8)


def test_tidy_coef_table(cells):
    tidy = cells.coef_table()
    assert list(tidy.columns) == ["school", "class", "term", "estimate", "std_error",
                                  "statistic", "p_value"]
    assert len(tidy) == 24 * 4
    row = tidy[(tidy["school"] == "III") & (tidy["class"] == "c") & (tidy["term"] == "open")]
    fit = cells[("III", "c")]
    assert row["estimate"].item() == pytest.approx(fit.fixef()["open"])
    assert row["std_error"].item() == pytest.approx(fit.se()["open"])
    assert list(tidy["school"].cat.categories) == ["I", "II", "III", "IV", "V", "VI"]


def test_lookup_and_printing(cells):
    assert cells["III:c"] is cells[("III", "c")]
    assert cells.labels[:3] == ["I:a", "I:b", "I:c"]
    with pytest.raises(KeyError, match="no fit for cell"):
        cells["VII:a"]
    text = str(cells)
    assert text.startswith("Call: lmList(formula = extro ~ open + agree + social | school:class, "
                           "data = lmmdata)\nCoefficients:")
    assert "Degrees of freedom: 1200 total; 1104 residual" in text
    assert cells._repr_html_().startswith("<pre")
    dev = sum(f.deviance() for f in cells.fits.values())
    assert cells.pooled_sigma() == pytest.approx(np.sqrt(dev / 1104))


def test_lme4_bar_syntax(cells, lmmdata):
    same = lmlist(FORMULA + " | school:class", lmmdata)
    pd.testing.assert_frame_equal(same.coef(), cells.coef())
    by_school = lmlist(FORMULA + " | school", lmmdata)
    assert list(by_school.fits) == ["I", "II", "III", "IV", "V", "VI"]
    assert by_school.coef().index.name == "school"
    beta, _, _ = _ols(lmmdata[lmmdata["school"] == "IV"])
    np.testing.assert_allclose(by_school["IV"].fixef().to_numpy(), beta, rtol=1e-8)


def test_empty_cells_skipped_and_failures_recorded(lmmdata):
    sub = lmmdata[~((lmmdata["school"] == "II") & (lmmdata["class"] == "b"))]
    fits = lmlist(FORMULA, sub, by=["school", "class"])
    assert len(fits) == 23 and ("II", "b") not in fits.fits
    tiny = pd.concat([lmmdata[lmmdata["school"] == "I"],
                      lmmdata[lmmdata["school"] == "II"].iloc[:3]])
    # school II's three rows all have class a: its fit fails, recorded and warned
    with pytest.warns(UserWarning, match="cell II: fit failed: factor 'class'"):
        res = lmlist("extro ~ open + agree + social + class", tiny, by="school")
    assert list(res.fits) == ["I"] and list(res.errors) == ["II"]
    assert "Failed cells: II" in str(res)
    # three rows for four columns: one aliased column, no residual df
    with pytest.warns(UserWarning, match="cell II: .*rank deficient.*social"):
        res = lmlist(FORMULA, tiny, by="school")
    assert res["II"].aliased == ("social",) and res["II"].df_residual() == 0
    assert np.isnan(res.coef().loc["II", "social"])
    assert "ALL 3 residuals are 0" in str(res["II"].summary())


def test_binomial_cells():
    cbpp = load("cbpp")
    fits = lmlist("cbind(incidence, size - incidence) ~ 1 | period", cbpp, family="binomial")
    for period, fit in fits.items():
        sub = cbpp[cbpp["period"] == period]
        p = sub["incidence"].sum() / sub["size"].sum()
        assert fit.fixef().iloc[0] == pytest.approx(np.log(p / (1 - p)), rel=1e-8)
        assert fit.fitter == "glm"


def test_errors(lmmdata):
    with pytest.raises(DataError, match="unknown grouping column 'schol'"):
        lmlist(FORMULA, lmmdata, by="schol")
    with pytest.raises(BayesmixError, match="either"):
        lmlist(FORMULA + " | school", lmmdata, by="class")
    with pytest.raises(BayesmixError, match="grouping variables"):
        lmlist(FORMULA, lmmdata)
