"""The package's layers import only in one direction (docs/architecture.md): no import cycle
between subpackages, and none between modules. Imports under ``if TYPE_CHECKING:`` (annotations
only) do not count; imports inside functions (lazy ones) do."""

import ast
from pathlib import Path

import hgbench

PACKAGE = Path(hgbench.__file__).parent
# each layer may import from the layers listed after it
ORDER = ["running", "analysis", "solvers", "estimators", "core", "problems", "data", "paths", "version", "options"]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "hgbench" else None


def _import_nodes(tree: ast.AST):
    """The import statements outside ``if TYPE_CHECKING:`` blocks, those nested in functions
    (lazy imports) included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        else:
            yield from _import_nodes(node)


def _runtime_imports(tree: ast.AST):
    """hgbench modules imported outside ``if TYPE_CHECKING:`` blocks."""
    for node in _import_nodes(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hgbench"):
            yield node.module if node.module != "hgbench" else f"hgbench.{node.names[0].name}"
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("hgbench."))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(tree: ast.AST, modules) -> set[str]:
    """The modules of ``modules`` that ``tree`` imports at run time: ``from P import name`` imports
    the module P.name where there is one, else P (a package imports its __init__.py)."""
    found = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "hgbench imports absolutely"
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names}
        else:
            found |= {alias.name for alias in node.names}
    return found & set(modules)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` (module -> the modules it imports): its strongly connected
    components of more than one module (Tarjan's algorithm), each sorted."""
    index, low, stack, found = {}, {}, [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_layers_import_in_one_direction():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        here = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if here not in ORDER:
            continue
        for module in _runtime_imports(ast.parse(path.read_text())):
            there = _layer(module)
            if there in ORDER and there != here and ORDER.index(there) < ORDER.index(here):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not wrong, wrong


def test_the_check_sees_a_wrong_import():
    """The walk finds imports nested in functions (lazy imports) and skips TYPE_CHECKING ones."""
    tree = ast.parse("if TYPE_CHECKING:\n    from hgbench.running import runner\ndef f():\n    from hgbench.analysis import plot\n")
    assert list(_runtime_imports(tree)) == ["hgbench.analysis"]


def test_no_import_cycle_between_modules():
    """No module of the package imports, at run time (lazily or not), a module that imports it
    back, directly or through others; the package's __init__.py counts as the module hgbench."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: _imported_modules(ast.parse(path.read_text()), modules) - {name} for name, path in modules.items()}
    assert len(modules) > 50 and graph["hgbench.running.app"], "the walk sees the package's modules and their imports"
    assert _cycles(graph) == []


def test_the_cycle_check_sees_a_cycle():
    """A lazy ``from P import module`` is an edge to that module; a cycle through three modules is
    found, with the modules on it only."""
    tree = ast.parse("if TYPE_CHECKING:\n    import hgbench.c\ndef f():\n    from hgbench.running import modes\n")
    assert _imported_modules(tree, {"hgbench.c", "hgbench.running", "hgbench.running.modes"}) == {"hgbench.running.modes"}
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({**graph, "c": {"d"}}) == []


def test_a_run_imports_matplotlib_only_to_draw():
    """`hgbench run`'s modules (every mode's, hence every analysis module a mode reads its columns
    from) load without matplotlib (0.7 s): it is imported where a figure is drawn."""
    import subprocess
    import sys

    code = "import sys; import hgbench.running.app, hgbench.running.cli; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False"]
