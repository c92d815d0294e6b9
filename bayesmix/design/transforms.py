"""The functions a formula may call, and the evaluation context formulaic gets.

How formulaic evaluates (formulaic 1.2, utils/stateful_transforms.py
stateful_eval): a factor such as `log(x + 1)` is parsed with `ast`, stateful
transforms get their state injected, and the code runs through
`eval(code, {}, LayeredMapping(<formulaic internals>, env))` where `env` layers
the data columns, the `context=` mapping the caller passes and formulaic's own
TRANSFORMS (np, log, bs, hashed, Q, C, contr, ...). Two consequences:

- the globals dict is a fresh `{}`, so Python inserts the real builtins
  (`__import__`, `open`, `eval`, ...); formulaic offers no way to replace
  them. What we can do is shadow them: names resolve in the locals mapping
  first, so the context we pass maps every builtin name and every formulaic
  transform we do not allow to a `_Blocked` object that raises FormulaError.
  (Nested scopes such as lambdas or comprehensions would bypass the locals
  mapping, which is why the parse-time allow-list, bayesmix.formula.safety,
  is the real guard and refuses those outright.)
- `formulaic.model_matrix(..., context=0)`, the default, captures the
  *caller's frame* (its locals and module globals) as the context; bayesmix
  always passes an explicit context, so nothing of bayesmix's own modules
  leaks into evaluation. ModelSpec.get_model_matrix(data) without a context
  uses only data + TRANSFORMS; we pass the same explicit context there too.
"""
from __future__ import annotations

import builtins

import numpy as np
from formulaic.transforms import TRANSFORMS
from formulaic.transforms import C as _formulaic_C
from formulaic.transforms.contrasts import (
    HelmertContrasts,
    PolyContrasts,
    SASContrasts,
    SumContrasts,
    TreatmentContrasts,
)

from ..errors import FormulaError
from ..formula.safety import ALLOWED_TRANSFORMS, PATSY_CONTRASTS, R_CONTRASTS, R_LOGICALS, check_transforms

CONTRASTS = {
    "contr.treatment": TreatmentContrasts,
    "contr.sum": SumContrasts,
    "contr.helmert": HelmertContrasts,
    "contr.poly": PolyContrasts,
    "contr.SAS": SASContrasts,
    "Treatment": TreatmentContrasts,
    "Sum": SumContrasts,
    "Helmert": HelmertContrasts,
    "Poly": PolyContrasts,
}
assert set(CONTRASTS) == set(R_CONTRASTS) | set(PATSY_CONTRASTS)


class _Contr:
    """R's contr.* names (C(f, contr.sum)), only the supported ones."""

    treatment = TreatmentContrasts
    sum = SumContrasts
    helmert = HelmertContrasts
    poly = PolyContrasts
    SAS = SASContrasts


class _Blocked:
    """Stands in for a name a formula must not reach (builtins, formulaic extras)."""

    def __init__(self, name: str):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise FormulaError(f"formula: {self._name!r} is not an allowed function")

    def __repr__(self) -> str:
        return f"<blocked {self._name}>"


def _log(x, base=None):
    """R's log(x, base = exp(1))."""
    return np.log(x) if base is None else np.log(x) / np.log(base)


def _C(data, contrasts=None):
    """formulaic's C(), also taking R's contrast names as strings."""
    if isinstance(contrasts, str):
        contrasts = CONTRASTS[contrasts]
    return _formulaic_C(data, contrasts)


IMPLEMENTATIONS = {
    "I": TRANSFORMS["I"],
    "log": _log,
    "log1p": np.log1p,
    "log2": np.log2,
    "log10": np.log10,
    "exp": np.exp,
    "expm1": np.expm1,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "scale": TRANSFORMS["scale"],
    "center": TRANSFORMS["center"],
    "poly": TRANSFORMS["poly"],
    "C": _C,
}
assert set(IMPLEMENTATIONS) == set(ALLOWED_TRANSFORMS)

_BLOCKED = {name: _Blocked(name) for name in set(dir(builtins)) | set(TRANSFORMS)}


def formula_context(transforms=None) -> dict:
    """The whole evaluation context formulaic gets (besides the data)."""
    context = dict(_BLOCKED)
    context.update(IMPLEMENTATIONS)
    context.update({name: CONTRASTS[name] for name in PATSY_CONTRASTS})
    context["contr"] = _Contr
    context.update(R_LOGICALS)
    context.update(check_transforms(transforms))
    return context
