"""`make demo`: the whole job on the local platform, start to finish, in a few minutes.

Starts the platform, saves the settings block, seeds sample data, backs everything up, validates,
changes the sources, backs up again (incremental), restores into new targets, verifies byte for
byte, prints a summary table and the Prefect UI address, and stops what it started.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backstop.core.report import human_bytes, text_table
from localdev.demo_data import (
    DEMO_DAGS,
    DEMO_DATASET,
    bucket_digest,
    make_environment,
    seed_bucket,
    seed_dataset,
)
from tasks.catalog import index

DEMO_BUCKET = "demo-raw-data"
BACKUP_BUCKET = "backstop-demo-backups"
SECONDARY_BUCKET = "backstop-demo-backups-dr"

Step = Callable[[Any, list[dict[str, Any]]], None]


def gcs_round_trip(settings: Any, results: list[dict[str, Any]]) -> None:
    from blocks.clients import storage_client
    from flows.gcs import backup_gcs, restore_gcs

    client = storage_client(settings.project)
    print(f"seeding gs://{DEMO_BUCKET} ...")
    seed_bucket(client, DEMO_BUCKET)
    first_state = bucket_digest(client, DEMO_BUCKET)
    started = time.monotonic()
    first = backup_gcs([DEMO_BUCKET], settings_block="default")[0]
    results.append(_row("gcs", "full backup", first, time.monotonic() - started))

    bucket = client.bucket(DEMO_BUCKET)
    names = sorted(first_state)
    for name in names[:20]:
        bucket.blob(name).delete()
    for name in names[20:40]:
        bucket.blob(name).upload_from_string(b'{"changed": true}\n', content_type="application/json")
    for i in range(10):
        bucket.blob(f"events/new/extra {i}.json").upload_from_string(b'{"new": 1}\n')
    started = time.monotonic()
    second = backup_gcs([DEMO_BUCKET], settings_block="default")[0]
    results.append(_row("gcs", "incremental backup", second, time.monotonic() - started))

    for label, backup, expected in [
        ("restore latest", second, bucket_digest(client, DEMO_BUCKET)),
        ("restore first (point in time)", first, first_state),
    ]:
        target = f"{DEMO_BUCKET}-restored-{backup['backup_id'][-6:]}"
        started = time.monotonic()
        report = restore_gcs(DEMO_BUCKET, target=target, backup_id=backup["backup_id"])
        seconds = time.monotonic() - started
        identical = bucket_digest(client, target) == expected
        results.append(
            {
                "component": "gcs",
                "step": label,
                "source": DEMO_BUCKET,
                "backup_id": backup["backup_id"],
                "objects": report["created"],
                "size": "",
                "copied": "",
                "seconds": round(seconds, 1),
                "result": "byte-identical" if identical else "DIFFERS",
            }
        )
        if not identical:
            raise SystemExit(
                f"demo: restore of {backup['backup_id']} into gs://{target} differs from the source"
            )


def configs_round_trip(settings: Any, results: list[dict[str, Any]]) -> None:
    from flows.configs import backup_configs, restore_configs

    source_dir = Path(settings.configs.sources[0].path)
    started = time.monotonic()
    row = backup_configs(settings_block="default")[0]
    results.append(
        {
            "component": "configs",
            "step": "backup",
            "source": row["source"],
            "backup_id": row["backup_id"],
            "objects": row["file_count"],
            "size": row["size"],
            "copied": f"{row['skipped_secrets']} secrets left out",
            "seconds": round(time.monotonic() - started, 1),
            "result": row["status"],
        }
    )
    target = source_dir.parent / "configs-restored"
    started = time.monotonic()
    report = restore_configs(row["source"], backup_id=row["backup_id"], target=str(target))
    expected = {p.relative_to(source_dir): p.read_bytes() for p in source_dir.rglob("*") if p.is_file()}
    restored = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    identical = all(restored[k] == expected[k] for k in restored) and len(restored) == row["files"]
    results.append(
        {
            "component": "configs",
            "step": "restore to new directory",
            "source": row["source"],
            "backup_id": row["backup_id"],
            "objects": report["created"],
            "size": "",
            "copied": "",
            "seconds": round(time.monotonic() - started, 1),
            "result": "byte-identical" if identical else "DIFFERS",
        }
    )
    if not identical:
        raise SystemExit(f"demo: restored configuration files in {target} differ from {source_dir}")


def gke_round_trip(settings: Any, results: list[dict[str, Any]]) -> None:
    from flows.gke import backup_gke, restore_gke

    started = time.monotonic()
    row = backup_gke(["prod"], settings_block="default")[0]
    results.append(
        {
            "component": "gke",
            "step": "Backup for GKE backup",
            "source": row["source"],
            "backup_id": row["backup_id"],
            "objects": row["resource_count"],
            "size": row["size"],
            "copied": f"{row['volume_count']} volumes",
            "seconds": round(time.monotonic() - started, 1),
            "result": row["status"],
        }
    )
    started = time.monotonic()
    report = restore_gke(
        "prod", backup_id=row["backup_id"], only=["shop"], options={"rename": {"shop": "shop-restored"}}
    )
    results.append(
        {
            "component": "gke",
            "step": "restore namespace shop as shop-restored",
            "source": row["source"],
            "backup_id": row["backup_id"],
            "objects": report["created"],
            "size": "",
            "copied": "",
            "seconds": round(time.monotonic() - started, 1),
            "result": "restored" if report["created"] else "NOTHING",
        }
    )


def bigquery_round_trip(settings: Any, results: list[dict[str, Any]]) -> None:
    from blocks.clients import bigquery_client
    from flows.bigquery import backup_bigquery, restore_bigquery, validate_bigquery
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("bigquery")
    from tasks.storage.bucket import open_store

    print(f"seeding BigQuery dataset {DEMO_DATASET} ...")
    seed_dataset(bigquery_client(settings.project), settings.project, DEMO_DATASET)
    started = time.monotonic()
    (row,) = backup_bigquery([DEMO_DATASET], settings_block="default")
    backup_id = row["backup_id"]
    validate_bigquery(backup_id=backup_id, settings_block="default")
    store = open_store(settings)
    tables = index.find(store, backup_id).source_state["tables"]
    total = sum(rows or 0 for rows in tables.values())
    results.append(
        {
            "component": "bigquery",
            "step": "backup + validate",
            "source": DEMO_DATASET,
            "backup_id": backup_id,
            "objects": f"{total:,} rows",
            "size": "",
            "copied": f"{len(tables)} tables, {row.get('views', 0)} views",
            "seconds": round(time.monotonic() - started, 1),
            "result": "validated",
        }
    )
    target = f"{DEMO_DATASET}_restored"
    started = time.monotonic()
    restore_bigquery(DEMO_DATASET, target=target, backup_id=backup_id, overwrite=True)
    problems = COMPONENT.check_restored(settings, store, index.find(store, backup_id), target)
    results.append(
        {
            "component": "bigquery",
            "step": f"restore into {target}",
            "source": DEMO_DATASET,
            "backup_id": backup_id,
            "objects": f"{total:,} rows",
            "size": "",
            "copied": "",
            "seconds": round(time.monotonic() - started, 1),
            "result": "row-for-row identical" if not problems else f"DIFFERS: {problems[0]}",
        }
    )
    if problems:
        raise SystemExit(f"demo: restored dataset {target} differs: {problems}")


def composer_round_trip(settings: Any, results: list[dict[str, Any]]) -> None:
    from blocks.clients import storage_client
    from flows.composer import backup_composer, restore_composer
    from tasks.components.composer.airflow import AirflowApi

    client = storage_client(settings.project)
    api = AirflowApi(os.environ["AIRFLOW_API_URL"], "admin", "admin")
    api.create("variables", {"key": "stage", "value": "prod"})
    api.create("variables", {"key": "warehouse_password", "value": "demo-not-a-real-secret"})
    api.create("pools", {"name": "etl", "slots": 4, "description": "ETL jobs"})
    api.create(
        "connections", {"connection_id": "warehouse", "conn_type": "postgres", "host": "db", "login": "etl"}
    )
    started = time.monotonic()
    row = backup_composer(["analytics"], settings_block="default")[0]
    results.append(
        {
            "component": "composer",
            "step": "DAGs + metadata + config",
            "source": row["source"],
            "backup_id": row["backup_id"],
            "objects": row["objects"],
            "size": row["size"],
            "copied": f"{row.get('variables', 0)} variables",
            "seconds": round(time.monotonic() - started, 1),
            "result": row["status"],
        }
    )
    make_environment(client, "analytics-dr", "demo-composer-analytics-dr", {})
    started = time.monotonic()
    restore_composer("analytics", target="analytics-dr", backup_id=row["backup_id"], only=["dags"])
    restored = {b.name: b.download_as_bytes() for b in client.list_blobs("demo-composer-analytics-dr")}
    identical = restored == DEMO_DAGS
    results.append(
        {
            "component": "composer",
            "step": "restore DAGs into analytics-dr",
            "source": row["source"],
            "backup_id": row["backup_id"],
            "objects": len(restored),
            "size": "",
            "copied": "",
            "seconds": round(time.monotonic() - started, 1),
            "result": "byte-identical" if identical else "DIFFERS",
        }
    )
    if not identical:
        raise SystemExit("demo: restored Composer DAGs differ from the environment bucket")


def secondary_copy(settings: Any, results: list[dict[str, Any]]) -> None:
    from flows.secondary import copy_backups_to_secondary

    started = time.monotonic()
    rows = copy_backups_to_secondary(settings_block="default")
    results.append(
        {
            "component": "all",
            "step": f"copy to gs://{SECONDARY_BUCKET}",
            "source": f"{len(rows)} backups",
            "backup_id": "",
            "objects": sum(r["objects"] for r in rows),
            "size": "",
            "copied": "",
            "seconds": round(time.monotonic() - started, 1),
            "result": "verified" if all(r["ok"] for r in rows) else "FAILED",
        }
    )


def drill_and_health(settings: Any, results: list[dict[str, Any]]) -> None:
    from flows.drill import restore_drill
    from flows.health import health_report

    for row in restore_drill(settings_block="default"):
        results.append(
            {
                "component": row["component"],
                "step": f"restore drill of {row['component']} {row['source']} (scratch target)",
                "source": row["source"],
                "backup_id": row["backup_id"],
                "objects": "",
                "size": "",
                "copied": f"RTO {row['rto_minutes']} min",
                "seconds": row["seconds"],
                "result": "passed" if row["passed"] else f"FAILED {row['problems']}",
            }
        )
    print("\n" + text_table(health_report(settings_block="default"), HEALTH_SHOWN))


def platform_recovery(settings: Any, results: list[dict[str, Any]]) -> None:
    """`backstop drill --platform`: every source recovered as of now into scratch targets, in
    dependency order, as one operation; its plan, checks and time against the platform RTO."""
    from backstop.core.recovery import plan_rows, summary_lines
    from flows.recover import drill_platform
    from tasks.operations.recover import load_operation
    from tasks.storage.bucket import open_store

    result = drill_platform(who="demo", fail_on_error=False, settings_block="default")
    operation = load_operation(open_store(settings), result["operation_id"])
    print("\n" + text_table(plan_rows(operation)))
    print("\n".join(summary_lines(operation)))
    results.append(
        {
            "component": "all",
            "step": "platform recovery (scratch targets)",
            "source": f"{result['steps']} sources",
            "backup_id": result["operation_id"],
            "objects": "",
            "size": "",
            "copied": f"RTO {result['rto_minutes']:g} min",
            "seconds": result["seconds"],
            "result": "passed" if result["passed"] else f"FAILED {result['problems'][:2]}",
        }
    )
    if not result["passed"]:
        raise SystemExit(f"demo: the platform recovery failed: {result['problems']}")


HEALTH_SHOWN = [
    "status",
    "component",
    "source",
    "age_hours",
    "rpo_hours",
    "drill_seconds",
    "rto_minutes",
    "problems",
]


def _row(component: str, step: str, row: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {
        "component": component,
        "step": step,
        "source": row.get("source"),
        "backup_id": row.get("backup_id"),
        "objects": row.get("objects"),
        "size": row.get("size"),
        "copied": row.get("copied"),
        "seconds": round(seconds, 1),
        "result": row.get("status"),
    }


STEPS: list[tuple[str, Step]] = [
    ("Cloud Storage", gcs_round_trip),
    ("BigQuery", bigquery_round_trip),
    ("Configuration files", configs_round_trip),
    ("Cloud Composer", composer_round_trip),
    ("GKE (Backup for GKE)", gke_round_trip),
    ("Secondary region copy", secondary_copy),
    ("Restore drills and health report", drill_and_health),
    ("Platform recovery into scratch targets", platform_recovery),
]
SERVICES = ("gcs", "bigquery", "prefect", "gke", "airflow", "composer")


def save_demo_settings(work_dir: Path) -> Any:
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    from backstop.core.secretbox import new_key
    from blocks.clients import storage_client
    from blocks.components import ComposerSettings, ConfigSource, ConfigsSettings
    from blocks.settings import BackstopSettings
    from deployments.settings_blocks import DEFAULT_SECONDARY_LOCATION
    from localdev.platform import PROJECT
    from localdev.seed import seed_sample_configs
    from tasks.components.gke.plans import GkeClusterSettings, GkeSettings

    client = storage_client(PROJECT)
    for name, location in ((BACKUP_BUCKET, "US"), (SECONDARY_BUCKET, DEFAULT_SECONDARY_LOCATION)):
        if client.lookup_bucket(name) is None:
            client.create_bucket(name, location=location)
    configs_dir = seed_sample_configs(work_dir / "configs")
    Secret(value=SecretStr("admin:admin")).save(
        "demo-airflow-auth", overwrite=True
    )  # the local Airflow's login
    Secret(value=SecretStr(new_key())).save("demo-composer-key", overwrite=True)
    environment = make_environment(client, "analytics", "demo-composer-analytics", DEMO_DAGS)
    settings = BackstopSettings(
        project=PROJECT,
        backup_bucket=BACKUP_BUCKET,
        secondary_bucket=SECONDARY_BUCKET,
        secondary_location=DEFAULT_SECONDARY_LOCATION,
        gcs_sources=[DEMO_BUCKET],
        bigquery_datasets=[DEMO_DATASET],
        composer=ComposerSettings(
            environments=[environment],
            airflow_auth_block="demo-airflow-auth",
            encryption_key_block="demo-composer-key",
        ),
        configs=ConfigsSettings(sources=[ConfigSource(name="platform-configs", path=str(configs_dir))]),
        gke=GkeSettings(
            clusters=[GkeClusterSettings(cluster="prod", drill_namespaces=["shop"])], poll_seconds=0.5
        ),
    )
    settings.save("default", overwrite=True)
    return settings


def demo_home(state_dir: Path) -> Path:
    """The demo's own platform home: its own processes, ports, Prefect server and settings."""
    return state_dir / "demo"


def run_demo(state_dir: Path, keep_running: bool = False) -> int:
    """Run the demo on a platform of its own (own home, free ports, own Prefect server), so the
    user's platform, settings block and processes are never touched, whether or not they run."""

    import localdev.servers.airflow_server  # noqa: F401  (each registers its local server)
    import localdev.servers.composer_server  # noqa: F401
    import localdev.servers.gke_server  # noqa: F401
    from localdev.platform import LocalPlatform

    began = time.monotonic()
    work_dir = demo_home(state_dir)
    platform = LocalPlatform.with_free_ports(work_dir, services=SERVICES, persistent=False)
    if platform.running():  # an earlier `--keep-running` demo: the demo starts from empty emulators
        print("stopping the platform an earlier demo left running")
        platform.down(echo=print)
    env = platform.up(echo=print)
    os.environ.update(env)  # this process's clients use the demo's platform, whatever the shell says
    os.environ["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "false"
    ui = platform.running()["prefect"]["endpoints"]["PREFECT_UI_URL"]
    results: list[dict[str, Any]] = []
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # Prefect read its settings when the CLI imported it: point it at the demo's own server
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
        _run_steps(work_dir, results, ui, keep_running, platform)
    print(f"demo finished in {time.monotonic() - began:,.0f} s")
    return 0


def _run_steps(
    work_dir: Path, results: list[dict[str, Any]], ui: str, keep_running: bool, platform: Any
) -> None:
    import shutil

    try:
        for leftover in ("configs", "configs-restored"):
            shutil.rmtree(work_dir / leftover, ignore_errors=True)
        settings = save_demo_settings(work_dir)
        for title, step in STEPS:
            print(f"\n== {title} ==")
            before = len(results)
            step(settings, results)
            for row in results[before:]:
                print(f"  {row['step']}: {row['result']} ({row['seconds']} s)")
    finally:
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()  # send the last log lines before the Prefect server stops
        print("\n" + text_table(results))
        if keep_running:
            print(f"\nPrefect UI (flow runs, artifacts): {ui}")
            print(f"the demo's platform keeps running; stop it with: BACKSTOP_HOME={work_dir} backstop down")
        else:
            print(
                f"\nPrefect UI (flow runs, artifacts): {ui} (stopped with the demo; --keep-running leaves it up)"
            )
            platform.down(echo=print)


__all__ = ["run_demo", "seed_bucket", "bucket_digest", "human_bytes"]
