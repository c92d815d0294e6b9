"""Distributional formulas: brms's ``bf(y ~ x + (1 | g), sigma ~ x)``, written
``bf("y ~ x + (1 | g)", sigma="~ x")``.

The main formula models mu; each keyword models one distributional parameter of the family
(``sigma``, ``shape``, ``nu``, ``phi``, ``zi``, ``hu``, ``disc``: the `FamilySpec.dpars` of
bayesmix.families, in brms's names) on its link scale (log for sigma, logit for zi, ...),
with fixed effects and ``(... | g)`` terms as in the main formula. A parameter formula is
one-sided: it has no response.

Every formula passes the same allow-list as a model's formula (bayesmix.formula.safety, through
`parse_formula`) before anything else sees it: nothing in a formula is executed as code.
Which parameters a family has is checked by `check_dpars` once the family is known.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import FamilyError, FormulaError
from ..families import ALL_FAMILIES, Family, get_family
from .parse import _top_level, parse_formula

# every distributional parameter some family has (brms's names)
KNOWN_DPARS: tuple[str, ...] = tuple(dict.fromkeys(
    d.name for spec in ALL_FAMILIES.values() for d in spec.dpars))


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_name(name) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise FormulaError(f"{name!r} is not a distributional parameter name; "
                           f"known: {', '.join(KNOWN_DPARS)}")
    if name == "mu":
        raise FormulaError("mu is modelled by the main formula; give formulas only for the "
                           f"other distributional parameters ({', '.join(KNOWN_DPARS)})")
    if name not in KNOWN_DPARS:
        raise FormulaError(f"unknown distributional parameter {name!r}; known (brms's names): "
                           f"{', '.join(KNOWN_DPARS)}")


def _right_side(name: str, text) -> str:
    """The right side of a one-sided parameter formula ``~ rhs``."""
    if not isinstance(text, str):
        raise FormulaError(f"the {name} formula must be a string such as '~ x', "
                           f"not {type(text).__name__}")
    if not text.strip():
        raise FormulaError(f"the {name} formula is empty; write e.g. {name}='~ x' "
                           f"(or {name}='~ 1' for a constant)")
    tildes = [i for i, ch in _top_level(text) if ch == "~"]
    if not tildes:
        raise FormulaError(f"the {name} formula {_clip(text)!r} has no '~'; write it one-sided, "
                           f"e.g. {name}='~ {_clip(text.strip(), 40)}'")
    if len(tildes) > 1:
        raise FormulaError(f"the {name} formula {_clip(text)!r} has more than one '~'")
    lhs, rhs = text[: tildes[0]].strip(), text[tildes[0] + 1:]
    if lhs:
        raise FormulaError(f"the {name} formula {_clip(text)!r} is two-sided: a distributional "
                           f"parameter's formula has no response; write {name}='~ "
                           f"{_clip(rhs.strip(), 40)}'")
    if not rhs.strip():
        raise FormulaError(f"the {name} formula {_clip(text)!r} has nothing right of '~'; "
                           f"write e.g. {name}='~ 1' for a constant")
    return rhs


@dataclass(frozen=True)
class DistributionalFormula:
    """A main formula (mu) and one-sided formulas for distributional parameters, in the order
    given: ``dpars`` = (("sigma", "~ x"), ...). Build it with `bf` (which also runs the
    formula allow-list); constructing it directly checks the structure (names, one-sided,
    not empty, no duplicates)."""

    formula: str
    dpars: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.formula, str):
            raise FormulaError(f"formula must be a string, not {type(self.formula).__name__}")
        if not isinstance(self.dpars, tuple) or not all(
                isinstance(p, tuple) and len(p) == 2 for p in self.dpars):
            raise FormulaError("dpars must be a tuple of (name, formula) pairs")
        seen = set()
        for name, text in self.dpars:
            _check_name(name)
            if name in seen:
                raise FormulaError(f"the {name} formula is given twice")
            seen.add(name)
            _right_side(name, text)

    def __str__(self) -> str:
        return "\n".join([self.formula.strip()]
                         + [f"{name} {text.strip()}" for name, text in self.dpars])


def validate(dformula: DistributionalFormula, transforms=None) -> DistributionalFormula:
    """Run every formula of `dformula` through parse_formula's checks (the allow-list of
    bayesmix.formula.safety first): the main formula as is, each parameter formula as the
    right side of ``<name> ~ ...``. `transforms` (names or a dict of the caller's own
    functions) as for parse_formula. Raises FormulaError naming the formula at fault."""
    parse_formula(dformula.formula, transforms)
    for name, text in dformula.dpars:
        rhs = _right_side(name, text)
        try:
            parse_formula(f"{name} ~ {rhs}", transforms)
        except FormulaError as exc:
            raise FormulaError(f"the {name} formula {_clip(text)!r}: {exc}") from None
    return dformula


def bf(formula: str, *, transforms: Mapping | Iterable[str] | None = None,
       **dpars: str) -> DistributionalFormula:
    """brms's bf(): ``bf("y ~ x + (1 | g)", sigma="~ x", zi="~ 1 + (1 | g)")``.

    Each keyword is a distributional parameter (brms's name) with a one-sided formula; the
    family's own parameters are checked by `check_dpars` when the family is known. Every
    formula passes the formula allow-list now (nothing is executed); `transforms` names the
    caller's own functions the formulas may call, as `Model(transforms=...)`."""
    return validate(DistributionalFormula(formula, tuple(dpars.items())), transforms)


def dpar_formulas(dformula: DistributionalFormula | str) -> dict[str, str]:
    """{parameter: its formula} ({} for a plain formula string)."""
    if isinstance(dformula, str):
        return {}
    if not isinstance(dformula, DistributionalFormula):
        raise FormulaError(f"expected a formula string or bf(...), not "
                           f"{type(dformula).__name__}")
    return dict(dformula.dpars)


def check_dpars(dformula: DistributionalFormula | str, family: str | Family):
    """The family's `DPar` records of the parameters `dformula` models, in its order; raises
    FamilyError naming a parameter the family does not have, and the ones it has. The family
    may be one no method fits yet (a planned family)."""
    fam = get_family(family, fittable=False)
    table = {d.name: d for d in fam.spec.dpars}
    out = []
    for name in dpar_formulas(dformula):
        if name not in table:
            has = ", ".join(table) if table else "none (only mu)"
            raise FamilyError(f"family {fam.name!r} has no distributional parameter {name!r}; "
                              f"its parameters: {has}")
        out.append(table[name])
    return tuple(out)
