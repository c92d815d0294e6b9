"""The design stage of distributional models (bayesmix.design.dist): predictors, responses by
family support, and hostile input refused with the culprit named, before anything compiles.

References: the reference data sets of tests/reference/families (their columns are known: x,
g with 30-40 balanced levels), numpy constructions of the expected matrices, and the ordinal
coding rules of brms / ordinal::clmm (categories in their order, coded 1..K)."""
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.design.dist import (DIST_FAMILY_CODES, DistDesign, build_dist_design,
                                  dist_stan_data, needs_dist_design)
from bayesmix.errors import DataError, FamilyError, FormulaError

FAM = Path(__file__).parent / "reference" / "families"


def _csv(case):
    return pd.read_csv(FAM / f"{case}.csv")


def test_zero_inflated_with_group_terms_in_both_predictors():
    d = _csv("zero_inflated_poisson_zi_re")
    dd = build_dist_design(bm.bf("y ~ x + (1 | g)", zi="~ 1 + (1 | g)"), d,
                           "zero_inflated_poisson")
    assert isinstance(dd, DistDesign) and dd.n == len(d)
    assert [(p.dpar, p.link, p.X_names) for p in dd.predictors] == [
        ("mu", "log", ("(Intercept)", "x")), ("zi", "logit", ("(Intercept)",))]
    np.testing.assert_array_equal(dd.predictors[0].X[:, 1], d["x"].to_numpy())
    assert dd.term_predictor == (0, 1)
    data = dist_stan_data(dd)
    assert data["family"] == DIST_FAMILY_CODES["zero_inflated_poisson"] == 7
    assert data["D"] == 2 and data["dlink"] == [4, 1] and data["K_lp"] == [2, 1]
    assert data["K_all"] == 3 and data["X"].shape == (len(d), 3)
    assert data["lp_term"] == [1, 2] and data["l_term"] == [40, 40]
    # levels are the groups in sorted order, 1-based (R's factor())
    levels = sorted(d["g"].unique())
    np.testing.assert_array_equal(data["J"][0], [levels.index(v) + 1 for v in d["g"]])
    np.testing.assert_array_equal(data["Yi"], d["y"].to_numpy())


def test_unmodelled_parameters_are_intercept_only_predictors():
    dd = build_dist_design("y ~ x + (1 | g)", _csv("student"), "student")
    assert [(p.dpar, p.link, p.formula, p.modelled) for p in dd.predictors] == [
        ("mu", "identity", "x + (1 | g)", True), ("sigma", "log", "1", False),
        ("nu", "logm1", "1", False)]
    assert dist_stan_data(dd)["dlink"] == [5, 4, 8]
    assert needs_dist_design("y ~ x", "student")
    assert not needs_dist_design("y ~ x", "gaussian")
    assert needs_dist_design(bm.bf("y ~ x", sigma="~ x"), "gaussian")
    assert not needs_dist_design(bm.bf("y ~ x"), "gaussian")


def test_cumulative_response_and_no_intercept():
    d = _csv("cumulative_logit")
    dd = build_dist_design("y ~ x + (1 | g)", d, "cumulative")
    assert dd.categories == ("1", "2", "3", "4", "5")
    assert len(dd.predictors) == 1 and dd.predictors[0].X_names == ("x",)
    np.testing.assert_array_equal(dd.y, d["y"].to_numpy())
    # an ordered Categorical with its own order: codes follow the categories, not the labels
    d2 = d.assign(r=pd.Categorical(d["y"].map({1: "e", 2: "d", 3: "c", 4: "b", 5: "a"}),
                                   categories=list("edcba"), ordered=True))
    dd2 = build_dist_design("r ~ x + (1 | g)", d2, "cumulative")
    assert dd2.categories == tuple("edcba")
    np.testing.assert_array_equal(dd2.y, d["y"].to_numpy())
    # whole numbers that skip values are coded 1..K in their order
    d3 = d.assign(y=d["y"] * 10)
    assert build_dist_design("y ~ x", d3, "cumulative").categories == (
        "10", "20", "30", "40", "50")
    np.testing.assert_array_equal(build_dist_design("y ~ x", d3, "cumulative").y, d["y"])
    d4 = d2.assign(r=d2["r"].cat.add_categories(["z"]).cat.reorder_categories(
        list("edcbaz"), ordered=True))
    with pytest.warns(UserWarning, match="no rows in category z"):
        assert build_dist_design("r ~ x", d4, "cumulative").categories == tuple("edcba")


def test_beta_binomial_trials():
    d = _csv("beta_binomial")
    dd = build_dist_design("cbind(y, trials - y) ~ x + (1 | g)", d, "beta_binomial")
    np.testing.assert_array_equal(dd.trials, d["trials"])
    np.testing.assert_array_equal(dist_stan_data(dd)["trials"], d["trials"])
    with pytest.raises(DataError, match=r"successes out of trials: write it cbind"):
        build_dist_design("y ~ x", d, "beta_binomial")


@pytest.mark.parametrize("family, values, match", [
    ("beta", [0.2, 1.0, 0.5, 0.3], r"strictly between 0 and 1 \(found 1\)"),
    ("beta", [0.2, 0.0, 0.5, 0.3], r"strictly between 0 and 1 \(found 0\)"),
    ("lognormal", [1.0, -2.0, 3.0, 1.0], "must be positive"),
    ("zero_inflated_poisson", [1.0, 2.5, 0.0, 1.0], "non-negative whole numbers"),
    ("hurdle_negbinomial", [1.0, -1.0, 0.0, 1.0], "non-negative whole numbers"),
    ("cumulative", [1.5, 2.0, 3.0, 1.0], "whole numbers or an ordered pandas Categorical"),
    ("cumulative", [2.0, 2.0, 2.0, 2.0], "has 1 category"),
])
def test_bad_responses_name_the_family_and_column(family, values, match):
    d = pd.DataFrame({"y": values, "x": [1.0, 2.0, 3.0, 4.0], "g": list("aabb")})
    with pytest.raises(DataError, match=match):
        build_dist_design("y ~ x + (1 | g)", d, family)


def test_text_and_unordered_ordinal_responses_are_refused():
    d = pd.DataFrame({"y": list("abca"), "x": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(DataError, match="holds text; give it an order"):
        build_dist_design("y ~ x", d, "cumulative")
    d["y"] = pd.Categorical(d["y"])
    with pytest.raises(DataError, match="unordered categorical"):
        build_dist_design("y ~ x", d, "cumulative")


def test_hostile_and_wrong_formulas_fail_before_anything_runs():
    d = _csv("gaussian_sigma")
    with pytest.raises(FamilyError, match="family 'poisson' has no distributional parameter "
                                          "'sigma'"):
        bm.Model(bm.bf("y ~ x", sigma="~ x"), d.assign(y=1), family="poisson")
    with pytest.raises(FormulaError):
        bm.bf("y ~ x", sigma="~ __import__('os').system('true')")
    with pytest.raises(DataError, match=r"unknown column 'z' in the sigma formula"):
        build_dist_design(bm.bf("y ~ x", sigma="~ z"), d, "gaussian")
    with pytest.raises(FormulaError, match="only the main formula"):
        build_dist_design(bm.bf("y ~ x", sigma="~ offset(x)"), d, "gaussian")
    with pytest.raises(FormulaError, match="disc formula is not supported"):
        build_dist_design(bm.bf("y ~ x", disc="~ x"), _csv("cumulative_logit"), "cumulative")
    with pytest.raises(DataError, match="weights are not supported"):
        build_dist_design("y ~ x", d, "student", weights=np.ones(len(d)))
    with pytest.raises(FamilyError, match="no distributional parameters"):
        build_dist_design("y ~ x", d.assign(y=1), "poisson")


def test_missing_values_are_dropped_over_every_formula():
    d = _csv("gaussian_sigma")
    d = d.assign(w=np.cos(np.arange(len(d))))
    d.loc[[3, 10], "w"] = np.nan  # read by the sigma formula only
    with pytest.warns(UserWarning, match="dropped 2 of 600 rows with missing values in w"):
        dd = build_dist_design(bm.bf("y ~ x + (1 | g)", sigma="~ w"), d, "gaussian")
    assert dd.n == 598 and dd.dropped_na == 2
    assert 3 not in dd.data.index and dd.predictors[1].X.shape == (598, 2)


def test_model_front_door_builds_the_distributional_design():
    d = _csv("zero_inflated_poisson")
    m = bm.Model(bm.bf("y ~ x + (1 | g)", zi="~ 1"), d, family="zip")
    assert m.is_distributional and not m.is_lmm
    assert "zi ~ 1" in m.formula and "zero_inflated_poisson(log)" in repr(m)
    with pytest.raises(bm.BayesmixError, match="REML is not defined for distributional"):
        m.fit(method="reml")
    with pytest.raises(bm.BayesmixError, match="laplace\\(\\) is not available"):
        m.laplace()
    with pytest.raises(bm.BayesmixError, match="program='marginal' is not available"):
        m.sample(program="marginal")
    # bf() without parameter formulas on an lme4 family is the classic model
    plain = bm.Model(bm.bf("y ~ x + (1 | g)"), d, family="poisson")
    assert not plain.is_distributional and plain.formula == "y ~ x + (1 | g)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bm.Model("y ~ x + (1 | g)", _csv("lognormal"), family="lognormal")
