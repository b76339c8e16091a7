"""The core is a stack of layers (DESIGN §8): a module imports only from its own layer or below,
and no two core modules import each other, even through others and even for types only.

The imports are read from the source (every ``import`` statement, at module level, inside
functions and under ``TYPE_CHECKING``), so a lazy import cannot hide a cycle. A new core module
must be given a layer below; ``test_every_core_module_has_a_layer`` says so.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "lamin_nb"
CORE = PACKAGE / "core"

# DESIGN §8, with where each module of today sits. recovery and adopt act on rows and objects
# only (typed by ``resources.Resources``), so ``instance`` can run them on connect and init.
LAYERS: dict[str, int] = {
    # L0 foundation
    **dict.fromkeys(
        [
            "errors",
            "faults",
            "hashing",
            "models",
            "schema",
            "settings",
            "validate",
            "callbacks",
            "ids",
            "units",
            "owners",
        ],
        0,
    ),
    # L1 resources
    **dict.fromkeys(
        [
            "db",
            "rows",
            "storage",
            "storage.base",
            "storage.local",
            "storage.s3",
            "storage.multipart",
            "storage.ordered",
            "storage.s3list",
            "localfiles",
            "workers",
            "nesting",
            "resources",
            "staged",
            "resumable",
            "onepass",
        ],
        1,
    ),
    # L2 context: the instance, and the row-and-object work it runs on connect / init
    **dict.fromkeys(["recovery", "adopt", "instance"], 2),
    # L3 record
    **dict.fromkeys(["record", "report", "txstate"], 3),
    # L4 protocols
    **dict.fromkeys(
        [
            "save",
            "saving",
            "saveinput",
            "reserve",
            "delete",
            "consistency",
            "findings",
            "incremental",
            "repair",
            "query",
            "browse",
            "transfers",
            "transaction",
        ],
        4,
    ),
    # L5 facade
    **dict.fromkeys(["artifact", "public", "staged_save"], 5),
}
JUPYTER = ("IPython", "ipywidgets", "jupyter_server", "ipykernel", "traitlets", "anywidget")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. "save" or "storage.s3"
    target: str  # an absolute module name, e.g. "lamin_nb.core.record" or "sqlalchemy"
    type_only: bool
    line: int


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def _imports(path: Path) -> list[Import]:
    """Every import of ``path`` as absolute names (``from . import x`` gives ``<pkg>.x``)."""
    tree = ast.parse(path.read_text())
    here = _module_name(path, PACKAGE.parent)  # e.g. lamin_nb.core.storage.s3
    is_package = path.name == "__init__.py"
    base = here.split(".") if is_package else here.split(".")[:-1]
    source = _module_name(path, CORE) if CORE in path.parents else here
    found: list[Import] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit_one(stmt, True)
                for stmt in child.orelse:
                    visit_one(stmt, type_only)
                continue
            visit_one(child, type_only)

    def visit_one(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(source, alias.name, type_only, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - node.level + 1]
                module = ".".join(parent + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(Import(source, module, type_only, node.lineno))
            for alias in node.names:  # ``from . import rows`` imports the module rows
                found.append(Import(source, f"{module}.{alias.name}", type_only, node.lineno))
        visit(node, type_only)

    visit(tree, False)
    return found


def _core_modules() -> dict[str, Path]:
    """Module name (relative to lamin_nb.core) -> file; migrations and the package's own
    ``__init__`` excluded, a subpackage's ``__init__`` named after the subpackage."""
    found = {
        _module_name(path, CORE): path
        for path in sorted(CORE.rglob("*.py"))
        if "migrations" not in path.relative_to(CORE).parts
    }
    found.pop("", None)
    return found


def _core_graph() -> dict[str, list[Import]]:
    """Core module -> its imports of other core modules (names relative to lamin_nb.core)."""
    modules = _core_modules()
    graph: dict[str, list[Import]] = {}
    for name, path in modules.items():
        edges = []
        for imp in _imports(path):
            if not imp.target.startswith("lamin_nb.core."):
                continue
            target = imp.target.removeprefix("lamin_nb.core.")
            # a submodule always runs its own package first: not a dependency on it
            if target in modules and target != name and not name.startswith(target + "."):
                edges.append(Import(imp.source, target, imp.type_only, imp.line))
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in {e.target for e in graph[v]}:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    return found


def test_every_core_module_has_a_layer() -> None:
    unplaced = sorted(set(_core_modules()) - set(LAYERS))
    assert unplaced == [], f"give these core modules a layer in LAYERS: {unplaced}"


def test_no_import_cycle_among_core_modules() -> None:
    """Runtime, lazy and type-only imports all count: the record sits under the protocol."""
    assert _cycles(_core_graph()) == []


def test_core_modules_import_only_downward() -> None:
    """From the module's own layer or below; ``TYPE_CHECKING`` imports are exempt (DESIGN §8),
    as long as they make no cycle (the test above)."""
    upward = [
        f"{imp.source} (L{LAYERS[imp.source]}) imports {imp.target} (L{LAYERS[imp.target]}) "
        f"at line {imp.line}"
        for edges in _core_graph().values()
        for imp in edges
        if not imp.type_only
        and imp.source in LAYERS
        and imp.target in LAYERS
        and LAYERS[imp.target] > LAYERS[imp.source]
    ]
    assert upward == []


def test_the_core_never_imports_jupyter() -> None:
    offenders = [
        f"{imp.source}:{imp.line} {imp.target}"
        for path in sorted(CORE.rglob("*.py"))
        for imp in _imports(path)
        if imp.target.split(".")[0] in JUPYTER
    ]
    assert offenders == []


def test_widgets_never_import_the_jupyter_layer() -> None:
    offenders = [
        f"{imp.source}:{imp.line} {imp.target}"
        for path in sorted((PACKAGE / "widgets").rglob("*.py"))
        for imp in _imports(path)
        if imp.target == "lamin_nb.jupyter" or imp.target.startswith("lamin_nb.jupyter.")
    ]
    assert offenders == []


def test_the_core_never_imports_the_edges() -> None:
    """Widgets, the Jupyter layer, the CLI and the tools sit on top of the core, never under."""
    edges = ("lamin_nb.widgets", "lamin_nb.jupyter", "lamin_nb.cli", "lamin_nb.bench")
    offenders = [
        f"{imp.source}:{imp.line} {imp.target}"
        for path in sorted(CORE.rglob("*.py"))
        for imp in _imports(path)
        if imp.target.startswith(edges) or imp.target.startswith("lamin_nb.demo")
    ]
    assert offenders == []


def test_the_walk_sees_lazy_and_type_only_imports() -> None:
    """The checks above would pass vacuously if the walk missed imports: it must not."""
    imports = {(i.target, i.type_only) for i in _imports(CORE / "callbacks.py")}
    assert ("lamin_nb.core.report", True) in imports  # under TYPE_CHECKING
    lazy = {i.target for i in _imports(CORE / "instance.py")}
    assert "lamin_nb.core.localfiles" in lazy  # imported inside a function
    assert {e.target for e in _core_graph()["save"]} >= {"record", "report", "reserve"}
