"""The layers import downwards only: the pure core imports nothing of Backstop's above it, no Prefect
and no Google SDK, also not inside functions; blocks/ never imports tasks/ or flows/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = sorted((ROOT / "backstop" / "core").glob("*.py"))
UPWARD = ("tasks", "flows", "blocks", "deployments", "prefect", "prefect_gcp", "google")


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function bodies included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_the_core_imports_nothing_above_it(path: Path) -> None:
    upward = {m for m in imported(path) if m.split(".")[0] in UPWARD}
    sideways = {m for m in imported(path) if m.startswith("backstop.") and not m.startswith("backstop.core")}
    assert not upward and not sideways, f"{path.name} imports {sorted(upward | sideways)}"


@pytest.mark.parametrize("path", sorted((ROOT / "blocks").glob("*.py")), ids=lambda p: p.name)
def test_blocks_import_no_tasks_or_flows(path: Path) -> None:
    assert not {m for m in imported(path) if m.split(".")[0] in ("tasks", "flows")}, path.name


def test_the_core_modules_are_the_ones_the_readme_names() -> None:
    assert {p.stem for p in CORE} >= {
        "manifest",
        "names",
        "errors",
        "retention",
        "objectives",
        "archive",
        "report",
    }
