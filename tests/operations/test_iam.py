"""Least privilege: the roles of deployments/iam/roles.yaml, and `backstop preflight --iam` asking
Backstop's local Cloud Storage server (testIamPermissions answered from each bucket's IAM policy and
the custom roles file) as each service account."""

from __future__ import annotations

import json
from typing import Any

import pytest

from blocks.settings import BackstopSettings
from localdev.platform import PROJECT
from tasks.catalog import index
from tasks.operations import iam
from tests.conftest import unique

pytestmark = pytest.mark.integration

DELETE, CREATE, UPDATE = "storage.objects.delete", "storage.objects.create", "storage.objects.update"
RETAIN, OVERRIDE = "storage.objects.setRetention", "storage.objects.overrideUnlockedRetention"


def test_each_job_gets_only_what_it_needs_where_it_needs_it() -> None:
    spec = iam.load_spec()
    expected = {
        (a["name"], kind): iam.expected_permissions(spec, a["name"], kind)
        for a in spec["service_accounts"]
        for kind in iam.KINDS
    }
    assert DELETE not in expected[("backstop-backup-writer", "backup")]
    assert RETAIN in expected[("backstop-backup-writer", "backup")]  # it locks what it writes
    # two trust domains: the writer has nothing on the secondary, which its own account writes
    assert expected[("backstop-backup-writer", "secondary")] == set()
    assert expected[("backstop-backup-writer", "sources")] == {
        "storage.buckets.get",
        "storage.objects.get",
        "storage.objects.list",
    }
    assert CREATE in expected[("backstop-secondary-writer", "secondary")]
    assert not expected[("backstop-secondary-writer", "secondary")] & {DELETE, UPDATE}
    assert not any(OVERRIDE in perms for perms in expected.values())  # nobody may shorten a retention
    assert not expected[("backstop-validator", "backup")] & {DELETE, UPDATE}
    assert (
        DELETE in expected[("backstop-pruner", "backup")]
        and CREATE not in expected[("backstop-pruner", "backup")]
    )
    assert expected[("backstop-pruner", "targets")] == set()  # delete on the backup buckets only
    assert not expected[("backstop-restorer", "backup")] & {CREATE, DELETE, UPDATE}
    assert CREATE in expected[("backstop-restorer", "targets")]
    assert all(not expected[(a, "targets")] for a in ("backstop-backup-writer", "backstop-validator"))
    assert all(
        not expected[(a["name"], kind)] & {DELETE}
        for a in spec["service_accounts"]
        for kind in ("sources",)
    )  # fmt: skip
    assert iam.compare(
        {CREATE, "storage.objects.get"}, {"storage.objects.get", DELETE, "storage.other.x"}
    ) == (
        [CREATE],
        [DELETE],
    )


def grant(client: Any, bucket: str, pairs: list[tuple[str, str]] | list[dict[str, Any]]) -> None:
    """Add bindings, given as (role, member) pairs or as iam.bindings' dicts, to `bucket`'s IAM policy."""
    found = client.get_bucket(bucket)
    policy = found.get_iam_policy(requested_policy_version=3)
    for pair in pairs:
        policy.bindings.append(pair if isinstance(pair, dict) else {"role": pair[0], "members": {pair[1]}})
    policy.version = 3  # conditions need policy version 3
    found.set_iam_policy(policy)


@pytest.mark.flow
def test_preflight_iam_reports_missing_permissions_and_permissions_a_job_should_not_have(
    policy_gcs: Any, prefect_harness: None, monkeypatch: Any, capsys: Any
) -> None:
    from backstop_cli.main import main

    names = {
        kind: policy_gcs.create_bucket(unique(kind)).name for kind in ("backups", "backups-dr", "source")
    }
    settings = BackstopSettings(
        project=PROJECT,
        backup_bucket=names["backups"],
        secondary_bucket=names["backups-dr"],
        gcs_sources=[names["source"]],
    )
    name = unique("settings")
    settings.save(name, overwrite=True)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", policy_gcs._connection.API_BASE_URL)
    kinds = {
        "backup": [names["backups"]],
        "secondary": [names["backups-dr"]],
        "sources": [names["source"]],
        "targets": [names["source"]],
    }
    for bucket, pairs in iam.bindings(iam.load_spec(), PROJECT, kinds).items():
        grant(policy_gcs, bucket, pairs)

    main(["--settings", name, "preflight", "--iam", "--json"])
    rows = [f for f in json.loads(capsys.readouterr().out) if f["check"].startswith("iam ")]
    assert len(rows) == 5 * 3  # five service accounts, three buckets each
    assert {r["level"] for r in rows} == {"ok"}, rows

    # two mistakes: objectAdmin for the backup writer, and the validator's binding on the secondary removed
    writer = f"serviceAccount:{iam.email('backstop-backup-writer', PROJECT)}"
    grant(policy_gcs, names["backups"], [("roles/storage.objectAdmin", writer)])
    secondary = policy_gcs.get_bucket(names["backups-dr"])
    policy = secondary.get_iam_policy(requested_policy_version=3)
    policy.bindings = [b for b in policy.bindings if "backstopValidator" not in b["role"]]
    secondary.set_iam_policy(policy)

    assert main(["--settings", name, "preflight", "--iam", "--json"]) == 1
    red = {
        (f["check"], f["bucket"]): f["message"]
        for f in json.loads(capsys.readouterr().out)
        if f["check"].startswith("iam ") and f["level"] == "error"
    }
    assert set(red) == {
        ("iam backstop-backup-writer", names["backups"]),
        ("iam backstop-validator", names["backups-dr"]),
    }
    assert red[("iam backstop-backup-writer", names["backups"])] == (
        "should not have: storage.objects.delete, storage.objects.setIamPolicy, storage.objects.update"
    )
    assert red[("iam backstop-validator", names["backups-dr"])] == (
        "missing: storage.buckets.get, storage.objects.create, storage.objects.get, storage.objects.list, "
        "storage.objects.setRetention"
    )


def test_each_job_does_its_work_with_its_own_role_and_nothing_more(policy_gcs: Any, monkeypatch: Any) -> None:
    """Backup as the writer, validate as the validator, prune as the pruner: each works, and what the
    role forbids is refused by the bucket (the writer cannot delete, the validator cannot hold)."""
    from google.api_core import exceptions as gexc

    from backstop.core.manifest import ManifestEntry, utcnow
    from backstop.core.retention import RetentionPolicy
    from blocks.clients import storage_client_as
    from tasks.catalog import backups as catalog
    from tasks.catalog.stored import verify_stored
    from tasks.operations.prune import prune
    from tasks.operations.security import hold_findings
    from tasks.storage.bucket import BackupStore
    from tasks.storage.google_api import crc32c_b64

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", policy_gcs._connection.API_BASE_URL)
    bucket = policy_gcs.create_bucket(unique("backups")).name
    spec = iam.load_spec()
    for name, pairs in iam.bindings(spec, PROJECT, {"backup": [bucket]}).items():
        grant(policy_gcs, name, pairs)
    as_job = {
        job: BackupStore(storage_client_as(PROJECT, iam.email(job, PROJECT)), bucket, hold_validated=True)
        for job in ("backstop-backup-writer", "backstop-validator", "backstop-pruner")
    }
    writer, validator, pruner = as_job.values()
    source = unique("src")
    backups = []
    for generation in (1, 2):
        manifest = catalog.begin_backup(writer, "gcs", source)
        data = f"generation {generation}".encode()
        key = f"pool/gcs/{source}/{generation}/obj"
        writer.put_bytes(key, data)
        entry = ManifestEntry(name="obj", stored_key=key, size=len(data), crc32c=crc32c_b64(data))
        backups.append(catalog.commit_backup(writer, manifest, [entry]))
    with pytest.raises(gexc.Forbidden):
        writer.bucket.blob(backups[0].path).delete()
    assert (
        writer.delete([backups[0].path]) and policy_gcs.bucket(bucket).get_blob(backups[0].path) is not None
    )

    for manifest in backups:
        checked = verify_stored(validator, manifest, 100)
        problems, read = checked.problems, checked.read_back
        catalog.record_validation(validator, manifest, problems, 1, read)
    assert [m.validated for m in index.list_manifests(validator, "gcs", source)] == [True, True]
    assert (
        not policy_gcs.bucket(bucket).get_blob(backups[1].path).temporary_hold
    )  # the validator may not hold

    settings = BackstopSettings(project=PROJECT, backup_bucket=bucket)
    [unheld] = hold_findings(policy_gcs, settings, bucket)  # what preflight shows meanwhile
    assert (
        unheld.level == "warning" and f"gcs/{source} ({backups[1].backup_id}) is not held" in unheld.message
    )

    keep_one = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    report = prune(pruner, "gcs", source, keep_one, utcnow())
    assert report.removed == [backups[0].backup_id] and report.not_deleted == []
    assert policy_gcs.bucket(bucket).get_blob(backups[1].path).temporary_hold  # the pruner holds the newest
    assert f"pool/gcs/{source}/1/obj" not in pruner.list(f"pool/gcs/{source}/"), report.notes
    assert [f.level for f in hold_findings(policy_gcs, settings, bucket)] == ["ok"]


def test_the_jobs_that_spread_on_dask_manage_their_work_files_under_resume_and_nothing_more(
    policy_gcs: Any, monkeypatch: Any
) -> None:
    """On Dask, validation, the secondary copy, prune and a restore hand their batches to the workers
    as work files under `_resume/` of the backup buckets (tasks/engine/units.py): their accounts create
    and remove them there, through the conditional binding of roles.yaml, and still nowhere else."""
    from google.api_core import exceptions as gexc

    from blocks.clients import storage_client_as
    from tasks.engine.units import WORK_PREFIX
    from tasks.storage.bucket import BackupStore

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", policy_gcs._connection.API_BASE_URL)
    bucket = policy_gcs.create_bucket(unique("backups")).name
    for name, pairs in iam.bindings(
        iam.load_spec(), PROJECT, {"backup": [bucket], "secondary": [bucket]}
    ).items():
        grant(policy_gcs, name, pairs)
    policy_gcs.bucket(bucket).blob("gcs/src/backup/manifest.json").upload_from_string(b"{}")
    for job in ("backstop-validator", "backstop-secondary-writer", "backstop-pruner", "backstop-restorer"):
        store = BackupStore(storage_client_as(PROJECT, iam.email(job, PROJECT)), bucket)
        key = f"{WORK_PREFIX}validate/{job}/work-000001.json"
        store.put_bytes(key, b'[["pool/a", "a", 1, ""]]', content_type="application/json")
        assert store.get_bytes(key) == b'[["pool/a", "a", 1, ""]]'
        outcome = store.delete_objects([key])
        assert not outcome.failed and not outcome.kept and policy_gcs.bucket(bucket).get_blob(key) is None
        if job != "backstop-pruner":  # the pruner alone deletes, and only it, outside _resume/
            with pytest.raises(gexc.Forbidden):
                store.bucket.blob("gcs/src/backup/manifest.json").delete()
        if job in ("backstop-pruner", "backstop-restorer"):  # no write outside _resume/
            # (a name that only looks like the prefix is outside it)
            for outside in ("gcs/src/backup/other.json", "_resume-not/x.json"):
                with pytest.raises(gexc.Forbidden):
                    store.bucket.blob(outside).upload_from_string(b"{}")
    assert policy_gcs.bucket(bucket).get_blob("gcs/src/backup/manifest.json") is not None
    writer = BackupStore(storage_client_as(PROJECT, iam.email("backstop-backup-writer", PROJECT)), bucket)
    with pytest.raises(gexc.Forbidden):  # the backup writer holds no condition: no delete anywhere
        writer.bucket.blob(f"{WORK_PREFIX}x/work.json").delete()


def test_what_the_writer_cannot_delete_stops_no_prune_and_prune_removes_it(
    policy_gcs: Any, monkeypatch: Any
) -> None:
    """The backup writer may not delete, so the in-progress marker and the resume checkpoints of each
    of its runs stay behind after the commit. A Composer marker left so must not count as a running
    backup (it would stop the Cloud Storage pool sweep for good), and prune, which may delete,
    removes the markers and checkpoints of runs that ended, never those of a run in progress."""
    from datetime import timedelta

    from backstop.core.manifest import ManifestEntry, utcnow
    from backstop.core.retention import RetentionPolicy
    from blocks.clients import storage_client_as
    from tasks.catalog import backups as catalog
    from tasks.components.gcs import resume
    from tasks.operations.prune import prune
    from tasks.storage.bucket import BackupStore
    from tasks.storage.google_api import crc32c_b64

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", policy_gcs._connection.API_BASE_URL)
    bucket = policy_gcs.create_bucket(unique("backups")).name
    for name, pairs in iam.bindings(iam.load_spec(), PROJECT, {"backup": [bucket]}).items():
        grant(policy_gcs, name, pairs)
    writer, pruner = (
        BackupStore(storage_client_as(PROJECT, iam.email(job, PROJECT)), bucket)
        for job in ("backstop-backup-writer", "backstop-pruner")
    )
    source = unique("src")

    def backup(component: str, name: str, key: str) -> Any:
        manifest = catalog.begin_backup(writer, component, name)
        data = key.encode()
        if writer.stat(key) is None:
            writer.put_bytes(key, data)
        entry = ManifestEntry(name="obj", stored_key=key, size=len(data), crc32c=crc32c_b64(data))
        resume.save(writer, manifest, [entry])  # the checkpoint a batch of a Cloud Storage backup writes
        return catalog.commit_backup(writer, manifest, [entry])

    old = backup("gcs", source, f"pool/gcs/{source}/1/obj")
    new = backup("gcs", source, f"pool/gcs/{source}/2/obj")
    composer = backup("composer", "env-a", f"pool/gcs/{source}/2/obj")  # reuses the newer copy
    left = {b.name for b in policy_gcs.list_blobs(bucket, prefix="_")}
    assert len(left) == 3 + 3  # three markers, three checkpoints: none of the writer's deletes went through

    keep_one = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    later = utcnow() + timedelta(minutes=1)
    report = prune(pruner, "gcs", source, keep_one, later, grace_hours=0)
    assert report.removed == [old.backup_id] and report.not_deleted == [] and report.notes == []
    assert pruner.stat(f"pool/gcs/{source}/1/obj") is None  # the pool was swept
    assert pruner.stat(f"pool/gcs/{source}/2/obj") is not None
    assert {b.name for b in policy_gcs.list_blobs(bucket, prefix="_")} == {
        k for k in left if composer.backup_id in k
    }  # the gcs runs' markers and checkpoints are gone; Composer's are its own prune's

    running = catalog.begin_backup(writer, "gcs", source)  # a run in progress keeps its files
    resume.save(writer, running, [new.entries[0]])
    prune(pruner, "gcs", source, keep_one, later, grace_hours=0)
    prune(pruner, "composer", "env-a", keep_one, later, grace_hours=0)
    remaining = [b.name for b in policy_gcs.list_blobs(bucket, prefix="_")]
    assert len(remaining) == 2 and all(running.backup_id in k for k in remaining), remaining
