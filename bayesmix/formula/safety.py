"""A formula is data, not code: the allow-list every formula passes before
anything evaluates it.

formulaic evaluates the response, the offset and every function-call factor
of a formula with Python's eval(), so an unchecked formula can run arbitrary
code (`y ~ I(__import__('os').system('...'))`, `y ~ {...}`). parse_formula
therefore checks each piece that will be evaluated before formulaic (or
Python) sees it:

- the formula parts (fixed part, random-term left sides) are tokenized the
  way formulaic's tokenizer does it, so the pieces checked here are exactly
  the pieces formulaic will hand to eval(); anything outside the formula
  operators `+ - * / : ^ ** %in% ( )`, numbers and names is refused;
- each evaluated piece (a call such as `log(x + 1)`, the response, the
  offset, the cbind() parts) is parsed with `ast` and walked with an
  allow-list: names, numbers, arithmetic, comparisons inside I(), and calls
  of the transforms in ALLOWED_TRANSFORMS or of functions the caller
  registered explicitly (`transforms={...}`). Everything else raises
  FormulaError quoting the culprit.

bayesmix.design.transforms provides the implementations and the (minimal)
evaluation context formulaic gets."""
from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Mapping

from ..errors import FormulaError

# name -> (kinds of the positional arguments, {keyword: kind}); the first
# positional argument of every transform is an expression over the data, the
# others are literals of the given kind ("number", "int", "bool", "flag" =
# bool or number, "contrast")
_SPECS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "I": (("expr",), {}),
    "log": (("expr", "number"), {"base": "number"}),
    "log1p": (("expr",), {}),
    "log2": (("expr",), {}),
    "log10": (("expr",), {}),
    "exp": (("expr",), {}),
    "expm1": (("expr",), {}),
    "sqrt": (("expr",), {}),
    "abs": (("expr",), {}),
    "scale": (("expr", "flag", "flag"), {"center": "flag", "scale": "flag"}),
    "center": (("expr",), {}),
    "poly": (("expr", "int"), {"degree": "int", "raw": "bool"}),
    "C": (("expr", "contrast"), {}),
}
# keyword -> the positional slot it also names
_POSITION = {"log": {"base": 1}, "scale": {"center": 1, "scale": 2}, "poly": {"degree": 1}}
ALLOWED_TRANSFORMS: tuple[str, ...] = tuple(sorted(_SPECS, key=str.lower))

# contrasts C() accepts: R's names (also as strings, R's C(f, "contr.sum")) and
# formulaic/patsy's class names; the design code supports exactly these codings
R_CONTRASTS = ("contr.treatment", "contr.sum", "contr.helmert", "contr.poly", "contr.SAS")
PATSY_CONTRASTS = ("Treatment", "Sum", "Helmert", "Poly")
# R's logical literals, usable as keyword values (poly(x, 2, raw = TRUE))
R_LOGICALS = {"TRUE": True, "FALSE": False}

_WORD = re.compile(r"[.\w]")
# formulaic's UNQUOTED_BACKTICK_MATCHER (formulaic.utils.code): quoted strings
# first, then backticks, so backquoted names are found exactly as formulaic
# finds them when it sanitizes a Python factor before eval()
_BACKTICKS = re.compile(r"(\\\"|\"(?:\\\"|[^\"])*\"|\\'|'(?:\\'|[^'])*'|`)")
_PLACEHOLDER = "_bayesmix_bq{}_"
_FORMULA_OPS = ("%in%", "**", "+", "-", "*", "/", ":", "^")


def _fail(message: str):
    raise FormulaError(f"formula: {message}")


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dunder(name: str) -> bool:
    return any(part.startswith("__") for part in name.split("."))


def check_transforms(transforms) -> dict:
    """The caller's own transforms: a mapping of identifier -> callable."""
    if transforms is None:
        return {}
    if not isinstance(transforms, Mapping):
        raise FormulaError(
            f"transforms must be a dict of name -> function, not {type(transforms).__name__}"
        )
    out = {}
    for name, func in transforms.items():
        if (not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name)
                or name.startswith("__") or name in R_LOGICALS):
            raise FormulaError(f"transforms: {name!r} is not a usable function name")
        if not callable(func):
            raise FormulaError(f"transforms: {name!r} must be a function, not {type(func).__name__}")
        out[name] = func
    return out


def _names(transforms) -> frozenset[str]:
    if transforms is None:
        return frozenset()
    if isinstance(transforms, Mapping):
        return frozenset(check_transforms(transforms))
    return frozenset(transforms)


# ---------------------------------------------------------------- Python pieces


def _sanitize(code: str, where: str) -> tuple[str, dict[str, str]]:
    """Backquoted names -> placeholder identifiers (as formulaic does);
    returns the code and placeholder -> name."""
    out, names, parts = [], {}, iter(_BACKTICKS.split(code))
    for part in parts:
        if part != "`":
            out.append(part)
            continue
        inner = []
        for more in parts:
            if more == "`":
                break
            inner.append(more)
        else:
            _fail(f"unterminated backquote in {code!r} in the {where}")
        if "".join(inner).startswith("__"):
            _fail(f"{'`' + ''.join(inner) + '`'!r} is not allowed: names starting with '__' are "
                  f"never data columns (in the {where})")
        name = _PLACEHOLDER.format(len(names))
        names[name] = "".join(inner)
        out.append(f" {name} ")
    return "".join(out).strip(), names


class _Checker:
    """Walks one evaluated expression with the allow-list."""

    def __init__(self, source: str, where: str, user: frozenset[str], quoted: dict[str, str]):
        self.source, self.where, self.user, self.quoted = source, where, user, quoted

    def fail(self, what: str, node: ast.AST | None = None, detail: str = "") -> None:
        piece = _clip(ast.unparse(node), 200) if node is not None else ""
        for placeholder, name in self.quoted.items():  # backquoted names as written
            piece = piece.replace(placeholder, f"`{name}`")
        culprit = f"{piece!r} " if piece else ""
        _fail(f"{culprit}{what} (in {_clip(self.source)!r}, the {self.where}){detail}")

    def allowed(self) -> str:
        names = list(ALLOWED_TRANSFORMS) + sorted(self.user - set(_SPECS))
        return f"; allowed: {', '.join(names)} (pass your own with transforms={{...}})"

    # -- expressions
    def expr(self, node: ast.AST, in_i: bool) -> None:
        if isinstance(node, ast.Name):
            if node.id in self.quoted:
                return
            if node.id.startswith("__"):
                self.fail("is not allowed: names starting with '__' are never data columns", node)
            return
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return
            if isinstance(value, str):
                self.fail("is not allowed: a string may only name a contrast in C()", node)
            self.fail("is not an allowed constant", node)
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
                self.fail(f"uses the operator {type(node.op).__name__}, which is not allowed", node,
                          "; allowed: + - * / ^ **")
            self.expr(node.left, in_i)
            self.expr(node.right, in_i)
            return
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                self.fail(f"uses the operator {type(node.op).__name__}, which is not allowed", node)
            self.expr(node.operand, in_i)
            return
        if isinstance(node, ast.Compare):
            if not in_i:
                self.fail("is a comparison, allowed only inside I()", node)
            for op in node.ops:
                if not isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)):
                    self.fail(f"uses the comparison {type(op).__name__}, which is not allowed", node)
            for sub in [node.left, *node.comparators]:
                self.expr(sub, in_i)
            return
        if isinstance(node, ast.Call):
            self.call(node, in_i)
            return
        self.fail(f"is not allowed: {_describe(node)} cannot appear in a formula", node)

    def call(self, node: ast.Call, in_i: bool) -> None:
        func = node.func
        if not isinstance(func, ast.Name) or func.id in self.quoted:
            # name the innermost culprit: __import__ in __import__('os').system
            for sub in ast.walk(func):
                if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name)
                        and sub.func.id not in self.user and sub.func.id not in _SPECS):
                    self.fail("is not an allowed function", sub.func, self.allowed())
            self.fail("is not an allowed function", func, self.allowed())
        name = func.id
        if name in self.user:
            positional, keywords = None, None
        elif name in _SPECS:
            positional, keywords = _SPECS[name]
        else:
            hint = ""
            if name in ("offset", "cbind"):
                hint = f"; {name}() is only allowed as a whole term" + (
                    " of the right side" if name == "offset" else " on the left of '~'")
            self.fail("is not an allowed function", func, hint + self.allowed())
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.fail("is not allowed: starred arguments", arg)
        if not node.args:
            self.fail(f"needs an argument: {name}(...)", node)
        if positional is not None and len(node.args) > len(positional):
            self.fail(f"has too many arguments: {name}() takes at most {len(positional)}", node)
        kinds = positional or ("expr",) * len(node.args)
        for arg, kind in zip(node.args, kinds):
            if kind == "expr":
                self.expr(arg, in_i or name == "I")
            else:
                self.literal(arg, kind, node)
        for kw in node.keywords:
            if kw.arg is None:
                self.fail("is not allowed: ** arguments", kw.value, f" (**{ast.unparse(kw.value)})")
            if keywords is not None and kw.arg not in keywords:
                ok = ", ".join(f"{k}=" for k in keywords) or "none"
                self.fail(f"has the keyword argument {kw.arg}=, which {name}() does not take "
                          f"(keywords: {ok})", node)
            if _POSITION.get(name, {}).get(kw.arg, len(node.args)) < len(node.args):
                self.fail(f"gives {kw.arg} twice", node)
            self.literal(kw.value, keywords[kw.arg] if keywords is not None else "any", node)

    def literal(self, node: ast.AST, kind: str, call: ast.Call) -> None:
        """A literal argument value: numbers, TRUE/FALSE/True/False, contrast names."""
        if kind == "contrast":
            ok = (
                (isinstance(node, ast.Constant) and node.value in R_CONTRASTS)
                or (isinstance(node, ast.Name) and node.id in PATSY_CONTRASTS)
                or (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and f"{node.value.id}.{node.attr}" in R_CONTRASTS)
            )
            if not ok:
                self.fail("is not a known contrast", node,
                          f"; use one of {', '.join(R_CONTRASTS + PATSY_CONTRASTS)}")
            return
        value = node
        if isinstance(value, ast.UnaryOp) and isinstance(value.op, (ast.USub, ast.UAdd)):
            value = value.operand
            if not (isinstance(value, ast.Constant) and type(value.value) in (int, float)):
                self.fail("is not a literal value", node, "; arguments here must be numbers or TRUE/FALSE")
        logical = (isinstance(value, ast.Name) and value.id in R_LOGICALS) or (
            isinstance(value, ast.Constant) and isinstance(value.value, bool))
        number = isinstance(value, ast.Constant) and type(value.value) in (int, float)
        good = {
            "number": number,
            "int": isinstance(value, ast.Constant) and type(value.value) is int,
            "bool": logical,
            "flag": logical or number,
            "any": logical or number,
        }[kind]
        if not good:
            want = {"number": "a number", "int": "a whole number", "bool": "TRUE or FALSE",
                    "flag": "TRUE, FALSE or a number", "any": "a number or TRUE/FALSE"}[kind]
            self.fail(f"is not a literal value: this argument of {ast.unparse(call.func)}() "
                      f"must be {want}", node)


def _describe(node: ast.AST) -> str:
    return {
        ast.Attribute: "attribute access",
        ast.Subscript: "subscripts",
        ast.Lambda: "lambda",
        ast.ListComp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.GeneratorExp: "a generator",
        ast.NamedExpr: "assignment (:=)",
        ast.Starred: "starred arguments",
        ast.Dict: "a dict",
        ast.Set: "a set",
        ast.List: "a list",
        ast.Tuple: "a tuple",
        ast.IfExp: "if-else",
        ast.BoolOp: "and/or",
        ast.JoinedStr: "an f-string",
        ast.Slice: "a slice",
    }.get(type(node), f"Python's {type(node).__name__}")


def check_expression(code: str, where: str, transforms=None, in_i: bool = True) -> None:
    """Check one piece formulaic evaluates as Python (the response, a cbind()
    part, the offset, or a call factor of the right side)."""
    if "\\" in code:
        _fail(f"backslashes are not allowed (in {_clip(code)!r}, the {where})")
    user = _names(transforms)
    sanitized, quoted = _sanitize(code, where)
    sanitized = sanitized.replace("^", "**")  # R's power (strings never get this far)
    try:
        tree = ast.parse(sanitized, mode="eval")
    except SyntaxError as exc:
        _fail(f"cannot parse {_clip(code)!r} in the {where}: {exc.msg}")
    _Checker(code, where, user, quoted).expr(tree.body, in_i)


# ---------------------------------------------------------------- formula parts


def _python_token(text: str, start: int, where: str) -> int:
    """End of a Python factor `name(...)` / `name[...]` starting at `start`
    (just past the name), with formulaic's tokenizer rules: (, [ and ` nest,
    quotes do not."""
    i, n = start, len(text)
    while i < n and text[i] in "([":
        stack = [")" if text[i] == "(" else "]"]
        i += 1
        while stack:
            if i >= n:
                _fail(f"{_clip(text[start:])!r} is never closed (in the {where})")
            ch = text[i]
            if stack[-1] == "`":
                if ch == "`":
                    stack.pop()
            elif ch == stack[-1]:
                stack.pop()
            elif ch in "`([":
                stack.append({"`": "`", "(": ")", "[": "]"}[ch])
            i += 1
    return i


def formula_factors(rhs: str, where: str) -> list[tuple[str, str]]:
    """(kind, text) of every operand of a formula right side, kind "name",
    "number" or "call"; refuses anything formulaic would treat as code other
    than calls (python blocks, strings, subscripts without a name, ...)."""
    if "\\" in rhs:
        _fail(f"backslashes are not allowed (in {_clip(rhs)!r}, the {where})")
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(rhs)
    while i < n:
        ch = rhs[i]
        if ch.isspace():
            i += 1
        elif ch in "'\"":
            j = rhs.find(ch, i + 1)
            piece = rhs[i : j + 1] if j > 0 else rhs[i:]
            _fail(f"{_clip(piece)!r} is not allowed: strings are not formula terms (in the {where})")
        elif ch == "{":
            j = rhs.find("}", i)
            piece = rhs[i : j + 1] if j > 0 else rhs[i:]
            _fail(f"{_clip(piece)!r} is not allowed: Python blocks {{...}} are not formula terms "
                  f"(in the {where})")
        elif ch == "`":
            j = rhs.find("`", i + 1)
            if j < 0:
                _fail(f"unterminated backquote in {_clip(rhs[i:])!r} (in the {where})")
            if rhs[i + 1 : j].startswith("__"):
                _fail(f"{rhs[i : j + 1]!r} is not allowed: names starting with '__' are never "
                      f"data columns (in the {where})")
            tokens.append(("name", rhs[i : j + 1]))
            i = j + 1
        elif ch == "%":
            j = rhs.find("%", i + 1)
            op = rhs[i : j + 1] if j > 0 else rhs[i:]
            if op != "%in%":
                _fail(f"the operator {op!r} is not supported (in the {where}); "
                      "formula operators: + - * / : ^ %in%")
            tokens.append(("op", op))
            i = j + 1
        elif ch in "()":
            tokens.append((ch, ch))
            i += 1
        elif _WORD.match(ch):
            j = i
            while j < n and _WORD.match(rhs[j]):
                j += 1
            word = rhs[i:j]
            if j < n and rhs[j] in "([":
                end = _python_token(rhs, j, where)
                tokens.append(("call", rhs[i:end]))
                i = end
                continue
            if word[0].isdigit() or (word[0] == "." and len(word) > 1 and word[1].isdigit()):
                try:
                    float(word)
                except ValueError:
                    _fail(f"{word!r} is not a number or a name (in the {where})")
                tokens.append(("number", word))
            else:
                if _dunder(word):
                    _fail(f"{word!r} is not allowed: names starting with '__' are never data "
                          f"columns (in the {where})")
                tokens.append(("name", word))
            i = j
        else:
            op = rhs[i : i + 2] if rhs.startswith("**", i) else ch
            if op not in _FORMULA_OPS:
                _fail(f"unexpected {op!r} in {_clip(rhs)!r} (in the {where}); "
                      "formula operators: + - * / : ^ %in%")
            tokens.append(("op", op))
            i += len(op)
    # operands and operators alternate; + and - may also be unary
    want_operand, depth, prev = True, 0, None
    for kind, text in tokens:
        if want_operand:
            if kind == "(":
                depth += 1
            elif kind in ("name", "number", "call"):
                want_operand = False
            elif not (kind == "op" and text in "+-"):
                _fail(f"expected a term before {text!r} in {_clip(rhs)!r} (in the {where})")
        else:
            if kind == ")":
                depth -= 1
                if depth < 0:
                    _fail(f"unbalanced ')' in {_clip(rhs)!r} (in the {where})")
            elif kind == "op":
                want_operand = True
            else:
                _fail(f"missing operator between {prev!r} and {text!r} in {_clip(rhs)!r} "
                      f"(in the {where})")
        prev = text
    if want_operand or depth:
        _fail(f"{_clip(rhs)!r} is incomplete (in the {where})")
    return [(k, t) for k, t in tokens if k in ("name", "number", "call")]


def check_rhs(rhs: str, where: str, transforms=None) -> None:
    """Check a formula right side (fixed part, a random term's left side)."""
    for kind, text in formula_factors(rhs, where):
        if kind == "call":
            check_expression(text, where, transforms, in_i=False)


def check_parsed(parsed, transforms=None) -> None:
    """Check every evaluated piece of a ParsedFormula (built by parse_formula
    or by hand)."""
    if parsed.cbind is not None:
        for part in parsed.cbind:
            check_expression(part, "response", transforms)
    else:
        check_expression(parsed.response, "response", transforms)
    check_rhs(parsed.fixed, "fixed-effects part", transforms)
    if parsed.offset is not None:
        check_expression(parsed.offset, "offset", transforms)
    for part in parsed.random:
        check_rhs(part.expr, f"left side of the random-effects term {part}", transforms)
        check_group(part.group, str(part))


_GROUP_NAME = re.compile(r"`[^`]+`|[^:()\s`]+")


def check_group(group: str, term: str) -> None:
    """A grouping factor is looked up, never evaluated: names joined by ':'
    (and the parentheses of expanded nesting, "c:(b:a)")."""
    if _GROUP_NAME.sub("", group).strip(":() ") or not _GROUP_NAME.search(group):
        _fail(f"grouping factor {group!r} in {term} must be variable names joined by ':' or '/'")
    for name in _GROUP_NAME.findall(group):
        if name.startswith("`"):
            continue
        if _dunder(name) or not re.fullmatch(r"[.\w]+", name):
            _fail(f"{name!r} in the grouping factor of {term} is not allowed: it must be a "
                  "column name")

