"""A formula is data, not code: hostile formulas are refused before anything
evaluates them (no side effect), accepted formulas still build the same
columns as an independent numpy computation, and transforms= is the one way
to call your own Python."""
import json
import os
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix

import bayesmix
import bayesmix.datasets
from bayesmix.design import build_design
from bayesmix.design.transforms import formula_context
from bayesmix.errors import FormulaError
from bayesmix.formula import ParsedFormula, parse_formula
from bayesmix.formula.safety import ALLOWED_TRANSFORMS


@pytest.fixture
def df():
    rng = np.random.default_rng(7)
    n = 60
    out = pd.DataFrame({
        "y": rng.gamma(5.0, 2.0, n),
        "x": rng.uniform(0.5, 4.0, n),
        "z": rng.normal(0.0, 1.0, n),
        "w": rng.normal(3.0, 2.0, n),
        "p": rng.uniform(0.05, 0.95, n),
        "n": rng.integers(5, 20, n).astype(float),
        "f": pd.Categorical(rng.choice(["a", "b", "c"], n), categories=["a", "b", "c"]),
        "g": pd.Categorical(np.repeat([f"g{i}" for i in range(6)], n // 6)),
        "my col": rng.uniform(1.0, 2.0, n),
        "my.z": rng.normal(size=n),
    })
    out["s"] = np.floor(out["n"] * out["p"])
    return out


@pytest.fixture
def calls(monkeypatch):
    """Records (and still performs) os.system / os.popen / subprocess calls."""
    seen = []

    def spy(name, real):
        def wrapper(*args, **kwargs):
            seen.append((name, args))
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(os, "system", spy("os.system", os.system))
    monkeypatch.setattr(os, "popen", spy("os.popen", os.popen))
    monkeypatch.setattr(subprocess, "Popen", spy("subprocess.Popen", subprocess.Popen))
    return seen


SYS = "__import__('os').system('touch {p}')"

# formula (with {p} = a file the payload would create), the culprit the message must quote
HOSTILE = [
    ("y ~ x + I(" + SYS + ") + (1|g)", "__import__"),
    ("y ~ {" + SYS + "} + (1|g)", "{__import__"),
    ("y ~ x + {open('{p}', 'w')}", "{open("),
    ("y ~ I(x.__class__) + (1|g)", "x.__class__"),
    ("y ~ x.__class__ + (1|g)", "x.__class__"),
    ("y ~ I(open('{p}', 'w')) + (1|g)", "'open'"),
    ("y ~ log(open('{p}', 'w'))", "'open'"),
    ("y ~ I(eval(\"open('{p}', 'w')\"))", "'eval'"),
    ("y ~ I(exec(\"open('{p}', 'w')\"))", "'exec'"),
    ("y ~ I(getattr(x, '__class__'))", "'getattr'"),
    ("y ~ I((lambda: " + SYS + ")())", "lambda"),
    ("y ~ I([" + SYS + " for _ in [1]])", "[__import__"),
    ("y ~ I(sum(" + SYS + " for _ in (1, 2)))", "'sum'"),
    ("y ~ x[0] + (1|g)", "x[0]"),
    ("y ~ I(x[0])", "x[0]"),
    ("y ~ I('{p}')", "'{p}'"),
    ("y ~ x + '{p}'", "'{p}'"),
    ("I(" + SYS + ") ~ x + (1|g)", "__import__"),
    (SYS + " ~ x", "__import__"),
    ("y ~ x + offset(" + SYS + ") + (1|g)", "__import__"),
    ("cbind(s, " + SYS + ") ~ x + (1|g)", "__import__"),
    ("y ~ x + (I(" + SYS + ") | g)", "__import__"),
    ("y ~ x + (1 + log(" + SYS + ") || g)", "__import__"),
    ("y ~ x + (1 | " + SYS + ")", "__import__"),
    ("y ~ x + (1 | g:__class__)", "__class__"),
    ("y ~ C(f, " + SYS + ") + (1|g)", "__import__"),
    ("y ~ C(f, 'os') + (1|g)", "'os'"),
    ("y ~ C(f, contr.__class__)", "contr.__class__"),
    ("y ~ poly(x, degree=" + SYS + ")", "__import__"),
    ("y ~ log(x, base=exp(1))", "exp(1)"),
    ("y ~ scale(x, center=open('{p}', 'w'))", "open("),
    ("y ~ poly(x, 2, raw=" + SYS + ")", "__import__"),
    ("y ~ `x`.__class__", "__class__"),
    ("y ~ I(`x`.__class__)", "__class__"),
    ("y ~ I(`__import__('os').system('touch {p}')`)", "__import__"),
    ("y ~ I((q := " + SYS + "))", ":="),
    ("y ~ log(*x)", "*x"),
    ("y ~ log(x, **{'base': 2})", "'base'"),
    ("y ~ log.__call__(x)", "log.__call__"),
    ("y ~ np.log(x)", "np.log"),
    ("y ~ bs(x, df=3)", "'bs'"),
    ("y ~ I(__builtins__)", "__builtins__"),
    ("y ~ I(x if " + SYS + " else z)", "__import__"),
    ("y ~ I(x and " + SYS + ")", "__import__"),
    ("y ~ x; " + SYS, "';'"),
    ("y ~ x + I(1) " + SYS, "__import__"),
    ("y ~ x + I(\\\n" + SYS + ")", "backslash"),
]


def _formula(template, tmp_path):
    return template.replace("{p}", str(tmp_path / "pwned"))


@pytest.mark.parametrize("template, culprit", HOSTILE, ids=[f"h{i:02d}" for i in range(len(HOSTILE))])
def test_hostile_formula_is_refused(template, culprit, df, tmp_path, calls):
    formula = _formula(template, tmp_path)
    culprit = _formula(culprit, tmp_path)
    for attempt in (
        lambda: parse_formula(formula),
        lambda: build_design(formula, df),
        lambda: bayesmix.Model(formula, df),
        lambda: bayesmix.Model(formula, df, family="binomial"),
    ):
        with pytest.raises(FormulaError) as info:
            attempt()
        assert culprit in str(info.value), str(info.value)
    assert not (tmp_path / "pwned").exists()
    assert calls == []


def test_at_least_25_hostile_formulas():
    assert len(HOSTILE) >= 25


def test_the_issue_examples(df, tmp_path, calls, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sleep = bayesmix.datasets.load("sleepstudy")
    for formula in (
        "Reaction ~ Days + I(__import__('os').system('touch pwned')) + (1|Subject)",
        "Reaction ~ {__import__('os').system('touch pwned')} + (1|Subject)",
    ):
        with pytest.raises(FormulaError, match="formula: .*__import__"):
            bayesmix.Model(formula, sleep)
        with pytest.raises(FormulaError):
            bayesmix.lmer(formula, sleep)
        with pytest.raises(FormulaError):
            bayesmix.glmer(formula, sleep, family="poisson")
    with pytest.raises(FormulaError):
        bayesmix.lm("Reaction ~ I(__import__('os').system('touch pwned'))", sleep)
    with pytest.raises(FormulaError):
        bayesmix.glm("Reaction ~ I(__import__('os').system('touch pwned'))", sleep)
    assert not (tmp_path / "pwned").exists() and calls == []


def test_message_names_the_allowed_set(df):
    with pytest.raises(FormulaError) as info:
        build_design("y ~ x + I(__import__('os').getcwd())", df)
    msg = str(info.value)
    assert msg.startswith("formula: ")
    assert "formula: '__import__' is not an allowed function (in \"I(__import__('os').getcwd())\"" in msg
    assert "allowed: " + ", ".join(ALLOWED_TRANSFORMS) in msg


def test_other_entry_points(df, tmp_path, calls):
    payload = "I(" + _formula(SYS, tmp_path) + ")"
    # lmlist
    with pytest.raises(FormulaError, match="__import__"):
        bayesmix.lmlist(f"y ~ x + {payload} | g", df)
    # a hand-built ParsedFormula skips parse_formula but not the check
    good = parse_formula("y ~ x + (1|g)")
    for field, value in [("response", payload), ("fixed", f"x + {payload}"), ("offset", payload),
                         ("cbind", ("s", payload))]:
        bad = ParsedFormula(**{**good.__dict__, field: value})
        with pytest.raises(FormulaError, match="__import__"):
            build_design(bad, df, family="binomial" if field == "cbind" else "gaussian")
    part = good.random[0]
    bad = ParsedFormula(**{**good.__dict__, "random": (type(part)(payload, "g", True),)})
    with pytest.raises(FormulaError, match="__import__"):
        build_design(bad, df)
    bad = ParsedFormula(**{**good.__dict__, "random": (type(part)("1", "__class__", True),)})
    with pytest.raises(FormulaError, match="__class__"):
        build_design(bad, df)
    # predict(re_form=...) parses its formula the same way
    from bayesmix.design.reform import re_form_groups
    design = build_design("y ~ x + (1|g)", df)
    with pytest.raises(FormulaError, match="__import__"):
        re_form_groups(f"~(1|g) + {payload}", design)
    # the model-matrix builder checks on its own too
    from bayesmix.design.modelmatrix import build_model_matrix
    with pytest.raises(FormulaError, match="__import__"):
        build_model_matrix(f"x + {payload}", df, "fixed-effects part")
    assert not (tmp_path / "pwned").exists() and calls == []


def test_cli_refuses(df, tmp_path, calls, capsys):
    csv = tmp_path / "d.csv"
    df.to_csv(csv, index=False)
    formula = "y ~ x + I(" + _formula(SYS, tmp_path) + ") + (1|g)"
    from bayesmix.cli import main
    assert main(["fit", formula, "--data", str(csv)]) == 2
    assert "is not an allowed function" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists() and calls == []


def _load(folder):
    import inspect
    verify = "verify" in inspect.signature(bayesmix.load).parameters
    return bayesmix.load(folder, **({"verify": False} if verify else {}))


def test_bundle_cannot_carry_code(df, tmp_path, calls):
    folder = tmp_path / "bundle"
    folder.mkdir()
    df[["y", "x", "g"]].to_csv(folder / "model_data.csv", index=False)
    formula = "y ~ x + I(" + _formula(SYS, tmp_path) + ") + (1|g)"
    meta = {"formula": formula, "family": "gaussian", "link": "identity",
            "categories": {"g": {"levels": list(df.g.cat.categories), "ordered": False}}}
    (folder / "run.json").write_text(json.dumps(meta))
    with pytest.raises(FormulaError, match="__import__"):
        _load(folder)
    # nor a registered name: bundles never supply transforms
    meta["formula"] = "y ~ logit(x) + (1|g)"
    (folder / "run.json").write_text(json.dumps(meta))
    with pytest.raises(FormulaError, match="'logit' is not an allowed function"):
        _load(folder)
    assert not (tmp_path / "pwned").exists() and calls == []


# ---------------------------------------------------------------- belt and braces


def test_evaluation_context_is_minimal(tmp_path, calls):
    ctx = formula_context()
    for name in ("__import__", "open", "eval", "exec", "getattr", "compile", "np", "bs", "hashed", "Q"):
        with pytest.raises(FormulaError, match=repr(name)):
            ctx[name]("x")
    assert set(ALLOWED_TRANSFORMS) <= set(ctx)
    assert "logit" not in ctx and formula_context({"logit": abs})["logit"] is abs
    # even formulaic evaluating an unchecked expression with our context cannot reach builtins
    data = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(Exception):
        model_matrix("I(__import__('os').system('touch " + str(tmp_path / "pwned") + "'))", data,
                     context=ctx)
    assert not (tmp_path / "pwned").exists() and calls == []


# ---------------------------------------------------------------- accepted formulas


def _poly(x, degree):
    """R's poly(): orthonormal columns of the centred powers (sign per column free)."""
    X = np.column_stack([x**k for k in range(degree + 1)])
    q, _ = np.linalg.qr(X)
    return q[:, 1:]


def _sd(v):
    return np.std(v, ddof=1)


# formula, {column name (or index): expected values}, family
ACCEPTED = [
    ("y ~ log(x)", {"log(x)": lambda d: np.log(d.x)}),
    ("y ~ log(x, 2)", {1: lambda d: np.log2(d.x)}),
    ("y ~ log(x, base=10)", {1: lambda d: np.log10(d.x)}),
    ("y ~ log1p(x)", {"log1p(x)": lambda d: np.log1p(d.x)}),
    ("y ~ log2(x)", {"log2(x)": lambda d: np.log2(d.x)}),
    ("y ~ log10(x)", {"log10(x)": lambda d: np.log10(d.x)}),
    ("y ~ exp(z)", {"exp(z)": lambda d: np.exp(d.z)}),
    ("y ~ expm1(z)", {"expm1(z)": lambda d: np.expm1(d.z)}),
    ("y ~ sqrt(x)", {"sqrt(x)": lambda d: np.sqrt(d.x)}),
    ("y ~ abs(z)", {"abs(z)": lambda d: np.abs(d.z)}),
    ("y ~ scale(w)", {"scale(w)": lambda d: (d.w - d.w.mean()) / _sd(d.w)}),
    ("y ~ scale(w, center=TRUE, scale=FALSE)", {1: lambda d: d.w - d.w.mean()}),
    # R's scale(x, center = FALSE) divides by the root mean square sqrt(sum(x^2) / (n - 1))
    ("y ~ scale(w, center=False)", {1: lambda d: d.w / np.sqrt(np.sum(d.w**2) / (len(d) - 1))}),
    ("y ~ center(w)", {"center(w)": lambda d: d.w - d.w.mean()}),
    ("y ~ poly(x, 2, raw=TRUE)", {"poly(x, 2, raw=TRUE)1": lambda d: d.x,
                                  "poly(x, 2, raw=TRUE)2": lambda d: d.x**2}),
    ("y ~ poly(x, degree=3, raw=True)", {3: lambda d: d.x**3}),
    ("y ~ I(x^2)", {"I(x^2)": lambda d: d.x**2}),
    ("y ~ I(x**2 + 1)", {1: lambda d: d.x**2 + 1}),
    ("y ~ I(-z / 2 - 1)", {1: lambda d: -d.z / 2 - 1}),
    ("y ~ I(z > 0)", {1: lambda d: (d.z > 0).astype(float)}),
    ("y ~ I(x >= 1) + I(z != 0)", {1: lambda d: (d.x >= 1).astype(float)}),
    ("y ~ log(abs(z) + 1)", {1: lambda d: np.log(np.abs(d.z) + 1)}),
    ("y ~ log(`my col`)", {1: lambda d: np.log(d["my col"])}),
    ("y ~ `my col` + my.z", {"`my col`": lambda d: d["my col"], "my.z": lambda d: d["my.z"]}),
    ("y ~ (x + z)^2", {"x": lambda d: d.x, "z": lambda d: d.z, "x:z": lambda d: d.x * d.z}),
    ("y ~ x*z - 1", {"x:z": lambda d: d.x * d.z}),
    ("y ~ 0 + x", {"x": lambda d: d.x}),
    ("y ~ C(f)", {"C(f)b": lambda d: (d.f == "b").astype(float)}),
    ("y ~ C(f, contr.treatment)", {2: lambda d: (d.f == "c").astype(float)}),
    ("y ~ C(f, Treatment)", {2: lambda d: (d.f == "c").astype(float)}),
    ("y ~ C(f, contr.sum)", {"C(f, contr.sum)1": lambda d: d.f.map({"a": 1, "b": 0, "c": -1}).astype(float)}),
    ("y ~ C(f, Sum)", {2: lambda d: d.f.map({"a": 0, "b": 1, "c": -1}).astype(float)}),
    ("y ~ C(f, 'contr.sum')", {1: lambda d: d.f.map({"a": 1, "b": 0, "c": -1}).astype(float)}),
    ("y ~ C(f, \"contr.helmert\")", {2: lambda d: d.f.map({"a": -1, "b": -1, "c": 2}).astype(float)}),
    ("y ~ C(f, Helmert)", {1: lambda d: d.f.map({"a": -1, "b": 1, "c": 0}).astype(float)}),
    ("y ~ C(f, contr.poly)", {1: lambda d: d.f.map({"a": -1, "b": 0, "c": 1}).astype(float) / np.sqrt(2)}),
    ("y ~ C(f, Poly)", {2: lambda d: d.f.map({"a": 1, "b": -2, "c": 1}).astype(float) / np.sqrt(6)}),
    ("y ~ C(f, contr.SAS)", {1: lambda d: (d.f == "a").astype(float)}),
    ("y ~ x %in% f", {"fa:x": lambda d: d.x * (d.f == "a")}),
]


@pytest.mark.parametrize("formula, expected", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_formula_columns(formula, expected, df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = build_design(formula, df)
    for key, func in expected.items():
        j = key if isinstance(key, int) else d.X_names.index(key)
        np.testing.assert_allclose(d.X[:, j], np.asarray(func(df), dtype=float), rtol=1e-12,
                                   err_msg=f"{formula}: column {d.X_names[j]}")


def test_every_transform_is_exercised():
    used = " ".join(f for f, _ in ACCEPTED)
    for name in ALLOWED_TRANSFORMS:
        assert f"{name}(" in used, name


def test_orthogonal_poly_columns(df):
    d = build_design("y ~ poly(x, 2) + (1 + poly(x, 2) | g)", df)
    assert d.X_names == ("(Intercept)", "poly(x, 2)1", "poly(x, 2)2")
    ref = _poly(df.x.to_numpy(), 2)
    for k in range(2):
        col = d.X[:, 1 + k]
        sign = np.sign(col @ ref[:, k])
        np.testing.assert_allclose(col, sign * ref[:, k], atol=1e-12)
    np.testing.assert_allclose(d.terms[0].Z[:, 1:], d.X[:, 1:])


def test_response_offset_cbind_and_random_sides(df):
    d = build_design("log(y) ~ x + offset(log(n)) + (1 + sqrt(x) | g)", df)
    np.testing.assert_allclose(d.y, np.log(df.y))
    np.testing.assert_allclose(d.offset, np.log(df.n))
    np.testing.assert_allclose(d.terms[0].Z, np.column_stack([np.ones(len(df)), np.sqrt(df.x)]))
    assert d.terms[0].coef_names == ("(Intercept)", "sqrt(x)")
    d = build_design("y/2 - 1 ~ x", df)
    np.testing.assert_allclose(d.y, df.y / 2 - 1)
    d = build_design("y^2 ~ x", df)
    np.testing.assert_allclose(d.y, df.y**2)
    d = build_design("cbind(s, n - s) ~ x + (1|g)", df, family="binomial")
    np.testing.assert_allclose(d.y, df.s)
    np.testing.assert_allclose(d.trials, df.n)
    d = build_design("I(z > 0) ~ x", df, family="bernoulli")
    np.testing.assert_allclose(d.y, (df.z > 0).astype(float))
    d = build_design("y ~ x + (x || g)", df)
    assert [t.coef_names for t in d.terms] == [("(Intercept)",), ("x",)]


def test_formulas_of_the_docs_notebooks_and_references_still_parse():
    from pathlib import Path
    import re
    root = Path(__file__).parent.parent
    found = set()
    for nb in (root / "notebooks").glob("*.ipynb"):
        for cell in json.loads(nb.read_text())["cells"]:
            found.update(re.findall(r"[\"']([^\"'\n]*~[^\"'\n]*)[\"']", "".join(cell["source"])))
    for ref in ("lme4_refs.json", "glmm_refs.json"):
        text = (root / "tests" / "reference" / ref).read_text()
        found.update(re.findall(r'"formula": "([^"]+)"', text))
    found.update(["extro ~ open + agree + social + (1 | school/class)",
                  "extro ~ scale(open) + poly(agree, 2) + class + (1 + scale(open) | school)",
                  "incidence ~ period + offset(log(size)) + (1|herd)",
                  "y ~ scale(x) + I(x^2) + C(f, Sum) + (1|g)", "y ~ x + (1 | `my group`)"])
    assert len(found) > 20
    for formula in found:
        parse_formula(("y " + formula) if formula.lstrip().startswith("~") else formula)


# ---------------------------------------------------------------- transforms=


def _logit(p):
    return np.log(p / (1 - p))


def test_transforms_escape_hatch(df):
    with pytest.raises(FormulaError, match="'logit' is not an allowed function"):
        build_design("y ~ logit(p) + (1|g)", df)
    m = bayesmix.Model("y ~ logit(p) + (1|g)", df, transforms={"logit": _logit})
    np.testing.assert_allclose(m.design.X[:, 1], _logit(df.p))
    assert m.design.X_names == ("(Intercept)", "logit(p)")
    # registered names are allowed in every evaluated piece, with literal keywords
    d = build_design("logit(p) ~ shrink(x, by=2) + offset(logit(p)) + (1 + shrink(x) | g)", df,
                     transforms={"logit": _logit, "shrink": lambda v, by=10: v / by})
    np.testing.assert_allclose(d.y, _logit(df.p))
    np.testing.assert_allclose(d.X[:, 1], df.x / 2)
    np.testing.assert_allclose(d.offset, _logit(df.p))
    np.testing.assert_allclose(d.terms[0].Z[:, 1], df.x / 10)
    # another name is still refused, and so are calls as keyword values
    with pytest.raises(FormulaError, match="'logit2' is not an allowed function"):
        build_design("y ~ logit2(p)", df, transforms={"logit": _logit})
    with pytest.raises(FormulaError, match="not a literal value"):
        build_design("y ~ logit(p, eps=open('x'))", df, transforms={"logit": _logit})
    for bad in ({"__import__": _logit}, {"log it": _logit}, {"logit": 3}, ["logit"]):
        with pytest.raises(FormulaError):
            build_design("y ~ x", df, transforms=bad)


def test_transforms_on_the_shortcuts_and_new_data(df):
    fit = bayesmix.lm("y ~ logit(p) + log(x) + scale(w) + C(f, contr.sum) + poly(z, 2)", df,
                      transforms={"logit": _logit})
    new = df.sample(10, random_state=1).assign(p=0.3, x=2.0, w=1.0)
    nd = fit.design.new_data(new, random=False)
    names = list(fit.design.X_names)
    np.testing.assert_allclose(nd.X[:, names.index("logit(p)")], _logit(0.3))
    np.testing.assert_allclose(nd.X[:, names.index("log(x)")], np.log(2.0))
    # scale() keeps the training centre and spread
    np.testing.assert_allclose(nd.X[:, names.index("scale(w)")], (1.0 - df.w.mean()) / _sd(df.w))
    pred = fit.predict(new)
    np.testing.assert_allclose(pred, nd.X @ fit.coef().to_numpy())
    np.testing.assert_allclose(fit.predict(df.head(5)), fit.fitted()[:5])
    with pytest.raises(FormulaError):
        bayesmix.glm("y ~ logit(p)", df)
    g = bayesmix.glm("s ~ logit(p) + offset(log(n))", df, family="poisson", transforms={"logit": _logit})
    np.testing.assert_allclose(g.predict(df.head(4)), g.linear_predictor()[:4])


def test_mixed_design_new_data(df):
    d = build_design("y ~ log(x) + C(f, Helmert) + offset(sqrt(n)) + (1 + log(x) | g)", df)
    new = df.head(7).assign(x=np.linspace(1, 3, 7), n=9.0)
    nd = d.new_data(new)
    np.testing.assert_allclose(nd.X[:, 1], np.log(new.x))
    np.testing.assert_allclose(nd.offset, 3.0)
    np.testing.assert_allclose(nd.terms[0].Z, np.column_stack([np.ones(7), np.log(new.x)]))
