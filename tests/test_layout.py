"""The package's import graph: dependencies point one way, and study/ has no cycle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("study", "trainers", "analysis")


def _imports(path: Path) -> set[str]:
    """Every module of this project ``path`` imports, at any depth (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


#: Modules another package may import besides its own: the trainer's output file names, which
#: import nothing (analysis reads the pictures a trained model leaves without importing torch).
SHARED = {"trainers.outputs"}


@pytest.mark.parametrize(
    "package, allowed", [("trainers", {"trainers"}), ("analysis", {"analysis"}), ("study", set(PACKAGES))]
)
def test_dependencies_point_one_way(package, allowed):
    for path in (ROOT / package).rglob("*.py"):
        foreign = {name for name in _imports(path) if name.split(".")[0] not in allowed and name not in SHARED}
        assert not foreign, f"{path.relative_to(ROOT)} imports {sorted(foreign)}"


def test_what_packages_share_imports_nothing():
    for name in SHARED:
        path = ROOT / (name.replace(".", "/") + ".py")
        assert not [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_the_modules_of_study_import_no_cycle():
    graph = {}
    for path in (ROOT / "study").glob("*.py"):
        graph[_module(path)] = {name for name in _imports(path) if name.startswith("study.") and name != _module(path)}
    assert "study.trial" in graph and "study.folder" in graph  # the graph is the real one

    def visit(module: str, path: tuple[str, ...]) -> None:
        for target in graph.get(module, ()):
            assert target not in path, "import cycle: " + " -> ".join((*path, target))
            visit(target, (*path, target))

    for module in graph:
        visit(module, (module,))
