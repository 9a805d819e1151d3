"""The packages are layered one way: infra <- data_prep <- pubmedclip <- medvqa (no import loops).

Every import statement of every module counts, also those inside functions: a loop hidden by a lazy
import is still a loop.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("infra", "data_prep", "pubmedclip", "medvqa")  # each may import only from those before it


def imported_packages(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(LAYERS)


@pytest.mark.parametrize("package", LAYERS)
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    allowed = set(LAYERS[: LAYERS.index(package) + 1])
    offending = {str(path.relative_to(ROOT)): sorted(imported_packages(path) - allowed)
                 for path in sorted((ROOT / package).rglob("*.py")) if imported_packages(path) - allowed}
    assert not offending, f"{package} imports from layers above it: {offending}"
