"""Re-verification as a user runs it: `backstop verify`, the scheduled flow and its alert, and what
restore and health then say (Prefect test harness, the emulators, a real webhook receiver)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backstop_cli.main import main
from tasks.engine import lifecycle
from tests.conftest import unique
from tests.flows.test_health_and_notify import Receiver, notifying_settings, receiver  # noqa: F401

pytestmark = [pytest.mark.flow, pytest.mark.integration]


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_HOME", str(tmp_path / "state"))


def two_backups_the_older_damaged(gcs: Any, settings: Any, store: Any) -> tuple[str, Any, Any]:
    """(bucket, older backup, newer backup) with one byte flipped in an object only the older holds."""
    source = unique("verifysrc")
    bucket = gcs.create_bucket(source)
    for i in range(5):
        bucket.blob(f"data/{i}.txt").upload_from_string(f"row {i}\n".encode())
    old = lifecycle.backup("gcs", settings, source, store=store)
    bucket.blob("data/0.txt").upload_from_string(b"changed after the first backup\n")
    new = lifecycle.backup("gcs", settings, source, store=store)
    newer = {e.stored_key for e in store.iter_entries(new)}
    (victim,) = [e for e in store.iter_entries(old) if e.stored_key not in newer]
    data = bytearray(store.get_bytes(victim.stored_key))
    data[0] ^= 0x01
    store.put_bytes(victim.stored_key, bytes(data))
    return source, old, new


def test_cli_verify_marks_the_damaged_old_backup_and_restore_before_its_time_finds_none(
    gcs: Any, settings: Any, store: Any, saved_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source, old, new = two_backups_the_older_damaged(gcs, settings, store)
    assert (
        main(["--settings", saved_settings, "verify", "--component", "gcs", "--share", "100%", "--json"]) == 1
    )
    result = json.loads(capsys.readouterr().out)
    assert result["totals"]["damaged"] == 1 and result["share"] == 1.0
    (problem,) = result["problems"]
    assert f"gcs/{source} backup {old.backup_id} damaged" in problem and "data/0.txt" in problem

    assert (
        main(["--settings", saved_settings, "list", "--component", "gcs", "--source", source, "--json"]) == 0
    )
    listed = {b["backup_id"]: b["status"] for b in json.loads(capsys.readouterr().out)["backups"]}
    assert listed == {old.backup_id: "invalid", new.backup_id: "validated"}

    before = old.started_at.isoformat()
    target = unique("verifytarget")
    restore = ["restore", "gcs", "--bucket", source, "--before", before, "--target", target]
    assert main(["--settings", saved_settings, *restore]) == 2
    assert "no validated backup" in capsys.readouterr().err
    assert gcs.lookup_bucket(target) is None  # nothing written

    assert main(["--settings", saved_settings, "health", "--json"]) in (0, 1)
    (row,) = [r for r in json.loads(capsys.readouterr().out)["health"] if r["source"] == source]
    assert "last re-verification" in row["problems"] and old.backup_id in row["problems"]

    assert main(["--settings", saved_settings, "verify", "--share", "0"]) == 2  # a share must be > 0
    assert "share" in capsys.readouterr().err


def test_scheduled_reverification_fails_and_alerts_when_it_finds_damage(
    gcs: Any,
    settings: Any,
    store: Any,
    notifying_settings: str,  # noqa: F811
    receiver: Receiver,  # noqa: F811
) -> None:
    from flows.verify import reverify_backups

    _, old, _ = two_backups_the_older_damaged(gcs, settings, store)
    state = reverify_backups(settings_block=notifying_settings, share_percent=100, return_state=True)
    assert state.is_failed()
    post = receiver.wait_for(old.backup_id, timeout=10)
    assert post is not None, f"no alert received; got {receiver.posts}"
    assert post["subject"] == "Backstop: reverify-backups Failed" and "re-verification found" in post["text"]
    assert store.read_manifest(old.path).status == "invalid"


def test_sources_are_batched_so_task_runs_stay_bounded(
    gcs: Any, settings: Any, store: Any, saved_settings: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.verify import reverify_backups
    from tasks.engine import reverify

    monkeypatch.setattr(reverify, "MAX_TASKS", 2)
    sources = [unique("batchsrc") for _ in range(3)]
    for source in sources:
        gcs.create_bucket(source).blob("a.txt").upload_from_string(b"a")
        lifecycle.backup("gcs", settings, source, store=store)
    state = reverify_backups(settings_block=saved_settings, share_percent=100, return_state=True)
    result = state.result()
    assert sorted(r["source"] for r in result["sources"]) == sorted(sources) and not result["problems"]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    names = [r.name for r in runs if r.name.startswith("reverify-")]
    assert len([n for n in names if "-read-" not in n]) == 2  # 3 sources in 2 batches
    assert len([n for n in names if "-read-" in n]) == 2  # each batch's objects read in one unit
