"""The package's stages import one way (docs/architecture.md).

Every import statement of every module is read with ast -- function-level ("lazy") imports
too, since a lazy import that closes a cycle is still a cycle -- and the graph must have no
cycle, every module must sit in a layer of LAYERS and import only its own layer or lower
ones, and the result classes (results/) import no fitting, inference or io code. Imports
under ``if TYPE_CHECKING:`` count as well: they are edges a reader follows."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import bayesmix

ROOT = Path(bayesmix.__file__).parent

# Lowest first. A module may import modules of its own layer (without cycles) or below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # no bayesmix imports beyond this layer: errors, the package version, the table upper
    # layers register into, families and their maths, formula parsing, bundled data
    ("foundation", ("bayesmix.errors", "bayesmix.version", "bayesmix.registry",
                    "bayesmix.families", "bayesmix.formula", "bayesmix.datasets",
                    "bayesmix.threads")),
    # X, Z, levels and all validation of user data; rebuilding them for new rows
    ("design", ("bayesmix.design",)),
    # numpy mathematics, priors, Stan program text, compiling and running Stan
    ("algebra", ("bayesmix.lmm", "bayesmix.irls", "bayesmix.optimizer", "bayesmix.priors",
                 "bayesmix.stancode", "bayesmix.engine")),
    # ML result classes: data and accessors; upper-layer work goes through the registry.
    # Plots draw from what results hold (matplotlib only), so they sit here too.
    ("results", ("bayesmix.results", "bayesmix.plots")),
    # one module per fitting method (and the Bayesian result classes beside their methods)
    ("methods", ("bayesmix.ml", "bayesmix.glmfit", "bayesmix.glmerfit", "bayesmix.refit",
                 "bayesmix.bayes", "bayesmix.dist")),
    # what runs on fitted models: ddf, profiles, confint; executors and many-fit tools
    ("inference", ("bayesmix.inference", "bayesmix.parallel", "bayesmix.parboot",
                   "bayesmix.lmlistfit", "bayesmix.anovatable", "bayesmix.calibration")),
    # bundles, the front door, the command line, precompiling every generic program
    # (engine/build.py asks the methods for their programs) and the package itself
    ("io", ("bayesmix.bundle", "bayesmix.model", "bayesmix.cli", "bayesmix.engine.build",
            "bayesmix")),
]
# what results/ may import: below its layer, and itself
RESULTS_MAY_IMPORT = ("foundation", "design", "algebra", "results")


def module_files(root: Path = ROOT, package: str = "bayesmix") -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(files: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}. ``from pkg import name`` is an edge to
    pkg.name when that is a module, else to pkg; ``import a.b`` to a.b."""
    graph: dict[str, dict[str, int]] = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{a.name}" if f"{target}.{a.name}" in files else target
                         for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name in files and name != mod:
                    edges.setdefault(name, node.lineno)
        graph[mod] = edges
    return graph


def find_cycles(graph: dict[str, dict[str, int] | set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # iterative-free recursion is fine: ~100 modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_of(module: str) -> str | None:
    """The layer of the longest matching prefix in LAYERS ("bayesmix" itself: the package's
    __init__ only)."""
    best, best_len = None, -1
    for name, prefixes in LAYERS:
        for p in prefixes:
            below = module.startswith(p + ".") and p != "bayesmix"
            if (module == p or below) and len(p) > best_len:
                best, best_len = name, len(p)
    return best


RANK = {name: i for i, (name, _) in enumerate(LAYERS)}
GRAPH = import_graph(module_files())


def _describe(cycle: list[str]) -> str:
    inside = set(cycle)
    return "\n".join(f"  {m} -> {t} (line {line})" for m in cycle
                     for t, line in sorted(GRAPH[m].items()) if t in inside)


# ---------------------------------------------------------------- the checker itself


def test_cycle_finder_reports_a_synthetic_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    assert find_cycles({"x": {"y"}, "y": {"x"}, "p": {"q"}, "q": {"p"}}) == [["p", "q"],
                                                                          ["x", "y"]]


def test_graph_reads_lazy_and_relative_imports(tmp_path):
    """A function-level import and ``from .. import name`` are edges; a submodule importing
    its own package's __init__ makes a cycle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import f\nVALUE = 1\n")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n    return b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from .. import VALUE\nfrom ..a import f\n")
    graph = import_graph(module_files(pkg, "pkg"))
    assert set(graph["pkg.a"]) == {"pkg.sub.b"}
    assert set(graph["pkg.sub.b"]) == {"pkg", "pkg.a"}
    assert find_cycles(graph) == [["pkg", "pkg.a", "pkg.sub.b"]]


def test_layer_of_takes_the_longest_prefix():
    assert layer_of("bayesmix.results.glm") == "results"
    assert layer_of("bayesmix.glmfit") == "methods"
    assert layer_of("bayesmix") == "io"
    assert layer_of("bayesmix.engine.build") == "io" and layer_of("bayesmix.engine") == "algebra"
    assert layer_of("bayesmix.nonexistent") is None


# ---------------------------------------------------------------- the package


def test_no_import_cycles():
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n\n".join(_describe(c) for c in cycles)


def test_every_module_has_a_layer():
    missing = sorted(m for m in GRAPH if layer_of(m) is None)
    assert not missing, f"add these modules to LAYERS in tests/test_architecture.py: {missing}"


def test_imports_point_down():
    upward = [f"{m} ({layer_of(m)}) -> {t} ({layer_of(t)}), line {line}"
              for m, edges in GRAPH.items() for t, line in sorted(edges.items())
              if layer_of(m) and layer_of(t) and RANK[layer_of(t)] > RANK[layer_of(m)]]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_results_import_no_fitting_code():
    bad = [f"{m} -> {t} ({layer_of(t)}), line {line}"
           for m, edges in GRAPH.items() if layer_of(m) == "results"
           for t, line in sorted(edges.items()) if layer_of(t) not in RESULTS_MAY_IMPORT]
    assert not bad, "results/ imports fitting, inference or io code:\n" + "\n".join(bad)


def test_public_names_do_not_shadow_modules():
    """`bayesmix.glm` is a function; the module that fits it must not also be bayesmix.glm."""
    shadowed = []
    for info in pkgutil.walk_packages(bayesmix.__path__, "bayesmix."):
        parent, _, leaf = info.name.rpartition(".")
        module = importlib.import_module(info.name)
        attr = getattr(importlib.import_module(parent), leaf, module)
        if attr is not module:
            shadowed.append(f"{info.name} (the attribute is a {type(attr).__name__})")
    assert not shadowed, f"public names hide modules: {shadowed}"


@pytest.mark.parametrize("kind", ["lmer", "glmer", "lm", "glm", "nuts", "laplace"])
def test_every_bundle_kind_has_a_restorer(kind):
    from bayesmix import registry
    assert kind in registry.restorable_kinds()


def test_every_registry_operation_is_provided():
    from bayesmix import registry
    for name in registry.OPERATIONS:
        assert callable(registry.operation(name)), name
