"""Parse lme4 formula syntax into a response, a fixed part for formulaic and
the random-effects terms, expanded the way lme4's findbars() expands them."""
from __future__ import annotations

import re
from dataclasses import dataclass

from formulaic import Formula
from formulaic.errors import FormulaicError

from ..errors import FormulaError
from .safety import check_expression, check_group, check_rhs, check_transforms

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_QUOTES = "'\"`"
_NAME = r"(?:`[^`]+`|[A-Za-z.][A-Za-z0-9._]*)"
_GROUP_RE = re.compile(rf"\s*{_NAME}\s*(?:[:/]\s*{_NAME}\s*)*")


@dataclass(frozen=True)
class RandomPart:
    """One `(expr | group)` term after expanding `||` and `/`."""

    expr: str  # formulaic right-hand side of the term's covariates
    group: str  # lme4's name of the grouping factor, e.g. "class:school"
    correlated: bool  # False when the term came from `||`

    def __str__(self) -> str:
        return f"({self.expr} {'|' if self.correlated else '||'} {self.group})"


@dataclass(frozen=True)
class ParsedFormula:
    text: str
    response: str
    response_kind: str  # "plain" | "cbind"
    cbind: tuple[str, str] | None
    fixed: str
    offset: str | None
    random: tuple[RandomPart, ...]

    def __str__(self) -> str:
        lines = [
            f"Formula: {self.text.strip()}",
            f"  response: {self.response}"
            + (f"  (successes: {self.cbind[0]}, failures: {self.cbind[1]})" if self.cbind else ""),
            f"  fixed:    {self.fixed}",
        ]
        if self.offset is not None:
            lines.append(f"  offset:   {self.offset}")
        for i, part in enumerate(self.random):
            lines.append(f"  {'random:  ' if i == 0 else '         '} {part}")
        return "\n".join(lines)


# ---------------------------------------------------------------- scanning


def _top_level(text: str) -> list[tuple[int, str]]:
    """(position, char) of every character at bracket depth 0 outside quotes.
    Raises FormulaError on unbalanced brackets or an unterminated quote."""
    out: list[tuple[int, str]] = []
    stack: list[tuple[str, int]] = []
    quote: tuple[str, int] | None = None
    for i, ch in enumerate(text):
        if quote is not None:
            if ch == quote[0]:
                quote = None
            continue
        if ch in _QUOTES:
            quote = (ch, i)
        elif ch in _OPEN:
            if not stack:
                out.append((i, ch))
            stack.append((ch, i))
            continue
        elif ch in _CLOSE:
            if not stack or stack[-1][0] != _CLOSE[ch]:
                raise FormulaError(
                    f"unbalanced parentheses: unexpected {ch!r} at position {i} in {text!r}"
                )
            stack.pop()
        if not stack:
            out.append((i, ch))
    if quote is not None:
        raise FormulaError(f"unterminated quote {quote[0]} at position {quote[1]} in {text!r}")
    if stack:
        ch, i = stack[-1]
        raise FormulaError(
            f"unbalanced parentheses: {ch!r} at position {i} is never closed in {text!r}"
        )
    return out


def _squash(text: str) -> str:
    """Collapse whitespace runs (outside quotes) to single spaces."""
    out, quote = [], None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in _QUOTES:
            quote = ch
        elif ch.isspace():
            if out and out[-1] != " ":
                out.append(" ")
            continue
        out.append(ch)
    return "".join(out).strip()


def _summands(text: str, where: str) -> list[tuple[str, str]]:
    """Split at top-level + and -, returning (sign, summand) pairs."""
    pieces, sign, start = [], "+", 0
    for i, ch in _top_level(text):
        if ch in "+-":
            pieces.append((sign, text[start:i].strip()))
            sign, start = ch, i + 1
    pieces.append((sign, text[start:].strip()))
    if pieces[0][1] == "" and len(pieces) > 1:  # leading unary sign
        pieces = pieces[1:]
    for k, (_, body) in enumerate(pieces):
        if body == "":
            what = "nothing after the last operator" if k == len(pieces) - 1 else "an empty term"
            raise FormulaError(f"{where} {text.strip()!r} has {what}")
    return [(s, _squash(b)) for s, b in pieces]


def _has_bar(text: str) -> bool:
    """True if text has a '|' outside quotes, at any depth."""
    quote = None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in _QUOTES:
            quote = ch
        elif ch == "|":
            return True
    return False


def _join(summands: list[tuple[str, str]]) -> str:
    text = ""
    for sign, body in summands:
        if not text:
            text = body if sign == "+" else f"-{body}"
        else:
            text += f" {sign} {body}"
    return text


def _unwrap(text: str) -> str | None:
    """Inside of `( ... )` if the parentheses enclose all of text, else None."""
    text = text.strip()
    if not text.startswith("("):
        return None
    depth0 = [i for i, _ in _top_level(text)]
    # a fully wrapped text has only its first and last character at depth 0
    return text[1:-1] if depth0 == [0, len(text) - 1] and text.endswith(")") else None


def _call_args(text: str, fname: str) -> list[str] | None:
    """Arguments of `fname(...)` when text is exactly one such call, else None."""
    m = re.match(rf"\s*{fname}\s*\(", text)
    if not m:
        return None
    inner = _unwrap(text[m.end() - 1 :])
    if inner is None:
        return None
    args, start = [], 0
    for i, ch in _top_level(inner):
        if ch == ",":
            args.append(inner[start:i])
            start = i + 1
    args.append(inner[start:])
    return [_squash(a) for a in args]


# ---------------------------------------------------------------- bars


def _check_formulaic(rhs: str, where: str) -> list:
    """Parse rhs with formulaic; return its terms (R's degree order)."""
    try:
        return list(Formula(rhs))
    except (FormulaicError, ValueError, TypeError, SyntaxError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FormulaError(f"cannot parse {where} {rhs!r}: {detail}") from None


def _group_names(group: str, term: str) -> list[str]:
    """lme4's grouping factor names for `group`, expanding a/b/c like expandSlash."""
    if not _GROUP_RE.fullmatch(group):
        raise FormulaError(
            f"grouping factor {group!r} in {term} must be variable names joined by "
            "':' (interaction) or '/' (nesting)"
        )
    comps = [":".join(n.strip() for n in c.split(":")) for c in group.split("/")]
    for comp in comps:
        for name in comp.split(":"):
            check_group(name, term)
    names = [comps[0]]
    for comp in comps[1:]:
        inner = names[-1]
        names.append(f"{comp}:({inner})" if ":" in inner else f"{comp}:{inner}")
    return names[::-1]  # lme4 lists the innermost nesting first


def _bar_split(inner: str, term: str) -> tuple[str, list[str], bool]:
    """(left side, grouping factor names, double bar) of `lhs | group`; no
    formulaic yet (the safety check comes first)."""
    bars = [i for i, ch in _top_level(inner) if ch == "|"]
    double = len(bars) == 2 and bars[1] == bars[0] + 1
    if len(bars) > 1 and not double:
        raise FormulaError(f"random-effects term {term} has more than one '|'")
    lhs, rhs = inner[: bars[0]].strip(), inner[bars[-1] + 1 :].strip()
    if not lhs:
        raise FormulaError(
            f"random-effects term {term} has an empty left side of the bar; "
            "write e.g. (1 | group) for a varying intercept"
        )
    if not rhs:
        raise FormulaError(f"random-effects term {term} has no grouping factor right of the bar")
    expr = _join(_summands(lhs, f"the left side of {term}:"))
    return expr, _group_names(_squash(rhs), term), double


def _bar_parts(expr: str, groups: list[str], double: bool, term: str) -> list[RandomPart]:
    terms = _check_formulaic(expr, f"the left side of {term}:")
    if not terms:
        raise FormulaError(f"random-effects term {term} has no covariates (not even an intercept)")
    if not double:
        return [RandomPart(expr, g, True) for g in groups]
    # lme4's expandDoubleVerts: intercept first, then one term per term label
    labels = [str(t) for t in terms]
    exprs = (["1"] if "1" in labels else []) + [f"0 + {t}" for t in labels if t != "1"]
    return [RandomPart(e, g, False) for e in exprs for g in groups]


# ---------------------------------------------------------------- main


def parse_formula(text: str, transforms=None) -> ParsedFormula:
    """Parse an lme4-style formula such as `y ~ x + (1 + x | g)`.

    Every piece that will be evaluated (response, fixed part, offset, the
    random terms' left sides) passes the allow-list of bayesmix.formula.safety
    before formulaic sees any of it; `transforms` (a dict name -> function, or
    just the names) are the caller's own functions the formula may call.

    Raises FormulaError naming the problem for malformed or disallowed input."""
    transforms = check_transforms(transforms) if isinstance(transforms, dict) else transforms
    if not isinstance(text, str):
        raise FormulaError(f"formula must be a string, not {type(text).__name__}")
    tildes = [i for i, ch in _top_level(text) if ch == "~"]
    if not tildes:
        raise FormulaError(f"formula {text.strip()!r} has no '~' (expected 'response ~ predictors')")
    if len(tildes) > 1:
        raise FormulaError(f"formula {text.strip()!r} has more than one '~'")
    lhs, rhs = _squash(text[: tildes[0]]), text[tildes[0] + 1 :]
    if not lhs:
        raise FormulaError(f"formula {text.strip()!r} has an empty response (left of '~')")
    if not rhs.strip():
        raise FormulaError(f"formula {text.strip()!r} has nothing right of '~'")

    cbind_args = _call_args(lhs, "cbind")
    if cbind_args is not None:
        if len(cbind_args) != 2 or not all(cbind_args):
            raise FormulaError(
                f"cbind() in the response {lhs!r} needs exactly two arguments: "
                "cbind(successes, failures)"
            )
        cbind = (cbind_args[0], cbind_args[1])
        response, kind = f"cbind({cbind[0]}, {cbind[1]})", "cbind"
    else:
        if any(ch in "|" for _, ch in _top_level(lhs)):
            raise FormulaError(f"the response {lhs!r} cannot contain '|'")
        cbind, response, kind = None, lhs, "plain"

    if cbind is not None:
        for part in cbind:
            check_expression(part, "response", transforms)
    else:
        check_expression(lhs, "response", transforms)

    fixed: list[tuple[str, str]] = []
    offsets: list[str] = []
    bars: list[tuple[str, list[str], bool, str]] = []
    for sign, body in _summands(rhs, "the right side"):
        inner = _unwrap(body)
        while inner is not None and _unwrap(inner) is not None:
            inner = _unwrap(inner)
        if inner is not None and any(ch == "|" for _, ch in _top_level(inner)):
            if sign == "-":
                raise FormulaError(f"cannot subtract the random-effects term -{body}")
            term = f"({_squash(inner)})"
            bars.append((*_bar_split(inner, term), term))
            continue
        if _has_bar(body):
            raise FormulaError(
                f"random-effects term {body!r} must be a separate term in parentheses, "
                "e.g. y ~ x + (1 | g)"
            )
        off = _call_args(body, "offset")
        if off is not None:
            if sign == "-" or len(off) != 1 or not off[0]:
                raise FormulaError(f"offset term {sign}{body} must be offset(expression), added with '+'")
            offsets.append(off[0])
            continue
        fixed.append((sign, body))

    fixed_text = _join(fixed) if fixed else "1"
    # the allow-list, before formulaic parses anything
    check_rhs(fixed_text, "fixed-effects part", transforms)
    for off in offsets:
        check_expression(off, "offset", transforms)
    for expr, _, _, term in bars:
        check_rhs(expr, f"left side of the random-effects term {term}", transforms)

    random: list[RandomPart] = []
    for expr, groups, double, term in bars:
        random.extend(_bar_parts(expr, groups, double, term))
    _check_formulaic(fixed_text, "the fixed-effects part")
    return ParsedFormula(
        text=text,
        response=response,
        response_kind=kind,
        cbind=cbind,
        fixed=fixed_text,
        offset=" + ".join(offsets) if offsets else None,
        random=tuple(random),
    )
