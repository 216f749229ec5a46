"""Cloud Storage flows and CLI on the Prefect test harness and the emulators."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backstop_cli.main import main
from flows.gcs import backup_gcs, restore_gcs, validate_gcs
from tests.conftest import unique

pytestmark = [pytest.mark.flow, pytest.mark.integration]


@pytest.fixture(autouse=True)
def isolated_state(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_HOME", str(tmp_path / "state"))


def seed(gcs: Any, count: int) -> str:
    name = unique("flowsrc")
    bucket = gcs.create_bucket(name)
    for i in range(count):
        bucket.blob(f"p{i % 4}/o {i}.txt").upload_from_string(f"object {i}".encode())
    return name


def flow_task_runs(flow_run_name_prefix: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_run_name_prefix])), limit=200
        )


def test_backup_flow_batches_objects_and_records_artifacts(
    gcs: Any, saved_settings: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from tasks.components.gcs import component as gcs_tasks

    monkeypatch.setattr(gcs_tasks, "BATCH_SIZE", 100)
    source = seed(gcs, 450)
    rows = backup_gcs([source], settings_block=saved_settings)
    assert rows[0]["objects"] == 450 and rows[0]["status"] == "validated"
    runs = flow_task_runs("backup-gcs")
    assert 0 < len(runs) < 50  # a handful of batches, not one task per object
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["gcs-backup-summary"]))
        )
    assert any(source in json.dumps(a.data) for a in artifacts)


def test_cli_backup_list_validate_restore(
    gcs: Any, saved_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = seed(gcs, 12)
    assert main(["--settings", saved_settings, "backup", "gcs", "--bucket", source, "--json"]) == 0
    backup_id = json.loads(capsys.readouterr().out)[0]["backup_id"]

    assert (
        main(["--settings", saved_settings, "list", "--component", "gcs", "--source", source, "--json"]) == 0
    )
    listed = json.loads(capsys.readouterr().out)["backups"]
    assert [b["backup_id"] for b in listed] == [backup_id]
    assert isinstance(listed[0]["bytes"], int) and listed[0]["started_at"].endswith("+00:00")  # typed JSON

    # a failed backup is no backup, but `list --all` shows the run and why it failed
    assert main(["--settings", saved_settings, "backup", "gcs", "--bucket", source + "-gone", "--json"]) == 2
    capsys.readouterr()
    assert main(["--settings", saved_settings, "list", "--all", "--component", "gcs", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    failed = [r for r in listing["runs"] if r["source"] == source + "-gone"]
    assert [(r["kind"], r["outcome"], r["error_kind"]) for r in failed] == [("backup", "failed", "NotFound")]
    assert source + "-gone" not in {b["source"] for b in listing["backups"]}
    assert main(["--settings", saved_settings, "list", "--component", "gcss"]) == 2
    assert "unknown component 'gcss'" in capsys.readouterr().err

    assert main(["--settings", saved_settings, "validate", backup_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "validated"

    target = unique("clirestore")
    assert (
        main(
            ["--settings", saved_settings, "restore", "gcs", "--bucket", source, "--target", target, "--json"]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["created"] == 12
    assert {b.name: b.download_as_bytes() for b in gcs.list_blobs(target)} == {
        b.name: b.download_as_bytes() for b in gcs.list_blobs(source)
    }

    # A second restore into the original, changed, bucket refuses to overwrite and says why.
    gcs.bucket(source).blob("p0/o 0.txt").upload_from_string(b"changed")
    assert main(["--settings", saved_settings, "restore", "gcs", "--bucket", source]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "p0/o 0.txt" in err and "Traceback" not in err
    assert gcs.bucket(source).blob("p0/o 0.txt").download_as_bytes() == b"changed"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["backup", "gcs", "--bucket", "Not_A_Bucket!"], "malformed bucket name"),
        (["restore", "gcs", "--bucket", "ok-bucket", "--backup-id", "last-tuesday"], "malformed backup id"),
        (["restore", "gcs", "--bucket", "ok-bucket", "--before", "yesterday-ish"], "malformed time"),
        (["backup", "gcs", "--bucket", "ok-bucket", "--sample-percent", "150"], "out of range"),
        (["validate", "20261124T214600Z-abcdef"], "not found"),
        (["list", "--before", "13/13/2026"], "malformed time"),
        (["frobnicate"], "invalid choice"),
        (["--settings", "no-such-settings", "list"], "backstop-settings/no-such-settings"),
    ],
)
def test_cli_bad_input_is_one_line_with_exit_2(
    argv: list[str], message: str, saved_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    full = argv if argv[0] == "--settings" else ["--settings", saved_settings, *argv]
    assert main(full) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_restore_flow_dry_run_changes_nothing(gcs: Any, saved_settings: str) -> None:
    source = seed(gcs, 5)
    backup_gcs([source], settings_block=saved_settings)
    gcs.bucket(source).blob("p1/o 1.txt").delete()
    summary = restore_gcs(source, dry_run=True, settings_block=saved_settings)
    assert summary["created"] == 1 and summary["dry_run"] is True
    assert gcs.bucket(source).get_blob("p1/o 1.txt") is None


def test_overwriting_the_original_needs_yes(
    gcs: Any, saved_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = seed(gcs, 4)
    backup_gcs([source], settings_block=saved_settings)
    gcs.bucket(source).blob("p2/o 2.txt").upload_from_string(b"edited")
    argv = ["--settings", saved_settings, "restore", "gcs", "--bucket", source, "--overwrite"]
    assert main(argv) == 2
    assert "needs --yes" in capsys.readouterr().err
    assert gcs.bucket(source).blob("p2/o 2.txt").download_as_bytes() == b"edited"
    assert main([*argv, "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overwritten"] == 1
    assert gcs.bucket(source).blob("p2/o 2.txt").download_as_bytes() == b"object 2"


def restore_runs() -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["restore-gcs"])))


def test_a_refused_restore_is_said_and_is_no_failure(
    gcs: Any, store: Any, saved_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.client.schemas.objects import StateType

    from tasks.catalog.backups import list_runs

    source, other = seed(gcs, 3), seed(gcs, 3)
    backup_gcs([source], settings_block=saved_settings)
    other_id = backup_gcs([other], settings_block=saved_settings)[0]["backup_id"]

    # what the CLI can tell (another source's backup, a malformed name) is refused before a flow run
    before = len(restore_runs())
    argv = ["--settings", saved_settings, "restore", "gcs", "--bucket", source, "--backup-id", other_id]
    assert main(argv) == 2
    assert f"backup {other_id} is a backup of gcs '{other}', not of gcs '{source}'" in capsys.readouterr().err
    assert main(["--settings", saved_settings, "restore", "gcs", "--bucket", "Bad_Name!"]) == 2
    assert "malformed bucket name" in capsys.readouterr().err
    assert len(restore_runs()) == before

    # what only the restore can tell (it would overwrite) ends "Refused": no failure, no alert
    gcs.bucket(source).blob("p0/o 0.txt").upload_from_string(b"changed")
    state = restore_gcs(source, settings_block=saved_settings, return_state=True)
    assert (state.type, state.name) == (StateType.CANCELLED, "Refused")
    assert "overwrite was not asked for" in (state.message or "")
    assert main(["--settings", saved_settings, "restore", "gcs", "--bucket", source]) == 2
    assert "overwrite was not asked for" in capsys.readouterr().err
    runs = [r for r in list_runs(store, "gcs", source) if r.kind == "restore"]
    assert [r.outcome for r in runs] == ["refused", "refused"] and not any(r.failed for r in runs)


@pytest.mark.parametrize("name", ["gcs", "bigquery", "configs", "composer", "gke"])
def test_the_ui_run_forms_are_plain_fields_with_defaults(name: str) -> None:
    """What the Prefect UI builds its run form from: no "None" toggles, the options shown."""
    from flows.components import component_flows

    backup, _, restore = component_flows(name)
    form = restore.parameters.model_dump()["properties"]
    for field in ("target", "backup_id", "before", "only", "options"):
        assert "anyOf" not in form[field] and "default" in form[field], (field, form[field])
    assert form["target"] == form["target"] | {"type": "string", "default": ""}
    assert "anyOf" not in backup.parameters.model_dump()["properties"]["options"]


def test_the_backup_summary_leads_with_status_source_size_time(gcs: Any, saved_settings: str) -> None:
    (row,) = backup_gcs([seed(gcs, 3)], settings_block=saved_settings)
    assert list(row)[:6] == ["status", "component", "source", "size", "started_utc", "seconds"]


def test_a_triggered_validation_takes_every_backup_written_since_not_only_the_latest(
    gcs: Any, settings: Any, store: Any, saved_settings: str
) -> None:
    """Two backups of one bucket land before the validation their first one triggered runs (a manual
    backup beside a scheduled one): both are validated, not only the latest."""
    from tasks.catalog import index
    from tasks.engine.calls import ComponentCalls

    source = unique("pendingsrc")
    bucket = gcs.create_bucket(source)
    bucket.blob("a.txt").upload_from_string(b"a")
    first = ComponentCalls("gcs").backup(settings, store, source)  # written, not validated
    bucket.blob("b.txt").upload_from_string(b"b")
    second = ComponentCalls("gcs").backup(settings, store, source)
    status = {h.backup_id: h.status for h in index.read_headers(store, "gcs", source)}
    assert status == {first.backup_id: "complete", second.backup_id: "complete"}

    rows = validate_gcs(source=source, settings_block=saved_settings)
    assert sorted(r["backup_id"] for r in rows) == sorted([first.backup_id, second.backup_id])
    status = {h.backup_id: h.status for h in index.read_headers(store, "gcs", source)}
    assert status == {first.backup_id: "validated", second.backup_id: "validated"}

    (again,) = validate_gcs(source=source, settings_block=saved_settings)  # nothing new: the latest again
    assert again["backup_id"] == second.backup_id and again["status"] == "validated"


def test_a_long_restore_says_its_note_before_the_rows_it_cuts(
    gcs: Any, saved_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text output lists 200 actions: what must be read (a note that the rest of the bucket is
    not restored) comes before 210 creates, not after the cut."""
    source = seed(gcs, 420)
    backup = [
        "--settings",
        saved_settings,
        "backup",
        "gcs",
        "--bucket",
        source,
        "--prefix",
        "p0/",
        "--prefix",
        "p1/",
    ]
    assert main(backup) == 0
    capsys.readouterr()
    assert (
        main(["--settings", saved_settings, "restore", "gcs", "--bucket", source, "--target", unique("t")])
        == 0
    )
    out = capsys.readouterr().out
    assert "created         210" in out and "211 actions, by folder: --json lists each" in out
    assert "holds only this part of" in out, out[-1500:]
    lines = out.splitlines()  # the note, then a row per folder of the creates
    note = next(i for i, line in enumerate(lines) if "holds only this part of" in line)
    folders = [line.split()[:3] for line in lines[note + 1 :] if "absent" in line or "(" in line]
    assert folders[:2] == [["p0/", "(105)", "create"], ["p1/", "(105)", "create"]], out[-1500:]
    # the run's artifact in the UI lists it first too
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["gcs-restore-actions"]))
        )
    (rows,) = [json.loads(a.data) for a in found if source in str(a.data)]
    assert rows[0]["change"] == "note" and "holds only this part of" in rows[0]["why"], rows[:2]


def test_a_backup_killed_with_sigterm_ends_as_an_abandoned_run_not_a_backup(
    gcs: Any, settings: Any, prefect_harness: None, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kill` (SIGTERM) on a `backstop backup` in its copies: the command unwinds as on Ctrl-C,
    says "terminated" and exits 143, and the catalog has the run as abandoned, no backup of it."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from prefect.settings import PREFECT_API_URL

    source = seed(gcs, 60)
    settings.gcs_write_rate = 5.0  # 60 copies: ~12 s, time to stop it in the middle
    block = unique("settings")
    settings.save(block)
    env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "BACKSTOP_WARM": "0"}
    command = subprocess.Popen(
        [str(Path(sys.executable).with_name("backstop")), "--settings", block, "backup", "gcs", "--bucket", source],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list(gcs.list_blobs(settings.backup_bucket, prefix="pool/", max_results=1)):
            assert command.poll() is None and time.monotonic() < deadline, command.communicate()
            time.sleep(0.1)
    finally:
        command.send_signal(signal.SIGTERM)
        out, err = command.communicate(timeout=120)
    assert command.returncode == 143 and err.strip().endswith("terminated"), (command.returncode, err[-2000:])

    assert main(["--settings", block, "list", "--all", "--component", "gcs", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    runs = [(r["kind"], r["outcome"]) for r in listing["runs"] if r["source"] == source]
    assert runs == [("backup", "abandoned")]  # as a Ctrl-C leaves it
    assert source not in {b["source"] for b in listing["backups"]}
