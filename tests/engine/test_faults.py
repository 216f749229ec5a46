"""Faults and corruption on the emulators: SIGKILLed backups and restores, damaged backups.

A backup or restore runs in a child process (the real code, on the real emulator); a progress
marker file tells the test where it is, and the test SIGKILLs it there. Nothing may be marked
complete that is not, the catalog must stay readable, the next run must succeed, and a restore
after it must be byte-identical.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from backstop.core.errors import InvalidInput, NotFound, ValidationFailed
from backstop.core.names import (
    check_backup_id,
    check_bucket,
    check_dataset,
    check_percent,
    check_source_name,
    check_table,
    parse_time,
)
from backstop_cli.main import main
from tasks.catalog import backups as catalog
from tasks.catalog import index
from tasks.engine.calls import ComponentCalls
from tests.conftest import read_all, seed_objects, unique

gcs_component = ComponentCalls("gcs")

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = 40

# The child: runs a backup or restore with batches of 10 and writes a marker at `stop_at`.
# With hold=1 it then waits there (the kill lands exactly at that point); with hold=0 it goes on
# (the kill lands somewhere in the next batch).
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from localdev.platform import PROJECT
    from blocks.clients import storage_client
    from blocks.settings import BackstopSettings
    from backstop.core.manifest import BackupManifest
    from tasks.catalog import backups as catalog
    from tasks.components.gcs import component as gcs
    from tasks.engine import units
    from tasks.engine.calls import ComponentCalls
    from tasks.storage.bucket import BackupStore

    mode, backup_bucket, source, marker, stop_at, hold = sys.argv[1:7]
    gcs.BATCH_SIZE = 10
    units.UNIT_WORKERS = 1  # batches one after another: 'batch-N' is a point in the run
    settings = BackstopSettings(project=PROJECT, backup_bucket=backup_bucket)
    store = BackupStore(storage_client(PROJECT), backup_bucket)
    done = []

    def reached(point):
        done.append(point)
        if point == stop_at:
            Path(marker).write_text(point)
            while hold == "1":
                time.sleep(0.05)

    if mode == "flow":  # the backup_gcs flow (its own plan / copy / commit tasks); argv[7] = settings block
        from flows.gcs import backup_gcs
        save = gcs.gcs_resume.save
        def save_then_mark(*a, **k):
            save(*a, **k)
            reached("batch-1")  # the first batch to finish holds its task thread; the others go on
        gcs.gcs_resume.save = save_then_mark
        backup_gcs([source], settings_block=sys.argv[7])
    elif mode == "backup":
        begin, commit = catalog.begin_backup, catalog.commit_backup
        def begin_then_mark(*a, **k):
            manifest = begin(*a, **k)
            reached("begun")
            return manifest
        def mark_then_commit(*a, **k):
            reached("before-commit")
            return commit(*a, **k)
        catalog.begin_backup, catalog.commit_backup = begin_then_mark, mark_then_commit
        ComponentCalls("gcs").backup(settings, store, source, progress=lambda done, total: reached(f"batch-{done}"))
    else:
        from tasks.components.gcs import copy as gcs_copy
        from tasks.storage import google_api
        os.environ["BACKSTOP_COPY_THREADS"] = "1"  # one copy worker: 'object-N' is a point in the restore's stream
        gcs_copy.BATCH_CALLS = google_api.BATCH_CALLS = 10  # batch requests of 10: "object-N" after every tenth
        restore_group, restored = gcs_copy._restore_group, []
        def restore_then_mark(client, target, store, entries):
            result = restore_group(client, target, store, entries)
            restored.extend(entries)
            reached(f"object-{len(restored)}")
            return result
        gcs_copy._restore_group = restore_then_mark
        manifest = store.read_manifest(sys.argv[8])
        ComponentCalls("gcs").restore(settings, store, manifest, target=sys.argv[7])
    Path(marker).write_text("finished")
    """
)


def seed(client: Any, count: int = OBJECTS) -> tuple[str, dict[str, bytes]]:
    return seed_objects(client, "faultsrc", count, 300, 37)


def run_child_and_kill(tmp_path: Path, args: list[str], stop_at: str, hold: bool, timeout: float = 60) -> str:
    """Start the child, SIGKILL it once the marker appears; returns the marker text."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    marker = tmp_path / f"marker-{stop_at}"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(script), args[0], args[1], args[2], str(marker), stop_at, "1" if hold else "0", *args[3:]],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            if child.poll() is not None:
                out = child.stdout.read().decode(errors="replace") if child.stdout else ""
                pytest.fail(f"child ended ({child.returncode}) before {stop_at}: {out[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"child did not reach {stop_at} in {timeout} s")
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    return marker.read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop_at", "hold", "copied_before"),
    [
        ("begun", True, 0),  # catalog opened, nothing copied
        ("batch-1", True, 10),  # first batch copied
        ("batch-2", False, None),  # killed somewhere inside the third batch
        ("before-commit", True, OBJECTS),  # everything copied, manifest not written
    ],
)
def test_backup_killed_leaves_no_manifest_and_next_run_is_whole(
    gcs: Any, settings: Any, store: Any, tmp_path: Path, stop_at: str, hold: bool, copied_before: int | None
) -> None:
    source, contents = seed(gcs)
    run_child_and_kill(tmp_path, ["backup", settings.backup_bucket, source], stop_at, hold)

    assert index.list_manifests(store) == []  # the catalog parses, and the killed run did not happen
    assert len(store.list("_inprogress/")) == 1  # its marker stays (it expires; prune honours it)
    manifest = gcs_component.backup(settings, store, source)
    assert len(manifest.entries) == OBJECTS and manifest.status == "complete"
    if copied_before is not None:
        assert manifest.source_state["reused"] == copied_before  # copies made before the kill are kept
    assert [m.backup_id for m in index.list_manifests(store)] == [manifest.backup_id]
    gcs_component.validate(settings, store, manifest, 100)
    target = unique("afterkill")
    gcs_component.restore(settings, store, manifest, target=target)
    assert read_all(gcs, target) == contents


@pytest.mark.slow
@pytest.mark.flow
def test_backup_flow_process_killed_leaves_no_manifest_and_next_run_is_whole(
    gcs: Any, settings: Any, store: Any, saved_settings: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))  # the child uses the test server
    source, contents = seed(gcs)
    run_child_and_kill(
        tmp_path, ["flow", settings.backup_bucket, source, saved_settings], "batch-1", True, 120
    )

    assert index.list_manifests(store) == []
    manifest = gcs_component.backup(settings, store, source)
    assert len(manifest.entries) == OBJECTS and manifest.source_state["reused"] >= 10
    gcs_component.validate(settings, store, manifest, 100)
    target = unique("afterflowkill")
    gcs_component.restore(settings, store, manifest, target=target)
    assert read_all(gcs, target) == contents


@pytest.mark.slow
def test_restore_killed_halfway_completes_when_rerun_without_overwrite(
    gcs: Any, settings: Any, store: Any, tmp_path: Path
) -> None:
    source, contents = seed(gcs)
    manifest = gcs_component.backup(settings, store, source)
    target = unique("halfrestored")
    run_child_and_kill(
        tmp_path, ["restore", settings.backup_bucket, source, target, manifest.path], "object-20", True
    )
    assert len(read_all(gcs, target)) == 20  # twenty objects landed before the kill

    report = gcs_component.restore(settings, store, manifest, target=target, overwrite=False)
    assert report.unchanged == 20 and report.created == OBJECTS - 20 and report.conflicts == []
    assert read_all(gcs, target) == contents


# -- corruption ------------------------------------------------------------------------------
def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + data[1:]


DAMAGE = {
    "flipped byte": lambda store, key: store.put_bytes(key, _flip(store.get_bytes(key))),
    "truncated": lambda store, key: store.put_bytes(key, store.get_bytes(key)[:-7]),
    "missing": lambda store, key: store.delete([key]),
}
EXPECTED = {"flipped byte": "checksum differs", "truncated": "size differs", "missing": "missing"}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_backup_object_is_named_by_validation_and_refused_by_restore(
    gcs: Any, settings: Any, store: Any, damage: str
) -> None:
    source, _ = seed(gcs, 8)
    manifest = gcs_component.backup(settings, store, source)
    victim = manifest.entries[3]
    DAMAGE[damage](store, victim.stored_key)

    with pytest.raises(ValidationFailed) as failure:
        gcs_component.validate(settings, store, manifest, 100)
    assert failure.value.problems and all(victim.name in p for p in failure.value.problems)
    assert EXPECTED[damage] in failure.value.problems[0]
    invalid = store.read_manifest(manifest.path)
    assert invalid.status == "invalid"
    with pytest.raises(NotFound, match="no validated backup"):  # what restore-by-default picks
        catalog.resolve_backup(store, "gcs", source)
    with pytest.raises((ValidationFailed, NotFound), match=re.escape(victim.name)):
        gcs_component.restore(settings, store, invalid, target=unique("fromdamaged"))  # given it explicitly


def test_restore_of_an_invalid_backup_writes_nothing(gcs: Any, settings: Any, store: Any) -> None:
    source, _ = seed(gcs, 8)
    manifest = gcs_component.backup(settings, store, source)
    DAMAGE["flipped byte"](store, manifest.entries[0].stored_key)
    with pytest.raises(ValidationFailed):
        gcs_component.validate(settings, store, manifest, 100)
    target = unique("fromdamaged")
    with pytest.raises(ValidationFailed):
        gcs_component.restore(settings, store, store.read_manifest(manifest.path), target=target)
    assert gcs.lookup_bucket(target) is None or read_all(gcs, target) == {}


def _truncate(body: bytes) -> bytes:
    return body[: len(body) // 2]


def _edit(body: bytes) -> bytes:
    document = json.loads(body)
    document["entries"][0]["size"] += 1  # changed without re-sealing the digest
    return json.dumps(document, indent=1).encode()


@pytest.mark.parametrize(("how", "change", "message"), [
    ("truncated", _truncate, "damaged manifest"),
    ("edited", _edit, "digest does not match"),
])  # fmt: skip
def test_damaged_manifest_is_named_and_hides_no_other_backup(
    gcs: Any, settings: Any, store: Any, how: str, change: Any, message: str
) -> None:
    source, _ = seed(gcs, 6)
    damaged = gcs_component.backup(settings, store, source)
    good = gcs_component.backup(settings, store, source)
    store.put_bytes(damaged.path, change(store.get_bytes(damaged.path)), content_type="application/json")

    with pytest.raises(ValidationFailed, match=message) as failure:
        index.list_manifests(store)
    assert damaged.path in str(failure.value)
    reported: list[str] = []
    assert [m.backup_id for m in index.list_manifests(store, on_damaged=reported.append)] == [good.backup_id]
    assert len(reported) == 1 and damaged.path in reported[0]
    with pytest.raises(ValidationFailed, match=message):  # restore by id refuses it
        catalog.resolve_backup(store, "gcs", backup_id=damaged.backup_id)
    assert catalog.resolve_backup(store, "gcs", source, validated_only=False).backup_id == good.backup_id


# -- bad input: names, ids, percentages and times, through backstop.core.names, the CLI and the flows --
BAD_CLI = [
    (["backup", "gcs", "--bucket", "Not_A_Bucket!"], "malformed bucket name"),
    (["backup", "gcs", "--bucket", "ab"], "malformed bucket name"),
    (["backup", "gcs", "--bucket", "a" * 64], "longer than 63"),
    (["backup", "gcs", "--bucket", "goog-reserved"], "malformed bucket name"),
    (["backup", "gcs", "--bucket", "bad..dots"], "malformed bucket name"),
    (["backup", "gcs", "--bucket=-leading-dash"], "malformed bucket name"),
    (["backup", "gcs", "--bucket", "trailing-"], "malformed bucket name"),
    (["backup", "gcs", "--bucket", "with space"], "malformed bucket name"),
    (["backup", "gcs", "--bucket", "ünïcode-bucket"], "malformed bucket name"),
    (["backup", "gcs", "--bucket", "line\nbreak"], "malformed bucket name"),
    (["restore", "gcs", "--bucket", "UPPER-CASE"], "malformed bucket name"),
    (["restore", "gcs", "--bucket", "ok-bucket", "--target", "Bad!"], "malformed bucket name"),
    (["restore", "gcs", "--bucket", "ok-bucket", "--backup-id", "last-tuesday"], "malformed backup id"),
    (
        ["restore", "gcs", "--bucket", "ok-bucket", "--backup-id", "20261124T214600Z-XYZ123"],
        "malformed backup id",
    ),
    (["restore", "gcs", "--bucket", "ok-bucket", "--backup-id", "2026-11-24"], "malformed backup id"),
    (["validate", "not-a-backup-id"], "malformed backup id"),
    (["backup", "gcs", "--bucket", "ok-bucket", "--sample-percent", "150"], "out of range"),
    (["backup", "gcs", "--bucket", "ok-bucket", "--sample-percent", "-1"], "out of range"),
    (["backup", "gcs", "--bucket", "ok-bucket", "--sample-percent", "nan"], "out of range"),
    (["backup", "gcs", "--bucket", "ok-bucket", "--sample-percent", "inf"], "out of range"),
    (["backup", "gcs", "--bucket", "ok-bucket", "--sample-percent", "lots"], "invalid float value"),
    (["restore", "gcs", "--bucket", "ok-bucket", "--before", "yesterday-ish"], "malformed time"),
    (["restore", "gcs", "--bucket", "ok-bucket", "--before", "2026-13-01"], "malformed time"),
    (["restore", "gcs", "--bucket", "ok-bucket", "--before", "1999-12-31"], "out of range"),
    (["restore", "gcs", "--bucket", "ok-bucket", "--before", "3000-01-01"], "out of range"),
    (["list", "--before", "13/13/2026"], "malformed time"),
    (["restore", "gcs"], "required: --source/--bucket"),
    (["backup", "no-such-component"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
    (["--settings", "no-such-settings", "list"], "backstop-settings/no-such-settings"),
]


def _cli_rejects(argv: list[str], saved_settings: str, capsys: pytest.CaptureFixture[str]) -> str:
    full = argv if argv[0] == "--settings" else ["--settings", saved_settings, *argv]
    assert main(full) == 2, full
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def cli_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_HOME", str(tmp_path / "state"))


@pytest.mark.flow
@pytest.mark.usefixtures("cli_state")
def test_cli_rejects_every_bad_input_in_one_line_and_writes_nothing(
    gcs: Any, settings: Any, saved_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, message in BAD_CLI:
        assert message in _cli_rejects(argv, saved_settings, capsys), argv
        assert list(gcs.list_blobs(settings.backup_bucket)) == [], argv


@pytest.mark.flow
@pytest.mark.slow
def test_cli_error_inside_a_flow_is_one_line_for_a_real_user(saved_settings: str, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    env = os.environ | {
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "BACKSTOP_HOME": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "backstop_cli.main", "--settings", saved_settings, "validate", "20261124T214600Z-abcdef"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "not found" in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr[-3000:]


def _invalid_bucket(name: str) -> bool:
    try:
        check_bucket(name)
    except InvalidInput:
        return True
    return False


@pytest.mark.flow
@pytest.mark.usefixtures("cli_state")
@settings_(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=0, max_size=70).filter(_invalid_bucket))
def test_cli_rejects_generated_bucket_names(
    name: str, gcs: Any, settings: Any, saved_settings: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _cli_rejects(["backup", "gcs", f"--bucket={name}"], saved_settings, capsys)
    assert "malformed bucket name" in err


@settings_(max_examples=300, deadline=None)
@given(value=st.text(max_size=80))
def test_names_accept_or_reject_any_text_cleanly(value: str) -> None:
    for check in (check_bucket, check_backup_id, check_dataset, check_table, check_source_name):
        try:
            assert check(value) == value
        except InvalidInput as exc:
            assert repr(value) in str(exc)


@settings_(max_examples=300, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12)))
def test_percent_is_a_number_from_0_to_100(value: Any) -> None:
    try:
        number = check_percent(value)
    except InvalidInput:
        return
    assert 0 <= number <= 100


@settings_(max_examples=300, deadline=None)
@given(
    value=st.one_of(st.text(max_size=40), st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()))
)
def test_times_parse_or_reject_cleanly(value: str) -> None:
    try:
        moment = parse_time(value)
    except InvalidInput as exc:
        assert repr(value) in str(exc)
        return
    assert moment.utcoffset() is not None and 2000 <= moment.year <= 2200


@pytest.mark.flow
@pytest.mark.parametrize(
    ("flow_name", "kwargs", "message"),
    [
        ("backup_gcs", {"sources": ["Bad_Bucket!"]}, "malformed bucket name"),
        ("backup_gcs", {"sources": ["ok-bucket"], "sample_percent": 101.0}, "out of range"),
        ("backup_gcs", {"sources": ["ok-bucket"], "settings_block": "no-such-settings"}, "not found"),
        ("restore_gcs", {"source": "ok-bucket", "backup_id": "last-tuesday"}, "malformed backup id"),
        ("restore_gcs", {"source": "ok-bucket", "before": "yesterday-ish"}, "malformed time"),
        ("restore_gcs", {"source": "ok-bucket", "target": "Bad!"}, "malformed bucket name"),
        ("validate_gcs", {"source": "Bad!"}, "malformed bucket name"),
    ],
)
def test_flow_parameters_are_rejected_with_a_clear_message(
    gcs: Any, settings: Any, saved_settings: str, flow_name: str, kwargs: dict[str, Any], message: str
) -> None:
    import flows.gcs

    chosen = getattr(flows.gcs, flow_name)
    state = chosen(**({"settings_block": saved_settings} | kwargs), return_state=True)
    if flow_name.startswith("restore"):  # a restore refused for its input: no failure, no alert
        assert state.is_cancelled() and state.name == "Refused", state
    else:
        assert state.is_failed(), state
    assert message in (state.message or ""), state.message
    assert list(gcs.list_blobs(settings.backup_bucket)) == []
