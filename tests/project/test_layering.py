"""The layers import downwards only, read from the code (function bodies and TYPE_CHECKING blocks
included), so that a new loop or an upward import fails the suite:

backstop/core < tasks/storage < tasks/catalog < tasks/engine < tasks/components/<name>, tasks/operations
< flows, with blocks/ beside storage (settings and clients) and the CLI (backstop_cli/) on top. The
local platform (localdev/) is a development package: nothing of the product imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("backstop", "backstop_cli", "blocks", "deployments", "flows", "tasks")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if "sample" not in p.parts)


MODULES = {module_name(p): p for p in files(*PRODUCT)}


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (function bodies included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    return found


def layer(module: str) -> str:
    """The layer a module of tasks/ belongs to: storage, catalog, engine, components, operations."""
    return module.split(".")[1] if module.startswith("tasks.") and module.count(".") >= 2 else module


def check(folder: str, forbidden: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    found = []
    for path in files(folder):
        bad = sorted(m for m in imported(path) if m == forbidden or m.startswith(forbidden))
        if bad:
            found.append((module_name(path), bad))
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("backstop/core", ("tasks", "flows", "blocks", "deployments", "backstop_cli", "localdev", "prefect",
                           "prefect_gcp", "google")),
        ("blocks", ("tasks", "flows", "deployments", "backstop_cli", "localdev")),
        ("tasks/storage", ("tasks.catalog", "tasks.engine", "tasks.components", "tasks.operations", "flows")),
        ("tasks/catalog", ("tasks.engine", "tasks.components", "tasks.operations", "flows")),
        ("tasks/engine", ("tasks.components", "tasks.operations", "flows")),
        ("tasks/components", ("tasks.engine.lifecycle", "tasks.engine.restore", "tasks.engine.drill",
                              "tasks.engine.calls", "tasks.operations", "flows")),
        ("tasks/operations", ("flows",)),
        ("tasks", ("flows", "deployments", "backstop_cli", "localdev")),
        ("flows", ("backstop_cli", "localdev")),
        ("deployments", ("backstop_cli", "localdev")),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)  # fmt: skip
def test_each_layer_imports_only_downwards(folder: str, forbidden: tuple[str, ...]) -> None:
    assert check(folder, forbidden) == []


@pytest.mark.parametrize("name", ["gcs", "bigquery", "configs", "composer", "gke"])
def test_a_component_imports_no_other_component(name: str) -> None:
    # Composer's DAG bucket rides the Cloud Storage copy path on purpose: the one allowed arrow.
    allowed = {"composer": ("tasks.components.gcs",)}.get(name, ())
    others = tuple(
        f"tasks.components.{n}" for n in ("gcs", "bigquery", "configs", "composer", "gke") if n != name
    )
    found = check(f"tasks/components/{name}", tuple(o for o in others if o not in allowed))
    assert found == []


def test_no_import_loop_in_the_product() -> None:
    graph = {m: {d for d in imported(p) if d in MODULES and d != m} for m, p in MODULES.items()}
    # The CLI's command modules import the CLI's main module (emit, state_dir), which loads them
    # by name at run time: not an import, so not a loop.
    loops: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                loops.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    assert loops == []


def test_the_wheel_contains_no_local_platform() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert (
        'exclude = ["localdev*"]' in text and "localdev" not in text.split("exclude")[0].split("include")[-1]
    )


def test_the_core_modules_are_the_ones_the_readme_names() -> None:
    core = {p.stem for p in (ROOT / "backstop" / "core").glob("*.py")}
    assert core >= {"manifest", "names", "errors", "retention", "objectives", "archive", "report"}
    assert {p.name for p in (ROOT / "backstop").iterdir() if not p.name.startswith("__")} == {"core"}
