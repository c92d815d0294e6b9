"""bayesmix.bf: distributional formulas (brms's bf(y ~ ..., sigma ~ ...)).

References: the parameter names and formulas of tests/reference/families (family_fits.json
gives each case's formulas as our API takes them; brms_priors.json the distributional
parameters brms 2.18 lists for each family); hostile formulas must raise FormulaError before
anything runs (os.system is replaced by a recorder that must stay unused).
"""
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.errors import FamilyError, FormulaError
from bayesmix.families import ALL_FAMILIES
from bayesmix.formula import DistributionalFormula, bf, check_dpars, dpar_formulas
from bayesmix.formula.distributional import KNOWN_DPARS

REFS = Path(__file__).resolve().parent / "reference" / "families"
FITS = json.loads((REFS / "family_fits.json").read_text())["cases"]
BRMS = json.loads((REFS / "brms_priors.json").read_text())["cases"]


def test_valid_formulas_keep_their_order_and_text():
    f = bf("y ~ x + (1 | g)", zi="~ 1 + (1 | g)", sigma="~ x")
    assert f == DistributionalFormula("y ~ x + (1 | g)", (("zi", "~ 1 + (1 | g)"),
                                                          ("sigma", "~ x")))
    assert dpar_formulas(f) == {"zi": "~ 1 + (1 | g)", "sigma": "~ x"}
    assert list(dpar_formulas(f)) == ["zi", "sigma"]
    assert str(f) == "y ~ x + (1 | g)\nzi ~ 1 + (1 | g)\nsigma ~ x"
    assert bf("y ~ x") == DistributionalFormula("y ~ x", ())
    assert dpar_formulas(bf("y ~ x")) == {} and dpar_formulas("y ~ x") == {}
    assert bm.bf is bf and bm.DistributionalFormula is DistributionalFormula
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.formula = "z ~ 1"
    assert hash(f) == hash(bf("y ~ x + (1 | g)", zi="~ 1 + (1 | g)", sigma="~ x"))
    # the richer syntax of the main formula works in parameter formulas too
    g = bf("cbind(s, f) ~ x", phi="~ log(z) + poly(x, 2) + (1 + x || g) + (1 | a/b)",
           shape="~ 0 + x:w + offset(log(t))")
    assert dpar_formulas(g)["shape"] == "~ 0 + x:w + offset(log(t))"


@pytest.mark.parametrize("case", sorted(FITS))
def test_the_reference_cases_formulas(case):
    """Every case of the #17 references, written as our API takes it, is accepted, and its
    parameters are the family's."""
    ref = FITS[case]
    spec = dict(ref["formula"])
    main = spec.pop("formula")
    f = bf(main, **spec)
    assert dpar_formulas(f) == spec
    got = check_dpars(f, ref["family"])
    assert [d.name for d in got] == list(spec)


@pytest.mark.parametrize("case", sorted(BRMS))
def test_brms_parameters_are_accepted(case):
    """The distributional parameters brms lists for a family (link_<dpar>) can be modelled."""
    family = BRMS[case]["family"]
    names = [k.removeprefix("link_") for k in BRMS[case]["links"] if k != "link"]
    f = bf("y ~ x", **{n: "~ x" for n in names})
    links = {d.name: d.link for d in check_dpars(f, family)}
    assert links == {n: BRMS[case]["links"][f"link_{n}"] for n in names}


def test_check_dpars_names_the_family_and_its_parameters():
    table = {name: [d.name for d in spec.dpars] for name, spec in ALL_FAMILIES.items()}
    assert set(KNOWN_DPARS) == {n for names in table.values() for n in names}
    assert check_dpars(bf("y ~ x", nu="~ 1", sigma="~ x"), "student")[0].link == "logm1"
    assert check_dpars(bf("y ~ x", shape="~ x"), "negbinomial")[0].name == "shape"
    assert check_dpars("y ~ x", "poisson") == ()
    with pytest.raises(FamilyError, match="family 'poisson' has no distributional parameter "
                                          "'sigma'; its parameters: none"):
        check_dpars(bf("y ~ x", sigma="~ x"), "poisson")
    with pytest.raises(FamilyError, match="'negbinomial' has no distributional parameter "
                                          "'phi'; its parameters: shape"):
        check_dpars(bf("y ~ x", phi="~ x"), "nb")   # brms calls negbinomial's phi shape
    with pytest.raises(FamilyError, match="'zero_inflated_poisson' has no distributional "
                                          "parameter 'hu'; its parameters: zi"):
        check_dpars(bf("y ~ x", hu="~ 1"), "zip")
    with pytest.raises(FamilyError, match="unknown family 'tweedie'"):
        check_dpars(bf("y ~ x"), "tweedie")


@pytest.mark.parametrize("kwargs,match", [
    ({"sigma": "y ~ x"}, r"the sigma formula 'y ~ x' is two-sided.*write sigma='~ x'"),
    ({"zi": "zi ~ 1"}, r"the zi formula 'zi ~ 1' is two-sided"),
    ({"sigma": ""}, "the sigma formula is empty"),
    ({"sigma": "   "}, "the sigma formula is empty"),
    ({"sigma": "~"}, "the sigma formula '~' has nothing right of '~'"),
    ({"sigma": "x"}, "the sigma formula 'x' has no '~'"),
    ({"sigma": "~ x ~ z"}, "the sigma formula '~ x ~ z' has more than one '~'"),
    ({"sigma": 3}, "the sigma formula must be a string"),
    ({"sgima": "~ x"}, "unknown distributional parameter 'sgima'; known .*sigma"),
    ({"mu": "~ x"}, "mu is modelled by the main formula"),
    ({"sigma": "~ x + (1 | )"}, r"the sigma formula .*no grouping factor"),
    ({"sigma": "~ x +"}, r"the sigma formula '~ x \+'"),
])
def test_invalid_parameter_formulas_name_the_culprit(kwargs, match):
    with pytest.raises(FormulaError, match=match):
        bf("y ~ x", **kwargs)


def test_invalid_main_formulas_and_direct_construction():
    with pytest.raises(FormulaError, match="has no '~'"):
        bf("y", sigma="~ x")
    with pytest.raises(FormulaError, match="empty response"):
        bf("~ x", sigma="~ x")
    with pytest.raises(FormulaError, match="formula must be a string"):
        bf(None)
    with pytest.raises(FormulaError, match="the sigma formula is given twice"):
        DistributionalFormula("y ~ x", (("sigma", "~ x"), ("sigma", "~ 1")))
    with pytest.raises(FormulaError, match="two-sided"):
        DistributionalFormula("y ~ x", (("sigma", "s ~ x"),))
    with pytest.raises(FormulaError, match="pairs"):
        DistributionalFormula("y ~ x", ("sigma", "~ x"))
    with pytest.raises(FormulaError, match="expected a formula string or bf"):
        dpar_formulas(42)


HOSTILE = [
    "~ __import__('os').system('x')",
    "~ I(__import__('os').system('x'))",
    "~ x + log(__import__('os').system('x'))",
    "~ x + {__import__('os').system('x')}",
    "~ eval('1')",
    "~ exec('import os')",
    "~ x.__class__",
    "~ (lambda: __import__('os').system('x'))()",
    "~ `__import__`",
    "~ offset(__import__('os').system('x'))",
    "~ x + (1 | __import__)",
    "~ x + (I(open('/etc/passwd')) | g)",
    "~ I([c for c in ()])",
    "~ 'x'",
    "~ x\\n",
]


@pytest.fixture
def no_system(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda cmd: calls.append(cmd) or 0)
    return calls


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_parameter_formulas_are_refused_unrun(text, no_system):
    with pytest.raises(FormulaError, match=r"^the sigma formula "):
        bf("y ~ x", sigma=text)
    with pytest.raises(FormulaError):  # the same text in the main formula
        bf("y " + text)
    assert no_system == []


def test_hostile_main_formula_with_a_good_parameter_formula(no_system):
    with pytest.raises(FormulaError, match="__import__"):
        bf("y ~ I(__import__('os').system('x'))", sigma="~ x")
    assert no_system == []


def test_user_transforms_must_be_named():
    with pytest.raises(FormulaError, match="'f' is not an allowed function"):
        bf("y ~ x", sigma="~ f(x)")
    f = bf("y ~ x", transforms={"f": np.log}, sigma="~ f(x)")
    assert dpar_formulas(f) == {"sigma": "~ f(x)"}
    assert bf("y ~ f(x)", transforms=["f"], sigma="~ f(x)").formula == "y ~ f(x)"
