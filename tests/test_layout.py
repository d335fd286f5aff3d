"""The package's layers import only in one direction (docs/architecture.md): no import cycle
between subpackages. Imports under ``if TYPE_CHECKING:`` (annotations only) do not count."""

import ast
from pathlib import Path

import hgbench

PACKAGE = Path(hgbench.__file__).parent
# each layer may import from the layers listed after it
ORDER = ["running", "analysis", "estimators", "core", "problems", "data", "paths", "options"]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "hgbench" else None


def _runtime_imports(tree: ast.AST):
    """hgbench modules imported outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hgbench"):
            yield node.module if node.module != "hgbench" else f"hgbench.{node.names[0].name}"
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("hgbench."))
        else:
            yield from _runtime_imports(node)


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
