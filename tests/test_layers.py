"""The layers point one way: each package imports only the layers below it (read from the source, not run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# package -> the project packages it may import (itself included). Faces (ui.py, rag/__main__.py, bench/)
# may use anything; rag/app.py is the composition root that builds everything.
ALLOWED = {
    "rag.core": {"rag.core"},
    "rag.index": {"rag.core", "rag.index"},
    "rag.llm": {"rag.core", "rag.llm"},
    "rag.query": {"rag.core", "rag.index", "rag.llm", "rag.query"},
    "ingest": {"rag.core", "rag.index", "ingest"},
    "rag.web": {"rag.core", "rag.web"},
    "rag.eval": {"rag.core", "rag.index", "rag.query", "rag.eval", "rag.app"},
}
MAX_MODULE_LINES = 450


def _package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "rag" and len(parts) > 1 else parts[0]


def _imports(path: Path) -> set[str]:
    """The project modules ``path`` imports (also inside functions: a lazy import is still a dependency)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if node.module == "rag"}
    return {m for m in found if m.split(".")[0] in ("rag", "ingest", "ui")}


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package.replace(".", "/")).glob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_layer_imports_only_the_layers_below_it(package):
    wrong = {
        f"{path.relative_to(REPO)} imports {module}"
        for path in _modules(package)
        for module in _imports(path)
        if _package_of(module) not in ALLOWED[package] and module != "rag"
    }
    assert not wrong, sorted(wrong)


def test_only_the_composition_module_of_rag_imports_ingest():
    importers = {
        str(path.relative_to(REPO))
        for path in REPO.joinpath("rag").rglob("*.py")
        if any(m.split(".")[0] == "ingest" for m in _imports(path))
    }
    assert importers <= {"rag/app.py"}, importers


def test_no_module_is_over_the_size_limit():
    sizes = {
        str(path.relative_to(REPO)): len(path.read_text(encoding="utf-8").splitlines())
        for folder in ("rag", "ingest")
        for path in REPO.joinpath(folder).rglob("*.py")
    }
    sizes["ui.py"] = len((REPO / "ui.py").read_text(encoding="utf-8").splitlines())
    assert {k: v for k, v in sizes.items() if v > MAX_MODULE_LINES} == {}
