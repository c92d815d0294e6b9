"""build_design against lme4's reference fits: X columns and names, grouping
factors, level order, term order, and predictions rebuilt through new_data()."""
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesmix.datasets import load, names
from bayesmix.design import Design, build_design
from bayesmix.errors import DataError
from bayesmix.formula import parse_formula

REFS = json.loads((Path(__file__).parent / "reference" / "lme4_refs.json").read_text())
CASES = REFS["cases"]
GLM = {k: v for k, v in REFS["glm_cases"].items() if isinstance(v, dict) and "coef" in v}


def _dataset(case):
    return Path(case["data_file"]).stem


@pytest.fixture(scope="module")
def designs():
    return {k: build_design(c["formula"], load(_dataset(c)), family=c["family"]) for k, c in CASES.items()}


SALAMANDERS = json.loads((Path(__file__).parent / "reference" / "salamanders"
                          / "salamanders_zip.json").read_text())


def test_datasets_match_reference_levels():
    assert set(names()) == {Path(k).stem for k in REFS["data"]} | {"Salamanders"}
    sal = load("Salamanders")  # glmmTMB's levels (tests/reference/salamanders/salamanders.R)
    assert len(sal) == SALAMANDERS["nobs"]
    for col, levels in SALAMANDERS["levels"].items():
        assert list(sal[col].cat.categories) == levels, col
    for name in set(names()) - {"Salamanders"}:
        df, ref = load(name), REFS["data"][f"{name}.csv"]
        assert len(df) == ref["nrow"]
        for col, spec in ref["columns"].items():
            if "levels" in spec:
                assert list(df[col].cat.categories) == spec["levels"], (name, col)
                assert df[col].cat.ordered == (spec["type"] == "ordered")
            else:
                assert pd.api.types.is_numeric_dtype(df[col]), (name, col)


def test_unknown_dataset():
    with pytest.raises(DataError, match="sleepstudy"):
        load("sleepstdy")


@pytest.mark.parametrize("key", list(CASES))
def test_x_names_and_groups(designs, key):
    d, res = designs[key], CASES[key]["results"]
    assert isinstance(d, Design)
    assert list(d.X_names) == res["X_colnames"]
    assert d.X.shape == (res["nobs"], len(res["X_colnames"]))
    assert {t.group: t.n_levels for t in d.terms} == res["ngrps"]
    assert d.n == res["nobs"] and d.dropped_na == 0 and d.dropped_columns == ()


@pytest.mark.parametrize("key", list(CASES))
def test_term_order_and_coef_names(designs, key):
    # varcorr_table lists lme4's terms in order; `||` makes "Subject", "Subject.1"
    d, res = designs[key], CASES[key]["results"]
    groups = {t.group for t in d.terms}
    ref = [
        (row["grp"] if row["grp"] in groups else row["grp"].rsplit(".", 1)[0], row["var1"])
        for row in res["varcorr_table"]
        if row["grp"] != "Residual" and row["var2"] is None
    ]
    assert [(t.group, c) for t in d.terms for c in t.coef_names] == ref


@pytest.mark.parametrize("key", list(CASES))
def test_ranef_levels(designs, key):
    d, ranef = designs[key], CASES[key]["results"]["ranef"]
    checked = 0
    for t in d.terms:
        if "levels" in ranef.get(t.group, {}):
            assert list(t.levels) == ranef[t.group]["levels"]
            checked += 1
    assert checked or key.startswith("insteval")


@pytest.mark.parametrize("key", [k for k in CASES if not k.startswith("insteval")])
def test_predictions_rebuilt_from_reference(designs, key):
    """X_new beta + sum_k Z_new b_k[index] on the first rows equals lme4's predict()."""
    d, case = designs[key], CASES[key]
    res = case["results"]
    new = d.new_data(load(_dataset(case)).head(5))
    beta = np.array([res["fixef"][n] for n in d.X_names])
    eta_fixed = new.X @ beta
    eta = eta_fixed.copy()
    for t, nt in zip(d.terms, new.terms):
        values = res["ranef"][t.group]["values"]
        b = np.column_stack([values[c] for c in t.coef_names])  # levels x p
        eta += np.sum(nt.Z * b[nt.index], axis=1)
    pred = res["predict_first5"]
    with_re = pred.get("re_form_NULL", pred.get("re_form_NULL_link"))
    without = pred.get("re_form_NA", pred.get("re_form_NA_link"))
    np.testing.assert_allclose(eta_fixed, without, rtol=1e-9)
    np.testing.assert_allclose(eta, with_re, rtol=1e-8)


def test_insteval_population_prediction(designs):
    d, res = designs["insteval_REML"], CASES["insteval_REML"]["results"]
    new = d.new_data(load("InstEval").head(5), random=False)
    assert new.terms == ()
    beta = np.array([res["fixef"][n] for n in d.X_names])
    np.testing.assert_allclose(new.X @ beta, res["predict_first5"]["re_form_NA"], rtol=1e-9)


def test_cbpp_response_and_trials(designs):
    d, cbpp = designs["cbpp_binomial"], load("cbpp")
    np.testing.assert_array_equal(d.y, cbpp["incidence"])
    np.testing.assert_array_equal(d.trials, cbpp["size"])
    assert d.family.name == "binomial" and d.family.link == "logit"
    assert d.weights is None and d.offset is None


def test_gaussian_has_no_trials(designs):
    d = designs["sleepstudy_slope_REML"]
    assert d.trials is None
    np.testing.assert_array_equal(d.y, load("sleepstudy")["Reaction"])


@pytest.mark.parametrize("key", ["MLexamp", "MLexamp.2", "MLexamp.3", "MLexamp.4"])
def test_tutorial_fixed_effect_names(key):
    case = GLM[key]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = build_design(case["formula"], load("lmmdata"))
    names_all = d.fixed_spec.column_names
    assert list(names_all) == list(case["coef"])  # R's names and order, aliased ones included
    assert list(d.dropped_columns) == case["aliased_coefs"]
    assert bool(caught) == bool(case["aliased_coefs"])


def test_school_times_class_without_intercept():
    d = build_design("extro ~ school*class - 1", load("lmmdata"))
    schools = ["I", "II", "III", "IV", "V", "VI"]
    expected = (
        [f"school{s}" for s in schools]
        + [f"class{c}" for c in "bcd"]
        + [f"school{s}:class{c}" for c in "bcd" for s in schools[1:]]
    )
    assert list(d.X_names) == expected
    assert d.dropped_columns == ()


def test_x_values_by_hand():
    df = load("lmmdata")
    d = build_design("extro ~ open + school + school:open + (1|class)", df)
    assert d.X_names[:3] == ("(Intercept)", "open", "schoolII")
    rows = [0, 250, 777, 1199]
    for i in rows:
        school, open_ = df["school"].iloc[i], df["open"].iloc[i]
        dummies = [float(school == s) for s in ["II", "III", "IV", "V", "VI"]]
        expected = [1.0, open_, *dummies, *(open_ * np.array(dummies))]
        np.testing.assert_allclose(d.X[i], expected)
    assert d.X_names[7:] == tuple(f"open:school{s}" for s in ["II", "III", "IV", "V", "VI"])


def test_z_and_index_by_hand():
    df = load("sleepstudy")
    d = build_design("Reaction ~ Days + (Days | Subject)", df)
    (t,) = d.terms
    assert t.coef_names == ("(Intercept)", "Days") and t.correlated and t.p == 2
    np.testing.assert_array_equal(t.Z, np.column_stack([np.ones(180), df["Days"]]))
    assert t.index.dtype == np.int64
    np.testing.assert_array_equal(np.array(t.levels)[t.index], df["Subject"].astype(str))
    assert d.q == 36 and d.p == 2


def test_nested_interaction_levels_and_index():
    df = load("lmmdata")
    d = build_design("extro ~ 1 + (1 | school/class)", df)
    inner = d.terms[0]
    assert inner.group == "class:school" and inner.levels[:3] == ("a:I", "a:II", "a:III")
    labels = df["class"].astype(str) + ":" + df["school"].astype(str)
    np.testing.assert_array_equal(np.array(inner.levels)[inner.index], labels)
    d2 = build_design("extro ~ 1 + (1 | school:class)", df)
    assert d2.terms[0].levels[:5] == ("I:a", "I:b", "I:c", "I:d", "II:a")


def test_uncorrelated_terms():
    d = build_design("Reaction ~ Days + (Days || Subject)", load("sleepstudy"))
    assert [(t.group, t.coef_names, t.correlated) for t in d.terms] == [
        ("Subject", ("(Intercept)",), False),
        ("Subject", ("Days",), False),
    ]


def test_term_order_reverses_ties_like_lme4():
    # lme4's mkReTrms reorders with rev(order(nl)) when needed, which puts
    # tied terms in reverse order; without an increase it keeps the order
    rng = np.random.default_rng(1)
    df = pd.DataFrame({
        "y": rng.normal(size=60),
        "a": np.repeat(list("abcd"), 15),
        "b": np.tile(list("wxyz"), 15),
        "c": np.tile([f"L{i:02d}" for i in range(10)], 6),
    })
    d = build_design("y ~ (1|a) + (1|b) + (1|c)", df)
    assert [t.group for t in d.terms] == ["c", "b", "a"]
    d = build_design("y ~ (1|c) + (1|a) + (1|b)", df)
    assert [t.group for t in d.terms] == ["c", "a", "b"]


def test_numeric_grouping_column_ordered_numerically():
    df = load("cbpp")
    df["herd"] = df["herd"].astype(int)
    d = build_design("cbind(incidence, size - incidence) ~ period + (1|herd)", df, family="binomial")
    assert d.terms[0].levels == tuple(str(i) for i in range(1, 16))


def test_string_columns_sorted_like_factor():
    df = load("lmmdata")
    rename = {"I": "z", "II": "b", "III": "c", "IV": "d", "V": "e", "VI": "a"}
    df["school"] = df["school"].astype(str).map(rename)
    d = build_design("extro ~ school + (1|school)", df)
    assert d.X_names[1:] == ("schoolb", "schoolc", "schoold", "schoole", "schoolz")
    assert d.terms[0].levels == ("a", "b", "c", "d", "e", "z")


def test_ordered_factor_uses_polynomial_contrasts():
    df = load("InstEval").head(3000)
    d = build_design("y ~ studage + (1|d)", df)
    assert d.X_names == ("(Intercept)", "studage.L", "studage.Q", "studage.C")
    # R's contr.poly(4)[, ".L"]
    linear = {"2": -0.670820393249937, "4": -0.223606797749979,
              "6": 0.223606797749979, "8": 0.670820393249937}
    np.testing.assert_allclose(d.X[:, 1], df["studage"].astype(str).map(linear))


def test_transforms_and_new_data_reuse_training_state():
    df = load("lmmdata")
    d = build_design("extro ~ scale(open) + poly(agree, 2) + class + (1 + scale(open) | school)", df)
    assert d.X_names == (
        "(Intercept)", "scale(open)", "poly(agree, 2)1", "poly(agree, 2)2", "classb", "classc", "classd"
    )
    np.testing.assert_allclose(d.X[:, 1], (df["open"] - df["open"].mean()) / df["open"].std())
    sub = df.iloc[[5, 700, 1100]]
    new = d.new_data(sub)
    np.testing.assert_allclose(new.X, d.X[[5, 700, 1100]])
    np.testing.assert_allclose(new.terms[0].Z, d.terms[0].Z[[5, 700, 1100]])
    np.testing.assert_array_equal(new.terms[0].index, d.terms[0].index[[5, 700, 1100]])


def test_new_levels():
    df = load("sleepstudy")
    d = build_design("Reaction ~ Days + (1 | Subject)", df)
    new = pd.DataFrame({"Days": [1.0, 2.0], "Subject": ["308", "999"]})
    with pytest.raises(DataError, match=r"'999'.*'Subject'.*allow_new_levels=True"):
        d.new_data(new)
    out = d.new_data(new, allow_new_levels=True)
    assert out.terms[0].index.tolist() == [0, -1]
    np.testing.assert_allclose(out.X, [[1, 1], [1, 2]])


def test_new_data_unseen_fixed_level_and_missing_column():
    d = build_design("extro ~ class + (1 | school)", load("lmmdata"))
    with pytest.raises(DataError, match=r"'class'.*e"):
        d.new_data(pd.DataFrame({"class": ["a", "e"], "school": ["I", "II"]}))
    with pytest.raises(DataError, match="school"):
        d.new_data(pd.DataFrame({"class": ["a"]}))
    assert d.new_data(pd.DataFrame({"class": ["b"]}), random=False).X.tolist() == [[1, 1, 0, 0]]


def test_offset_and_weights():
    df = load("cbpp")
    d = build_design(
        "incidence ~ period + offset(log(size)) + (1|herd)", df, family="poisson", weights="n_obs"
    )
    np.testing.assert_allclose(d.offset, np.log(df["size"]))
    np.testing.assert_allclose(d.weights, df["n_obs"])
    d2 = build_design("incidence ~ period + (1|herd)", df, family="poisson", weights=np.ones(len(df)))
    assert d2.offset is None and d2.weights.shape == (56,)
    new = d.new_data(df.head(2))
    np.testing.assert_allclose(new.offset, np.log(df["size"].head(2)))


def test_bernoulli_and_factor_responses():
    df = load("cbpp")
    df["any"] = df["incidence"] > 0
    d = build_design("any ~ period + (1|herd)", df, family="bernoulli")
    np.testing.assert_array_equal(d.y, (df["incidence"] > 0).astype(float))
    assert d.trials is None
    df["status"] = np.where(df["incidence"] > 0, "sick", "healthy")  # first level = failure
    d = build_design("status ~ period + (1|herd)", df, family="binomial")
    np.testing.assert_array_equal(d.y, (df["incidence"] > 0).astype(float))
    np.testing.assert_array_equal(d.trials, np.ones(56))


def test_parsed_formula_accepted_and_summary():
    pf = parse_formula("Reaction ~ Days + (Days | Subject)")
    d = build_design(pf, load("sleepstudy"))
    assert d.formula is pf
    text = str(d)
    parts = ["Reaction ~ Days", "gaussian(identity)", "n = 180", "(Intercept), Days", "18 levels"]
    for part in parts:
        assert part in text
    assert repr(d) == text
