"""`backstop settings set` on the Prefect test harness: a change touches only the field named, and
the deployed staleness automations follow an RPO change (or the command says which command does)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from backstop_cli.main import main
from blocks.settings import PLAN_OBJECTIVES
from tests.conftest import unique

pytestmark = pytest.mark.flow


def shown(name: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["--settings", name, "settings", "show", "--json"]) == 0
    return dict(json.loads(capsys.readouterr().out))


@pytest.mark.parametrize(("field", "value"), [("rpo_hours", 12.0), ("rto_minutes", 45.0)])
@pytest.mark.parametrize("component", sorted(PLAN_OBJECTIVES))
def test_setting_one_objective_changes_only_that_field(
    component: str, field: str, value: float, saved_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["--settings", saved_settings, "settings", "set", f"objectives.{component}.{field}={value}"])
        == 0
    )
    capsys.readouterr()
    objectives = shown(saved_settings, capsys)["objectives"]
    expected = PLAN_OBJECTIVES[component].model_dump() | {field: value}
    assert objectives[component] == expected
    assert set(objectives) == {component}  # the other components keep the plan's objectives


def test_an_unknown_component_is_refused(saved_settings: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--settings", saved_settings, "settings", "set", "objectives.gcss.rpo_hours=3"]) == 2
    assert "no component 'gcss'" in capsys.readouterr().err


def test_object_retention_off_as_typed_is_off(
    saved_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """YAML reads an unquoted `off` as false; the setting takes it as the word the user typed."""
    assert main(["--settings", saved_settings, "settings", "set", "object_retention=off"]) == 0
    capsys.readouterr()
    assert shown(saved_settings, capsys)["object_retention"] == "off"
    assert main(["--settings", saved_settings, "settings", "set", "object_retention=forever"]) == 2
    assert "object_retention" in capsys.readouterr().err


def stale_within(component: str) -> timedelta:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(f"backstop-stale-{component}")
    return automation.trigger.within


def test_the_staleness_automation_follows_an_rpo_change(
    prefect_harness: None, settings: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from blocks.notifications import save_webhook_block
    from deployments.automations import create_automations

    settings.notify_block = save_webhook_block(unique("hook"), "http://127.0.0.1:9/unused")
    name = unique("settings")
    settings.save(name, overwrite=True)
    create_automations(settings)
    assert stale_within("gcs") == timedelta(hours=24)

    assert main(["--settings", name, "settings", "set", "objectives.gcs.rpo_hours=12"]) == 0
    assert "updated automation backstop-stale-gcs: alerts after 12 h" in capsys.readouterr().out
    assert stale_within("gcs") == timedelta(hours=12)
    assert stale_within("configs") == timedelta(hours=24)

    # settings that cannot make the automation again say which command does
    assert (
        main(["--settings", name, "settings", "set", "notify_block=null", "objectives.gcs.rpo_hours=6"]) == 0
    )
    said = capsys.readouterr().out
    assert "gcs keep their old RPO" in said and "run `backstop deploy`" in said
    assert stale_within("gcs") == timedelta(hours=12)
