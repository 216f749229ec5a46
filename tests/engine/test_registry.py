"""Component names live in one list, the registry (tasks/engine/protocol.py COMPONENTS); every other
list of components is data kept beside a layer that may not import the registry, and is checked
against it here, so adding a sixth component fails this test until every list knows it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from backstop.core.recovery import ORDER
from blocks.components import DEFAULT_COMPONENTS
from blocks.settings import PLAN_OBJECTIVES
from tasks.engine.protocol import COMPONENTS, get_component

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
REGISTERED = set(COMPONENTS)


@pytest.mark.parametrize(
    ("where", "names"),
    [
        ("blocks/components.py DEFAULT_COMPONENTS", set(DEFAULT_COMPONENTS)),
        ("blocks/settings.py PLAN_OBJECTIVES", set(PLAN_OBJECTIVES)),
        ("backstop/core/recovery.py ORDER", set(ORDER)),
        ("flows/<name>.py", {p.stem for p in (ROOT / "flows").glob("*.py")} & REGISTERED),
        ("tasks/components/<name>/", {p.name for p in (ROOT / "tasks" / "components").iterdir() if p.is_dir()
                                      and not p.name.startswith("_")}),
    ],
)  # fmt: skip
def test_every_list_of_components_is_the_registry(where: str, names: set[str]) -> None:
    assert names == REGISTERED, f"{where} names {sorted(names)}, the registry {sorted(REGISTERED)}"


def test_each_registered_component_loads_from_its_folder_and_has_deployments() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    entrypoints = {d["entrypoint"].split(":")[0] for d in spec["deployments"]}
    for name in REGISTERED:
        component = get_component(name)
        assert component.name == name
        assert type(component).__module__ == f"tasks.components.{name}.component"
        assert f"flows/{name}.py" in entrypoints, f"prefect.yaml deploys no flow of {name}"


def test_each_component_shows_its_flags_from_a_light_options_module() -> None:
    """The command line builds a component's flags from its options module alone: the same noun,
    part and model the component runs with, and a module that loads neither Prefect nor a Google
    client (so a mistyped flag is answered at once)."""
    import subprocess
    import sys

    from tasks.engine.registry import component_face, options_module

    for name in REGISTERED:
        component = get_component(name)
        assert component_face(name) == (component.noun, component.part, component.Options)
        probe = f"import sys, {options_module(name)}; print(sorted(m for m in sys.modules if m in HEAVY))"
        loaded = subprocess.run(
            [sys.executable, "-c", f"HEAVY = {{'prefect', 'google.cloud.storage', 'pandas'}}; {probe}"],
            capture_output=True, text=True, check=True, cwd=ROOT,
        ).stdout.strip()  # fmt: skip
        assert loaded == "[]", f"{options_module(name)} loads {loaded}"
