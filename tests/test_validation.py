"""Bad input fails early with a bayesmix error naming the culprit."""
import warnings

import numpy as np
import pandas as pd
import pytest

from bayesmix.datasets import load
from bayesmix.design import build_design
from bayesmix.errors import BayesmixError, DataError, FamilyError, FormulaError
from bayesmix.families import Family, get_family


@pytest.fixture
def sleep():
    return load("sleepstudy")


# ---------------------------------------------------------------- families


@pytest.mark.parametrize(
    "name, link",
    [("gaussian", "identity"), ("binomial", "logit"), ("bernoulli", "logit"),
     ("poisson", "log"), ("negbinomial", "log"), ("Gamma", "inverse")],
)
def test_default_links(name, link):
    assert get_family(name) == Family(name, link)


@pytest.mark.parametrize(
    "alias, name",
    [("Gamma", "Gamma"), ("gamma", "Gamma"), ("GAUSSIAN", "gaussian"), ("neg_binomial", "negbinomial"),
     ("negbinomial", "negbinomial"), ("nb", "negbinomial"), ("Poisson", "poisson")],
)
def test_family_aliases(alias, name):
    assert get_family(alias).name == name


def test_family_links():
    assert get_family("binomial", "probit") == Family("binomial", "probit")
    assert get_family("Gamma", "log").link == "log"
    assert get_family(Family("poisson", "log"), "sqrt") == Family("poisson", "sqrt")
    assert str(get_family("poisson")) == "poisson(log)"


def test_unknown_family_names_choices():
    choices = "gaussian, binomial, bernoulli, poisson, negbinomial, Gamma"
    with pytest.raises(FamilyError, match=rf"'poison'.*{choices}"):
        get_family("poison")


def test_bad_link_names_choices():
    with pytest.raises(FamilyError, match=r"'logit'.*'poisson'.*log, identity, sqrt"):
        get_family("poisson", "logit")
    with pytest.raises(FamilyError, match="inverse, log, identity"):
        get_family("gamma", "probit")


def test_build_design_rejects_bad_family(sleep):
    with pytest.raises(FamilyError, match="choose one of"):
        build_design("Reaction ~ Days + (1|Subject)", sleep, family="tweedie")


def test_cbind_needs_binomial(sleep):
    df = load("cbpp")
    with pytest.raises(FamilyError, match="cbind.*'binomial'.*'poisson'"):
        build_design("cbind(incidence, size - incidence) ~ period + (1|herd)", df, family="poisson")


# ---------------------------------------------------------------- columns


@pytest.mark.parametrize(
    "formula, culprit, hint, where",
    [
        ("Reaction ~ Dayz + (1|Subject)", "Dayz", "Days", "fixed-effects part"),
        ("Reaction ~ log(Dayz) + (1|Subject)", "Dayz", "Days", "fixed-effects part"),
        ("Reaction ~ Days + (1|Subjekt)", "Subjekt", "Subject", "grouping factor"),
        ("Reaction ~ Days + (Dayz|Subject)", "Dayz", "Days", "random-effects term"),
        ("Reactoin ~ Days + (1|Subject)", "Reactoin", "Reaction", "response"),
        ("Reaction ~ Days + offset(bias) + (1|Subject)", "bias", None, "offset"),
    ],
)
def test_unknown_column(sleep, formula, culprit, hint, where):
    with pytest.raises(DataError) as info:
        build_design(formula, sleep)
    msg = str(info.value)
    assert f"unknown column {culprit!r}" in msg and where in msg
    assert (f"did you mean {hint!r}" in msg) if hint else "did you mean" not in msg


def test_unknown_weights_column(sleep):
    with pytest.raises(DataError, match="unknown column 'wt' in the weights"):
        build_design("Reaction ~ Days + (1|Subject)", sleep, weights="wt")


def test_unknown_function_is_refused(sleep):
    # a formula is data: only the documented transforms (or transforms=) can be called
    with pytest.raises(FormulaError, match=r"'foo' is not an allowed function .*foo\(Days\)"):
        build_design("Reaction ~ foo(Days) + (1|Subject)", sleep)


def test_data_must_be_a_frame():
    with pytest.raises(DataError, match="DataFrame"):
        build_design("y ~ x", {"y": [1, 2], "x": [3, 4]})


# ---------------------------------------------------------------- response


def test_non_numeric_response(sleep):
    sleep["label"] = sleep["Reaction"].astype(str)
    with pytest.raises(DataError, match="response 'label' is not numeric"):
        build_design("label ~ Days + (1|Subject)", sleep)


def test_binomial_response_must_be_binary(sleep):
    with pytest.raises(DataError, match=r"'Reaction' must be 0/1.*cbind"):
        build_design("Reaction ~ Days + (1|Subject)", sleep, family="binomial")


def test_count_response(sleep):
    with pytest.raises(DataError, match="poisson response 'Reaction'.*whole numbers"):
        build_design("Reaction ~ Days + (1|Subject)", sleep, family="poisson")
    df = load("cbpp")
    df["neg"] = -df["incidence"]
    with pytest.raises(DataError, match="successes 'neg'"):
        build_design("cbind(neg, size) ~ 1 + (1|herd)", df, family="binomial")


def test_gamma_response_positive(sleep):
    with pytest.raises(DataError, match="Gamma response 'Days' must be positive"):
        build_design("Days ~ 1 + (1|Subject)", sleep, family="Gamma")


# ---------------------------------------------------------------- grouping factors


def test_single_level_grouping_factor(sleep):
    sleep["site"] = "A"
    with pytest.raises(DataError, match=r"grouping factor 'site' has only one level \(A\)"):
        build_design("Reaction ~ Days + (1|site)", sleep)


def test_as_many_levels_as_rows(sleep):
    sleep["obs"] = np.arange(len(sleep))
    with pytest.raises(DataError, match=r"must be < number of observations.*'obs' has 180 levels for 180"):
        build_design("Reaction ~ Days + (1|obs)", sleep)


def test_observation_level_effect_allowed_for_glmm():
    df = load("cbpp")
    df["obs"] = np.arange(len(df))
    formula = "cbind(incidence, size - incidence) ~ period + (1|herd) + (1|obs)"
    d = build_design(formula, df, family="binomial")
    assert [t.group for t in d.terms] == ["obs", "herd"]


def test_too_many_random_effects(sleep):
    small = sleep[sleep["Subject"].isin(["308", "309", "310", "330", "331"])].iloc[::4]
    small = small.assign(x1=np.arange(len(small)), x2=np.arange(len(small)) ** 2)
    with pytest.raises(DataError, match=r"number of random effects.*\(x1 \+ x2 \| Subject\)"):
        build_design("Reaction ~ 1 + (x1 + x2 | Subject)", small)


def test_fixed_factor_with_one_level(sleep):
    sleep["site"] = pd.Categorical(["A"] * len(sleep))
    with pytest.raises(DataError, match="factor 'site'.*only one level"):
        build_design("Reaction ~ Days + site + (1|Subject)", sleep)


# ---------------------------------------------------------------- rows


def test_na_rows_dropped_with_warning(sleep):
    sleep.loc[[0, 5, 7], "Reaction"] = np.nan
    sleep.loc[9, "Days"] = np.nan
    sleep["unused"] = np.nan  # not in the formula: must not drop anything
    with pytest.warns(UserWarning, match=r"dropped 4 of 180 rows with missing values in Reaction, Days"):
        d = build_design("Reaction ~ Days + (1|Subject)", sleep)
    assert d.dropped_na == 4 and d.n == 176
    assert list(d.data.index[:6]) == [1, 2, 3, 4, 6, 8]
    assert len(d.X) == len(d.terms[0].index) == 176


def test_na_in_grouping_factor_and_weights(sleep):
    sleep["Subject"] = sleep["Subject"].astype(object)
    sleep.loc[3, "Subject"] = None
    w = np.ones(len(sleep))
    w[10] = np.nan
    with pytest.warns(UserWarning, match="dropped 2 of 180 rows with missing values in Subject, weights"):
        d = build_design("Reaction ~ Days + (1|Subject)", sleep, weights=w)
    assert d.n == 178 and d.weights.shape == (178,)


def test_all_rows_missing(sleep):
    sleep["Reaction"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match="no rows left"):
            build_design("Reaction ~ Days + (1|Subject)", sleep)


def test_empty_data(sleep):
    with pytest.raises(DataError, match="data has no rows"):
        build_design("Reaction ~ Days + (1|Subject)", sleep.iloc[:0])


# ---------------------------------------------------------------- fixed effects


def test_rank_deficient_columns_dropped(sleep):
    sleep["Days2"] = 2 * sleep["Days"]
    sleep["Days3"] = sleep["Days"] + 1
    msg = (r"fixed-effect model matrix is rank deficient so dropping 2 columns / "
           r"coefficients: Days2, Days3")
    with pytest.warns(UserWarning, match=msg):
        d = build_design("Reaction ~ Days + Days2 + Days3 + (1|Subject)", sleep)
    assert d.X_names == ("(Intercept)", "Days") and d.X.shape == (180, 2)
    assert d.dropped_columns == ("Days2", "Days3")
    assert d.fixed_spec.column_names == ("(Intercept)", "Days", "Days2", "Days3")
    new = d.new_data(sleep.head(3))
    assert new.X.shape == (3, 2)


def test_rank_deficient_single_column():
    with pytest.warns(UserWarning, match="dropping 1 column / coefficient: schoolVI:classd"):
        d = build_design("extro ~ open + school:class + (1|school)", load("lmmdata"))
    assert len(d.X_names) == 25


def test_non_finite_fixed_column(sleep):
    with pytest.raises(DataError, match=r"'log\(Days\)' has non-finite values"):
        build_design("Reaction ~ log(Days) + (1|Subject)", sleep)


# ---------------------------------------------------------------- weights


def test_bad_weights(sleep):
    with pytest.raises(DataError, match="weights has 3 values for 180 rows"):
        build_design("Reaction ~ Days + (1|Subject)", sleep, weights=np.ones(3))
    with pytest.raises(DataError, match="non-negative"):
        build_design("Reaction ~ Days + (1|Subject)", sleep, weights=-np.ones(180))
    with pytest.raises(DataError, match="weights column 'Subject' must be numeric"):
        labels = sleep.assign(Subject=sleep["Subject"].astype(str) + "x")
        build_design("Reaction ~ Days + (1|Subject)", labels, weights="Subject")


# ---------------------------------------------------------------- formulas


@pytest.mark.parametrize(
    "formula, message",
    [
        ("Reaction ~ Days + (|Subject)", "empty left side"),
        ("Reaction ~ Days + (Days|)", "no grouping factor"),
        ("Reaction ~ Days + (Days|Subject", "never closed"),
        ("Reaction Days", "no '~'"),
        ("Reaction ~ Days + (Days | Subject + Days)", "grouping factor 'Subject + Days'"),
    ],
)
def test_malformed_formula(sleep, formula, message):
    with pytest.raises(FormulaError, match=message.replace("(", r"\(").replace("+", r"\+")):
        build_design(formula, sleep)


def test_all_errors_are_bayesmix_errors(sleep):
    bad = [
        ("Reaction ~ Dayz + (1|Subject)", {}),
        ("Reaction ~ Days + (1|Subject", {}),
        ("Reaction ~ Days + (1|Subject)", {"family": "nope"}),
        ("Reaction ~ I(Days + ) + (1|Subject)", {}),
        ("Reaction ~ C(Days, Nope) + (1|Subject)", {}),
    ]
    for formula, kw in bad:
        with pytest.raises(BayesmixError):
            build_design(formula, sleep, **kw)
