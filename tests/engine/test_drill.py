"""Restore drills on fake-gcs-server with the real Cloud Storage component.

A drill restores the latest validated backup into a scratch bucket, verifies it, times it against
the RTO, always removes the scratch bucket, and records the outcome in the catalog.
"""

from __future__ import annotations

from typing import Any

import pytest

from backstop.core.errors import ObjectiveBreached
from blocks.settings import Objectives
from tasks.components.gcs.component import GcsComponent
from tasks.engine.calls import ComponentCalls
from tasks.engine.drill import drill, list_drills
from tests.conftest import unique

gcs_component = ComponentCalls("gcs")

pytestmark = pytest.mark.integration


def backed_up(gcs: Any, settings: Any, store: Any, count: int = 12) -> tuple[str, Any]:
    """A source bucket with `count` objects and a validated backup of it."""
    source = unique("src")
    bucket = gcs.create_bucket(source)
    for i in range(count):
        bucket.blob(f"data/{i:03d}.csv").upload_from_string(f"row,{i}\n".encode() * (i + 1))
    manifest = gcs_component.backup(settings, store, source)
    return source, gcs_component.validate(settings, store, manifest, 100)


def bucket_exists(gcs: Any, name: str | None) -> bool:
    assert name
    return gcs.lookup_bucket(name.removeprefix("gs://")) is not None


def test_drill_passes_and_is_recorded(gcs: Any, settings: Any, store: Any) -> None:
    source, manifest = backed_up(gcs, settings, store)
    result = drill("gcs", settings, source, store=store)
    assert result.passed, result.problems
    assert result.backup_id == manifest.backup_id
    assert result.restored == 12 and 0 < result.seconds < 60 and not result.over_rto
    assert not bucket_exists(gcs, result.target)  # scratch removed
    (recorded,) = list_drills(store, "gcs", source)
    assert recorded == result
    assert store.stat(result.path) is not None and result.path.startswith(f"drills/gcs/{source}/")


def test_drill_of_corrupted_backup_fails_and_cleans_up(gcs: Any, settings: Any, store: Any) -> None:
    source, manifest = backed_up(gcs, settings, store)
    damaged = manifest.entries[3]
    store.put_bytes(damaged.stored_key, b"not what was backed up")  # corrupted after validation
    result = drill("gcs", settings, source, store=store)
    assert not result.passed and not result.over_rto
    assert any(repr(damaged.name) in p and "differs" in p for p in result.problems), result.problems
    assert result.target and not bucket_exists(gcs, result.target)
    assert list_drills(store, "gcs", source)[0].passed is False


class IncompleteRestore(GcsComponent):
    """The real component, but writing silently loses one object (a bug verification must catch)."""

    def apply_restore(self, ctx: Any, manifest: Any, plan: Any, request: Any) -> None:
        super().apply_restore(ctx, manifest, plan, request)
        from blocks.clients import storage_client

        bucket = plan.target.removeprefix("gs://")
        storage_client(ctx.settings.project).bucket(bucket).blob(manifest.entries[0].name).delete()


INCOMPLETE = IncompleteRestore()


def test_drill_fails_when_verification_finds_a_difference(
    gcs: Any, settings: Any, store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.engine import protocol as component

    source, manifest = backed_up(gcs, settings, store)
    monkeypatch.setitem(component.COMPONENTS, "gcs", f"{__name__}:INCOMPLETE")
    result = drill("gcs", settings, source, store=store)
    assert not result.passed
    assert result.problems == [f"missing in gs://{result.target}: {manifest.entries[0].name}"]
    assert not bucket_exists(gcs, result.target)


def test_drill_over_its_rto_fails(gcs: Any, settings: Any, store: Any) -> None:
    source, _ = backed_up(gcs, settings, store, count=3)
    settings.objectives = {"gcs": Objectives(rpo_hours=26, rto_minutes=0.00001)}
    result = drill("gcs", settings, source, store=store)
    assert result.over_rto and not result.passed
    assert "over the RTO of 1e-05 min" in result.problems[-1]
    assert not bucket_exists(gcs, result.target)


def test_drill_with_no_validated_backup_fails_clearly(gcs: Any, settings: Any, store: Any) -> None:
    result = drill("gcs", settings, "never-backed-up", store=store)
    assert not result.passed and result.target is None
    assert result.problems == [
        f"no validated backup of gcs/never-backed-up in gs://{settings.backup_bucket}/"
    ]


def test_drill_flow_fails_on_a_bad_drill_and_health_reports_it(
    gcs: Any, settings: Any, store: Any, saved_settings: str
) -> None:
    from flows.drill import restore_drill
    from flows.health import health_report

    good, _ = backed_up(gcs, settings, store, count=4)
    bad, manifest = backed_up(gcs, settings, store, count=4)
    store.put_bytes(manifest.entries[0].stored_key, b"damaged")
    with pytest.raises(
        ObjectiveBreached, match=rf"1 of 2 restore drill\(s\) failed: gcs/{bad}: size differs: 'data/"
    ):
        restore_drill(["gcs"], settings_block=saved_settings)
    drills = {d.source: d.passed for d in list_drills(store, "gcs")}
    assert drills == {good: True, bad: False}
    with pytest.raises(
        ObjectiveBreached, match=rf"1 source\(s\) breach an objective: gcs/{bad}: last drill .* failed"
    ):
        health_report(settings_block=saved_settings)


def test_cli_drill_then_health(
    gcs: Any, settings: Any, store: Any, saved_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import re

    from backstop_cli.main import main

    source, manifest = backed_up(gcs, settings, store, count=3)
    assert main(["--settings", saved_settings, "drill", "--component", "gcs", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["source"], row["backup_id"], row["passed"]) == (source, manifest.backup_id, True)
    assert main(["--settings", saved_settings, "health"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^ok\s+gcs\s+{source}\s", out, re.M), out
    assert main(["--settings", saved_settings, "drill", "--component", "nope"]) == 2
    assert "error: unknown component 'nope'" in capsys.readouterr().err
    assert main(["--settings", saved_settings, "copy-secondary", "--component", "nope"]) == 2
    assert "error: unknown component 'nope'" in capsys.readouterr().err  # not an empty "(nothing)"
