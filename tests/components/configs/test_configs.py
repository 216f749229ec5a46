"""Configuration files backup / validate / restore on fake-gcs-server, with real local directories."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from backstop.core.errors import Conflict, NotFound, ValidationFailed
from localdev.seed import seed_sample_configs
from tasks.catalog import index
from tasks.components.configs.component import ConfigSource
from tasks.engine.calls import ComponentCalls
from tests.conftest import unique

configs = ComponentCalls("configs")

pytestmark = pytest.mark.integration


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every regular file under `root`: relative path -> (bytes, permission bits)."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mode & 0o777)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def sample(tmp_path: Path) -> Path:
    root = seed_sample_configs(tmp_path / "platform")
    os.chmod(root / "dags/orders_dag.py", 0o755)
    os.chmod(root / "env/prod/settings.toml", 0o600)
    return root


SECRETS = {".env", "terraform/terraform.tfstate", "keys/deploy-sa.json"}


def test_round_trip_is_byte_identical_and_secrets_are_left_out(
    tmp_path: Path, settings: Any, store: Any
) -> None:
    root = sample(tmp_path)
    source = ConfigSource(name="platform", path=str(root))
    manifest = configs.backup(settings, store, "platform", config_source=source)

    assert {s["path"] for s in manifest.source_state["skipped_secrets"]} == SECRETS
    expected = {path: item for path, item in tree(root).items() if path not in SECRETS}
    assert manifest.source_state["file_count"] == len(expected) >= 20
    assert [e.name for e in manifest.entries] == ["configs.tar.gz"]
    for secret in (b"FAKE-demo-password", b"FAKE-not-a-real-password", b"FAKE-NOT-A-KEY"):
        assert secret not in store.get_bytes(manifest.path)  # paths only, never content
    validated = configs.validate(settings, store, manifest, 5)
    assert (
        validated.status == "validated" and validated.validation.checked == 1
    )  # the archive, every file in it

    target = tmp_path / "restored"
    report = configs.restore(settings, store, validated, target=str(target))
    assert report.created == len(expected) and not report.conflicts
    assert tree(target) == expected  # bytes and modes
    assert (target / "dags/orders_dag.py").stat().st_mtime == (root / "dags/orders_dag.py").stat().st_mtime
    assert configs.check_restored(settings, store, validated, str(target)) == []

    (target / "sql/revenue.sql").write_text("changed")
    assert configs.check_restored(settings, store, validated, str(target)) == [
        f"{target}: sql/revenue.sql content differs from the backup"
    ]


def test_explicitly_included_secret_is_kept(tmp_path: Path, settings: Any, store: Any) -> None:
    root = sample(tmp_path)
    source = ConfigSource(name="infra", path=str(root / "terraform"), include_secrets=["terraform.tfstate"])
    manifest = configs.backup(settings, store, "infra", config_source=source)
    assert manifest.source_state["included_secrets"] == ["terraform.tfstate"]
    assert "terraform.tfstate" in {f["path"] for f in manifest.source_state["files"]}


def test_syntax_error_is_a_named_warning_unless_strict(tmp_path: Path, settings: Any, store: Any) -> None:
    root = tmp_path / "cfg"
    (root / "pipelines").mkdir(parents=True)
    (root / "pipelines/good.yaml").write_text("a: 1\n")
    (root / "pipelines/broken.yaml").write_text("name: x\nsteps:\n  - a: 1\n   b: 2\n")
    source = ConfigSource(name="broken", path=str(root))
    manifest = configs.backup(settings, store, "broken", config_source=source)
    (warning,) = manifest.source_state["syntax_warnings"]
    assert warning.startswith("pipelines/broken.yaml: line 4: YAML syntax error")

    assert configs.validate(settings, store, manifest, 5).status == "validated"  # a faithful backup

    strict = settings.model_copy()
    object.__setattr__(strict, "configs", {"strict_syntax": True})
    with pytest.raises(ValidationFailed, match=r"pipelines/broken.yaml: line 4"):
        configs.validate(strict, store, manifest, 5)
    assert store.read_manifest(manifest.path).status == "invalid"


def test_corrupted_archive_fails_validation(tmp_path: Path, gcs: Any, settings: Any, store: Any) -> None:
    root = sample(tmp_path)
    manifest = configs.backup(
        settings, store, "platform", config_source=ConfigSource(name="platform", path=str(root))
    )
    key = manifest.entries[0].stored_key
    data = bytearray(store.get_bytes(key))
    data[len(data) // 2] ^= 0x55
    store.put_bytes(key, bytes(data))  # same size, other bytes
    with pytest.raises(ValidationFailed, match="checksum differs: 'configs.tar.gz'"):
        configs.validate(settings, store, manifest, 5)
    assert store.read_manifest(manifest.path).status == "invalid"


def test_restore_refuses_to_overwrite_and_dry_run_shows_diff(
    tmp_path: Path, settings: Any, store: Any
) -> None:
    root = sample(tmp_path)
    manifest = configs.backup(
        settings, store, "platform", config_source=ConfigSource(name="platform", path=str(root))
    )
    (root / "pipelines/ingest_orders.yaml").write_text("pipeline: ingest_orders\nschedule: hourly\n")
    (root / "sql/revenue.sql").unlink()
    before = tree(root)

    plan = configs.restore(settings, store, manifest, dry_run=True)  # to the original place
    actions = {a["name"]: a for a in plan.actions}
    assert actions["sql/revenue.sql"]["change"] == "create"
    assert actions["pipelines/ingest_orders.yaml"]["change"] == "replace"
    assert "+  bucket: demo-landing" in actions["pipelines/ingest_orders.yaml"]["diff"]
    assert "-schedule: hourly" in actions["pipelines/ingest_orders.yaml"]["diff"]
    assert plan.unchanged == len(actions) - 2 and plan.conflicts == ["pipelines/ingest_orders.yaml"]
    assert tree(root) == before  # a dry run writes nothing

    with pytest.raises(
        Conflict, match=r"replace or delete 1 existing item\(s\) \(pipelines/ingest_orders.yaml\)"
    ):
        configs.restore(settings, store, manifest)
    assert tree(root) == before  # nothing written, not even the missing file

    report = configs.restore(
        settings, store, manifest, only=["pipelines/*.yaml", "revenue.sql"], overwrite=True, yes=True
    )
    assert (report.created, report.overwritten, report.unchanged) == (1, 1, 2)
    assert configs.check_restored(settings, store, manifest, str(root)) == []

    with pytest.raises(NotFound, match="no file in the backup matches 'nope.yaml'"):
        configs.restore(settings, store, manifest, only=["nope.yaml"])


def test_restore_never_follows_a_link_out_of_the_target(tmp_path: Path, settings: Any, store: Any) -> None:
    root = sample(tmp_path)
    manifest = configs.backup(
        settings, store, "platform", config_source=ConfigSource(name="platform", path=str(root))
    )
    target, outside = tmp_path / "target", tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    (target / "sql").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValidationFailed, match="'sql/orders_clean.sql': a link under"):
        configs.restore(settings, store, manifest, target=str(target))
    assert list(outside.iterdir()) == []


def test_gcs_prefix_source_round_trip(gcs: Any, tmp_path: Path, settings: Any, store: Any) -> None:
    bucket = gcs.create_bucket(unique("composer-env"))
    files = {"dags/a.py": b"x = 1\n", "dags/sub/b.yaml": b"a: 1\n", "dags/.env": b"SECRET=FAKE\n"}
    for name, data in files.items():
        bucket.blob(name).upload_from_string(data)
    bucket.blob("dags/").upload_from_string(b"")  # folder placeholder: not a file
    bucket.blob("dags/x/../../escape.py").upload_from_string(b"x")  # a legal object name, not a safe path
    bucket.blob("data/other.txt").upload_from_string(b"not under the prefix")
    source = ConfigSource(name="composer-dags", path=f"gs://{bucket.name}/dags")
    manifest = configs.backup(settings, store, "composer-dags", config_source=source)
    assert [f["path"] for f in manifest.source_state["files"]] == ["a.py", "sub/b.yaml"]
    assert manifest.source_state["skipped_secrets"] == [{"path": ".env", "reason": "environment file"}]
    assert manifest.source_state["skipped_other"] == ["x/../../escape.py"]
    configs.validate(settings, store, manifest, 5)

    target = f"gs://{bucket.name}/restored"
    report = configs.restore(settings, store, manifest, target=target)
    assert report.created == 2
    assert bucket.blob("restored/sub/b.yaml").download_as_bytes() == b"a: 1\n"
    assert configs.check_restored(settings, store, manifest, target) == []

    bucket.blob("dags/a.py").upload_from_string(b"x = 2\n")
    with pytest.raises(
        Conflict, match=r"gs://.*/dags/ would replace or delete 1 existing item\(s\) \(a.py\)"
    ):
        configs.restore(settings, store, manifest)
    local = tmp_path / "local"
    assert configs.restore(settings, store, manifest, target=str(local)).created == 2
    assert (local / "a.py").read_bytes() == b"x = 1\n"


def test_unknown_source_and_empty_selection(tmp_path: Path, settings: Any, store: Any) -> None:
    with pytest.raises(NotFound, match="'nope' is not configured"):
        configs.backup(settings, store, "nope")
    (tmp_path / "e").mkdir()
    (tmp_path / "e/.env").write_text("A=1")
    with pytest.raises(NotFound, match="no files in"):
        configs.backup(settings, store, "e", config_source=ConfigSource(name="e", path=str(tmp_path / "e")))
    with pytest.raises(NotFound, match="does not exist"):
        configs.backup(
            settings, store, "x", config_source=ConfigSource(name="x", path=str(tmp_path / "missing"))
        )
    assert index.list_manifests(store, "configs") == []


@pytest.mark.flow
def test_flows_and_cli_back_up_report_secrets_and_restore(
    tmp_path: Path, saved_settings: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from backstop_cli.main import main
    from flows.configs import restore_configs, validate_configs

    monkeypatch.setenv("BACKSTOP_HOME", str(tmp_path / "state"))
    root = sample(tmp_path)
    name = unique("cfg")
    args = [
        "--settings",
        saved_settings,
        "backup",
        "configs",
        "--path",
        str(root),
        "--source",
        name,
        "--json",
    ]
    assert main(args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["source"], row["status"], row["skipped_secrets"]) == (name, "validated", 3)
    with get_client(sync_client=True) as client:
        keys = ArtifactFilter(key=ArtifactFilterKey(any_=["configs-backup-notes"]))
        report = next(a.data for a in client.read_artifacts(artifact_filter=keys) if name in str(a.data))
    assert "terraform/terraform.tfstate" in report and ".env" in report and "FAKE" not in report

    (checked,) = validate_configs(source=name, settings_block=saved_settings)
    assert (checked["backup_id"], checked["status"], checked["files"]) == (
        row["backup_id"],
        "validated",
        row["files"],
    )

    (root / "env/prod/config.json").write_text('{"environment": "prod", "workers": 1}\n')
    plan = restore_configs(name, dry_run=True, only=["env/*/config.json"], settings_block=saved_settings)
    assert plan["conflicted"] == ["env/prod/config.json"] and plan["unchanged"] == 2
    assert '+ "workers": 8,' in next(a["diff"] for a in plan["actions"] if a["change"] == "replace")

    target = tmp_path / "copy"
    args = ["--settings", saved_settings, "restore", "configs", "--source", name, "--target", str(target)]
    assert main([*args, "--file", "dags/**"]) == 0
    assert sorted(p.name for p in (target / "dags").rglob("*.py")) == [
        "__init__.py",
        "helpers.py",
        "orders_dag.py",
        "revenue_dag.py",
    ]
    assert main([*args, "--file", "pipelines/ingest_orders.yaml", "--overwrite"]) == 0
    assert (target / "pipelines/ingest_orders.yaml").read_bytes() == (
        root / "pipelines/ingest_orders.yaml"
    ).read_bytes()
