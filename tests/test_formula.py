"""parse_formula: lme4 syntax -> response, fixed part, offset, random terms."""
import pytest

from bayesmix.errors import FormulaError
from bayesmix.formula import ParsedFormula, RandomPart, parse_formula

C, U = True, False  # correlated (from |) / uncorrelated (from ||)

# formula -> (response, fixed, offset, [(expr, group, correlated), ...])
CASES = [
    ("y ~ x", ("y", "x", None, [])),
    ("y ~ 1 + (1 | g)", ("y", "1", None, [("1", "g", C)])),
    ("y ~ (1 | g)", ("y", "1", None, [("1", "g", C)])),
    ("y ~ x + (1|g)", ("y", "x", None, [("1", "g", C)])),
    ("Reaction ~ Days + (Days|Subject)", ("Reaction", "Days", None, [("Days", "Subject", C)])),
    ("y ~ x + (1 + x | g)", ("y", "x", None, [("1 + x", "g", C)])),
    ("y ~ x + (1+x|g)", ("y", "x", None, [("1 + x", "g", C)])),
    ("y ~ x + (0 + x | g)", ("y", "x", None, [("0 + x", "g", C)])),
    ("y ~ x + (x - 1 | g)", ("y", "x", None, [("x - 1", "g", C)])),
    ("y ~ x + (-1 + x | g)", ("y", "x", None, [("-1 + x", "g", C)])),
    ("Reaction ~ Days + (Days || Subject)",
     ("Reaction", "Days", None, [("1", "Subject", U), ("0 + Days", "Subject", U)])),
    ("y ~ (x + z || g)", ("y", "1", None, [("1", "g", U), ("0 + x", "g", U), ("0 + z", "g", U)])),
    ("y ~ (0 + x + z || g)", ("y", "1", None, [("0 + x", "g", U), ("0 + z", "g", U)])),
    ("y ~ (x - 1 || g)", ("y", "1", None, [("0 + x", "g", U)])),
    ("y ~ (1 || g)", ("y", "1", None, [("1", "g", U)])),
    ("y ~ (x*z || g)",
     ("y", "1", None, [("1", "g", U), ("0 + x", "g", U), ("0 + z", "g", U), ("0 + x:z", "g", U)])),
    # nesting expands like lme4's expandSlash: the innermost level first, named b:a
    ("y ~ (1 | a/b)", ("y", "1", None, [("1", "b:a", C), ("1", "a", C)])),
    ("y ~ (1 | a/b/c)", ("y", "1", None, [("1", "c:(b:a)", C), ("1", "b:a", C), ("1", "a", C)])),
    ("y ~ (x | a/b)", ("y", "1", None, [("x", "b:a", C), ("x", "a", C)])),
    ("y ~ (x || a/b)",
     ("y", "1", None, [("1", "b:a", U), ("1", "a", U), ("0 + x", "b:a", U), ("0 + x", "a", U)])),
    ("y ~ (1 | a:b)", ("y", "1", None, [("1", "a:b", C)])),
    ("y ~ (1 | a : b)", ("y", "1", None, [("1", "a:b", C)])),
    ("y ~ (1 | a:b/c)", ("y", "1", None, [("1", "c:(a:b)", C), ("1", "a:b", C)])),
    ("y ~ (1|a) + (1|b)", ("y", "1", None, [("1", "a", C), ("1", "b", C)])),
    ("diameter ~ 1 + (1|plate) + (1|sample)",
     ("diameter", "1", None, [("1", "plate", C), ("1", "sample", C)])),
    ("y ~ 1 + service + (1|s) + (1|d) + (1|dept:service)",
     ("y", "1 + service", None, [("1", "s", C), ("1", "d", C), ("1", "dept:service", C)])),
    ("y ~ (1|g) + x + (0 + x|g) + z", ("y", "x + z", None, [("1", "g", C), ("0 + x", "g", C)])),
    ("y ~ ((1 | g))", ("y", "1", None, [("1", "g", C)])),
    ("y ~ x - 1 + (1 | g)", ("y", "x - 1", None, [("1", "g", C)])),
    ("y ~ 0 + x + (1 | g)", ("y", "0 + x", None, [("1", "g", C)])),
    ("y ~ -1 + x + (1 | g)", ("y", "-1 + x", None, [("1", "g", C)])),
    ("y ~ x*z + (1 | g)", ("y", "x*z", None, [("1", "g", C)])),
    ("y ~ (1 + log(x) | g)", ("y", "1", None, [("1 + log(x)", "g", C)])),
    ("y ~ poly(x, 2) + (poly(x, 2) | g)", ("y", "poly(x, 2)", None, [("poly(x, 2)", "g", C)])),
    ("y ~ scale(x) + I(x^2) + C(f, Sum) + (1|g)",
     ("y", "scale(x) + I(x^2) + C(f, Sum)", None, [("1", "g", C)])),
    ("log(y) ~ x + (1|g)", ("log(y)", "x", None, [("1", "g", C)])),
    ("cbind(incidence, size - incidence) ~ period + (1|herd)",
     ("cbind(incidence, size - incidence)", "period", None, [("1", "herd", C)])),
    ("cbind(s, f) ~ x + (1|g)", ("cbind(s, f)", "x", None, [("1", "g", C)])),
    ("y ~ x + offset(log(n)) + (1|g)", ("y", "x", "log(n)", [("1", "g", C)])),
    ("y ~ offset(o1) + x + offset(o2)", ("y", "x", "o1 + o2", [])),
    ("y ~ offset(log(n))", ("y", "1", "log(n)", [])),
    ("  y  ~\n  x +\n\t(1 +\n x | g)\n", ("y", "x", None, [("1 + x", "g", C)])),
    ("y~x+(1|g)", ("y", "x", None, [("1", "g", C)])),
    ("y ~ x + (1 | g.h_2)", ("y", "x", None, [("1", "g.h_2", C)])),
    ("y ~ x + (1 | `my group`)", ("y", "x", None, [("1", "`my group`", C)])),
    # the tutorial's formulas
    ("extro ~ open + agree + social + (1 + open | school/class)",
     ("extro", "open + agree + social", None,
      [("1 + open", "class:school", C), ("1 + open", "school", C)])),
    ("extro ~ open + agree + social + (1|school/class)",
     ("extro", "open + agree + social", None, [("1", "class:school", C), ("1", "school", C)])),
    ("extro ~ open + agree + social + school:class",
     ("extro", "open + agree + social + school:class", None, [])),
    ("extro ~ school*class - 1", ("extro", "school*class - 1", None, [])),
    ("extro ~ open + agree + social + (1|school) + (1|class)",
     ("extro", "open + agree + social", None, [("1", "school", C), ("1", "class", C)])),
]


@pytest.mark.parametrize("text, expected", CASES, ids=[c[0] for c in CASES])
def test_parse(text, expected):
    response, fixed, offset, random = expected
    pf = parse_formula(text)
    assert isinstance(pf, ParsedFormula)
    assert pf.text == text
    assert pf.response == response
    assert pf.fixed == fixed
    assert pf.offset == offset
    assert [(r.expr, r.group, r.correlated) for r in pf.random] == random
    assert pf.response_kind == ("cbind" if response.startswith("cbind(") else "plain")


def test_cbind_parts():
    pf = parse_formula("cbind(incidence, size - incidence) ~ period + (1|herd)")
    assert pf.cbind == ("incidence", "size - incidence")
    assert parse_formula("y ~ x").cbind is None


def test_frozen_and_printable():
    pf = parse_formula("Reaction ~ Days + (Days || Subject) + offset(o)")
    with pytest.raises(AttributeError):
        pf.fixed = "x"
    text = str(pf)
    assert "Reaction" in text and "offset:   o" in text
    assert "(1 || Subject)" in text and "(0 + Days || Subject)" in text
    assert str(RandomPart("1 + x", "g", True)) == "(1 + x | g)"


BAD = [
    ("y x + (1|g)", "no '~'"),
    ("~ x + (1|g)", "empty response"),
    ("y ~ ", "nothing right of '~'"),
    ("y ~ x ~ z", "more than one '~'"),
    ("y ~ x + (1 | g", "never closed"),
    ("y ~ x + 1 | g)", "unexpected ')'"),
    ("y ~ log(x + (1|g)", "unbalanced parentheses"),
    ("y ~ x + ( | g)", "empty left side"),
    ("y ~ x + (x | )", "no grouping factor"),
    ("y ~ x + (x | g + h)", "grouping factor 'g + h'"),
    ("y ~ x + (x | log(g))", "names joined by ':'"),
    ("y ~ x + (x | a//b)", "grouping factor 'a//b'"),
    ("y ~ x + (1 | a | b)", "more than one '|'"),
    ("y ~ x + 1 | g", "in parentheses"),
    ("y ~ x * (1 | g)", "separate term"),
    ("y ~ x - (1 | g)", "cannot subtract"),
    ("y ~ (0 | g)", "no covariates"),
    ("y ~ x + + z", "empty term"),
    ("y ~ x +", "nothing after the last operator"),
    ("y ~ (x + | g)", "nothing after the last operator"),
    ("cbind(s) ~ x", "exactly two arguments"),
    ("cbind(s, f, z) ~ x", "exactly two arguments"),
    ("y ~ x - offset(o)", "offset"),
    ("y ~ x + 'abc", "unterminated quote"),
    ("y ~ x : ", "fixed-effects part"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[b[0] for b in BAD])
def test_malformed(text, message):
    with pytest.raises(FormulaError) as info:
        parse_formula(text)
    assert message in str(info.value)


def test_not_a_string():
    with pytest.raises(FormulaError, match="must be a string"):
        parse_formula(42)
