"""The `public-api` directive: autodoc entries for bayesmix's public objects, found by
looking at the package rather than listed by hand, so a renamed or moved module does not
leave the reference behind.

    .. public-api:: toplevel   every name in ``bayesmix.__all__``
    .. public-api:: results    the result classes the fits return (``*Fit``, ``*Summary``,
                               ``*Result``, ``*Table`` in bayesmix.results and bayesmix.bayes)
    .. public-api:: plots      the public functions of every module named ``*plot*``

Each entry is an ordinary autodoc directive (docstrings are reStructuredText).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

RESULT_NAME = re.compile(r"(Fit|Summary|Result|Table)$")
# where the result classes live (docs/architecture.md); classes of the same names elsewhere
# are a fitting method's internals
RESULT_PACKAGES = ("bayesmix.results", "bayesmix.bayes")


def _package_modules(package) -> list:
    """Every importable module of the package, in name order."""
    found = [package]
    for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        found.append(importlib.import_module(info.name))
    return sorted(found, key=lambda m: m.__name__)


def _public_members(module) -> list[tuple[str, object]]:
    """(name, object) of the public classes and functions a module defines itself."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    return [(n, getattr(module, n)) for n in names
            if (inspect.isclass(getattr(module, n)) or inspect.isfunction(getattr(module, n)))
            and getattr(getattr(module, n), "__module__", None) == module.__name__]


def _entry(path: str, obj) -> list[str]:
    if inspect.isclass(obj):
        options = ["   :show-inheritance:"]
        if not issubclass(obj, BaseException):
            options.append("   :members:")
        return [f".. autoclass:: {path}", *options, ""]
    return [f".. autofunction:: {path}", ""]


def _summary(paths: list[str]) -> list[str]:
    """A table of the entries below with their docstrings' first lines, each a link."""
    return [".. autosummary::", "", *(f"   {p}" for p in paths), ""]


def toplevel() -> list[str]:
    import bayesmix
    # the front door first, then alphabetical
    names = sorted(bayesmix.__all__, key=lambda n: (n != "Model", n.lower()))
    lines = _summary([f"bayesmix.{n}" for n in names])
    for name in names:
        lines += _entry(f"bayesmix.{name}", getattr(bayesmix, name))
    return lines


def results() -> list[str]:
    import bayesmix
    exported = {id(getattr(bayesmix, n)) for n in bayesmix.__all__}
    found = [(f"{module.__name__}.{name}", obj) for module in _package_modules(bayesmix)
             if module.__name__.startswith(RESULT_PACKAGES)
             for name, obj in _public_members(module)
             if inspect.isclass(obj) and RESULT_NAME.search(name) and id(obj) not in exported]
    return _entries(found)


def plots() -> list[str]:
    import bayesmix
    found = [(f"{module.__name__}.{name}", obj) for module in _package_modules(bayesmix)
             if "plot" in module.__name__.rsplit(".", 1)[-1]
             for name, obj in _public_members(module) if inspect.isfunction(obj)]
    return _entries(found)


def _entries(found: list[tuple[str, object]]) -> list[str]:
    if not found:
        return []
    lines = _summary([path for path, _ in found])
    for path, obj in found:
        lines += _entry(path, obj)
    return lines


SECTIONS = {"toplevel": toplevel, "results": results, "plots": plots}


class PublicApi(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        section = self.arguments[0]
        if section not in SECTIONS:
            raise self.error(f"public-api: unknown section {section!r}; "
                             f"one of {', '.join(SECTIONS)}")
        lines = SECTIONS[section]()
        if not lines:
            paragraph = nodes.paragraph(text="(nothing public in this section yet)")
            return [paragraph]
        container = nodes.container()
        source = f"<public-api {section}>"
        self.state.nested_parse(StringList(lines, source=source), self.content_offset,
                                container)
        return container.children


def setup(app):
    app.add_directive("public-api", PublicApi)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
