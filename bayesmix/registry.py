"""Where upper layers plug behaviour into lower ones, so that imports run one way.

A result object (results/, the bayes fit classes) offers methods such as ``export``,
``confint`` or ``coef_table(ddf=...)`` whose work lives in layers above it (io,
inference), and a bundle is restored by the method module that made its fit. Those
modules register the work here when they are imported; the lower module looks it up
when called. ``bayesmix/__init__`` imports every registering module, and importing any
submodule runs it first, so a lookup never finds the table empty in normal use.

This module imports nothing from bayesmix but `errors` (see docs/architecture.md)."""

from __future__ import annotations

from typing import Any, Callable

from .errors import BayesmixError

# operations a result object delegates upwards: name -> who provides it
EXPORT = "export"                # bundle.export(fit, path) -> folder
CONFINT = "confint"              # inference.confint.merfit_confint(fit, level, method, ...)
COEF_TABLE = "coef_table"        # inference.ddf.coef_table(fit, ddf) -> DataFrame
NORMALIZE_DDF = "normalize_ddf"  # inference.ddf.normalize_ddf(ddf) -> canonical name or None
OPERATIONS = (EXPORT, CONFINT, COEF_TABLE, NORMALIZE_DDF)

_operations: dict[str, Callable[..., Any]] = {}
# bundle kind ("lmer", "glmer", "lm", "glm", "nuts", "laplace") -> restore(design, meta,
# run, stan_data, **extra) -> fit; run and stan_data are None for closed-form fits
_restorers: dict[str, Callable[..., Any]] = {}


def provide(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Register `func` as the provider of operation `name` (one of OPERATIONS)."""
    if name not in OPERATIONS:
        raise BayesmixError(f"unknown operation {name!r}; known: {', '.join(OPERATIONS)}")
    _operations[name] = func
    return func


def operation(name: str) -> Callable[..., Any]:
    """The provider of operation `name`."""
    try:
        return _operations[name]
    except KeyError:
        raise BayesmixError(f"no module has provided the operation {name!r}; it is "
                            "registered when bayesmix is imported (import bayesmix)") from None


def register_restorer(kind: str, restore: Callable[..., Any]) -> Callable[..., Any]:
    """Register how a bundle of fit kind `kind` becomes a fit object again."""
    _restorers[kind] = restore
    return restore


def restorer(kind: str) -> Callable[..., Any]:
    """The function that restores fits of kind `kind` (see register_restorer)."""
    try:
        return _restorers[kind]
    except KeyError:
        raise BayesmixError(f"no method restores bundles of kind {kind!r}; known kinds: "
                            f"{', '.join(sorted(_restorers)) or 'none registered'}") from None


def restorable_kinds() -> tuple[str, ...]:
    return tuple(sorted(_restorers))
