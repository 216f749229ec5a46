"""What a run's parameters look like on the Prefect server (the UI's run page, a re-run's form): Backstop's
flows store them without FastAPI's encoder, exactly as Prefect's own path stores them."""

from __future__ import annotations

import inspect
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from prefect import Flow

from flows.components import component_flows
from flows.hooks import BackstopFlow
from tasks.engine.registry import COMPONENTS


def default(flow: Any, name: str) -> Any:
    return inspect.signature(flow.fn).parameters[name].default


def prefect_stores(flow: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters as Prefect's own Flow would send them to the server (FastAPI's jsonable_encoder)."""
    return Flow.serialize_parameters(flow, parameters)


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_component_flows_store_their_parameters_as_prefect_does(name: str) -> None:
    backup, validate, restore = component_flows(name)
    runs = [
        (backup, {"sources": ["a", "b"], "options": default(backup, "options"), "validate_after": True,
                  "sample_percent": 2.5, "settings_block": "default"}),
        (validate, {"backup_id": "20261205T235932Z-37627c", "source": "", "sample_percent": 0}),
        (restore, {"source": "s", "target": "t", "only": ["x/y", "z"], "overwrite": False,
                   "options": default(restore, "options"), "exact": True}),
    ]  # fmt: skip
    for flow, parameters in runs:
        assert isinstance(flow, BackstopFlow)
        stored = flow.serialize_parameters(parameters)
        assert stored == prefect_stores(flow, parameters)
        assert stored["options" if "options" in parameters else "backup_id"]


def test_values_that_are_not_json_take_prefects_own_path() -> None:
    _, validate, _ = component_flows("gcs")
    moment = datetime(2026, 12, 5, 23, 59, tzinfo=UTC)
    parameters = {"source": moment, "backup_id": ("a", 1), "sample_percent": {1: "x"}}
    assert validate.serialize_parameters(parameters) == prefect_stores(validate, parameters)
    assert validate.serialize_parameters(parameters)["source"] == "2026-12-05T23:59:00+00:00"


def test_running_a_command_does_not_import_fastapi() -> None:
    """FastAPI (~0.15 s of every command's start-up) was imported only to encode the parameters."""
    code = (
        "import sys\n"
        "from flows.components import component_flows\n"
        "backup, _, restore = component_flows('bigquery')\n"
        "restore.serialize_parameters({'source': 'd', 'options': restore.fn.__defaults__[7], 'only': ['t']})\n"
        "print('fastapi' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr
