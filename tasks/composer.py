"""Cloud Composer component: DAG bucket, Airflow metadata and environment config.

Source = the environment's short name. One backup holds the parts asked for:
- "dags":     objects under dags/, plugins/ and data/ of the environment bucket (read from the
              environment's config.dag_gcs_prefix), copied server-side into the generation-keyed
              pool with tasks/gcs.py (entries named by object name, e.g. "dags/etl.py");
- "metadata": variables, connections and pools through the Airflow REST API, one JSON file each
              ("airflow/<kind>.json"), secrets encrypted or replaced by references (secretbox);
- "config":   the environment's software config as JSON ("composer/environment.json"), and with
              the `snapshot` option a Composer snapshot ("composer/snapshot.json" holds its path).
Restore writes DAG files (never over different content unless overwrite), creates or updates
metadata, shows the config as a diff (no write) and loads the snapshot only when asked.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from backstop.errors import ConfigError, InvalidInput, NotFound
from backstop.manifest import BackupManifest, ManifestEntry, select
from backstop.names import check_bucket
from blocks.clients import composer_client, storage_client
from blocks.components import ComposerSettings
from blocks.settings import BackstopSettings
from tasks import catalog, gcs
from tasks.airflow_api import KINDS, check_python_files, export_metadata, import_items
from tasks.component import RestoreReport
from tasks.composer_env import (
    airflow_api,
    config_diff,
    config_of,
    environment_bucket,
    environment_name,
    get_environment,
    load_snapshot,
    save_snapshot,
    secret_box,
)
from tasks.gcs_plan import batches, plan_backup
from tasks.store import BackupStore, crc32c_b64

NAME = "composer"
PARTS = ("dags", "metadata", "config")
BUCKET_PREFIXES = ["dags/", "plugins/", "data/"]
ENV_FILE, SNAPSHOT_FILE = "composer/environment.json", "composer/snapshot.json"


def composer_settings(settings: BackstopSettings) -> ComposerSettings:
    raw = getattr(settings, "composer", None)
    return raw if isinstance(raw, ComposerSettings) else ComposerSettings.model_validate(raw or {})


def part_of(entry: ManifestEntry) -> str:
    if entry.name.startswith("airflow/"):
        return "metadata"
    if entry.name == SNAPSHOT_FILE:
        return "snapshot"
    return "config" if entry.name.startswith("composer/") else "dags"


def _put_json(
    store: BackupStore, manifest: BackupManifest, name: str, body: Any, **meta: Any
) -> ManifestEntry:
    data = json.dumps(body, indent=1, sort_keys=True).encode()
    key = manifest.folder + name
    store.put_bytes(key, data, content_type="application/json")
    return ManifestEntry(
        name=name,
        stored_key=key,
        size=len(data),
        crc32c=crc32c_b64(data),
        rows=meta.pop("rows", None),
        metadata=meta,
    )


class ComposerComponent:
    """Cloud Composer environments: source = environment short name."""

    name = NAME

    def backup(
        self,
        settings: BackstopSettings,
        store: BackupStore,
        source: str,
        parts: list[str] | None = None,
        snapshot: bool | None = None,
        **_: Any,
    ) -> BackupManifest:
        cs = composer_settings(settings)
        chosen = check_parts(parts or list(PARTS))
        full = environment_name(cs, source)
        env = get_environment(composer_client(), full)
        box = secret_box(cs, cs.secrets_mode == "encrypt" and bool({"metadata", "config"} & set(chosen)))
        short = full.rsplit("/", 1)[-1]
        manifest = catalog.begin_backup(store, NAME, short, {"parts": chosen, "environment": full})
        state: dict[str, Any] = {
            "environment": full,
            "parts": chosen,
            "counts": {},
            "key_id": box.key_id if box else None,
        }
        try:
            entries: list[ManifestEntry] = []
            if "dags" in chosen:
                entries += self.backup_dags(settings, store, env, state)
            if "metadata" in chosen:
                exported = export_metadata(
                    airflow_api(cs, env),
                    cs.secret_variable_patterns,
                    cs.secrets_mode,
                    box,
                    f"composer/{short}",
                )
                for kind, data in exported.items():
                    entries.append(
                        _put_json(
                            store, manifest, f"airflow/{kind}.json", data, rows=data["count"], part="metadata"
                        )
                    )
                    state["counts"][kind] = data["count"]
            if "config" in chosen:
                entries.append(_put_json(store, manifest, ENV_FILE, config_of(env, cs, box), part="config"))
                if cs.snapshot if snapshot is None else snapshot:
                    entries.append(
                        _put_json(
                            store,
                            manifest,
                            SNAPSHOT_FILE,
                            {"snapshot_path": save_snapshot(cs, env)},
                            part="snapshot",
                        )
                    )
            return catalog.commit_backup(store, manifest, entries, state)
        except BaseException:
            catalog.abandon_backup(store, manifest)
            raise

    def backup_dags(
        self, settings: BackstopSettings, store: BackupStore, env: Any, state: dict[str, Any]
    ) -> list[ManifestEntry]:
        """Copy the environment bucket's dags/, plugins/ and data/ into the pool (only new generations)."""
        client, bucket = storage_client(settings.project), environment_bucket(env)
        objects = gcs.list_source(client, bucket, BUCKET_PREFIXES)
        previous = select(store.list_manifests(NAME, env.name.rsplit("/", 1)[-1], on_damaged=lambda _: None))
        last = previous[0] if previous else None
        plan_ = plan_backup(objects, bucket, last, gcs.pooled_objects(store, bucket))
        entries = list(plan_.reused)
        for batch in batches(plan_.to_copy, gcs.BATCH_SIZE):
            entries += gcs.copy_batch(client, bucket, batch, store)
        state.update(bucket=bucket, objects=len(entries), copied=len(plan_.to_copy), reused=len(plan_.reused))
        state["counts"]["dag_files"] = sum(
            1 for e in entries if e.name.startswith("dags/") and e.name.endswith(".py")
        )
        return entries

    def validate(
        self, settings: BackstopSettings, store: BackupStore, manifest: BackupManifest, sample_percent: float
    ) -> BackupManifest:
        problems, read_back = catalog.verify_stored(store, manifest, sample_percent)
        state = manifest.source_state
        objects = [e for e in manifest.entries if part_of(e) == "dags"]
        if "objects" in state and state["objects"] != len(objects):
            problems.append(
                f"manifest lists {len(objects)} bucket objects, the environment had {state['objects']}"
            )
        missing = {
            e.name for e in objects if any(p.startswith("missing") and repr(e.name) in p for p in problems)
        }
        python = composer_settings(settings).airflow_python or os.environ.get("BACKSTOP_AIRFLOW_PYTHON")
        problems += check_python_files(python, store, [e for e in objects if e.name not in missing])
        for entry in manifest.entries:
            if part_of(entry) == "metadata":
                kind = entry.name.removeprefix("airflow/").removesuffix(".json")
                try:
                    count = len(json.loads(store.get_bytes(entry.stored_key))["items"])
                except (ValueError, KeyError) as exc:
                    problems.append(f"{entry.name}: not a metadata export ({exc})")
                    continue
                expected = state.get("counts", {}).get(kind)
                if count != expected:
                    problems.append(
                        f"{entry.name}: holds {count} {kind}, the environment had {expected} at backup time"
                    )
        return catalog.record_validation(store, manifest, problems, len(manifest.entries), read_back)

    def restore(
        self,
        settings: BackstopSettings,
        store: BackupStore,
        manifest: BackupManifest,
        target: str | None = None,
        only: list[str] | None = None,
        overwrite: bool = False,
        dry_run: bool = False,
        delete_extra: bool = False,
    ) -> RestoreReport:
        started = time.monotonic()
        cs = composer_settings(settings)
        parts = check_parts(only or list(PARTS), allow_snapshot=True)
        if target and target.startswith("gs://"):  # DAGs, plugins and data into a bucket (drills)
            bucket = check_bucket(target.removeprefix("gs://").split("/", 1)[0])
            report = RestoreReport(
                NAME, manifest.source, manifest.backup_id, f"gs://{bucket}", dry_run=dry_run
            )
            if not dry_run:
                gcs.ensure_target_bucket(storage_client(settings.project), bucket, settings.location)
            dags = [e for e in manifest.entries if part_of(e) == "dags"]
            self.restore_dags(settings, store, bucket, dags, overwrite, report)
            report.seconds = time.monotonic() - started
            return report
        name = (
            environment_name(cs, target)
            if target
            else str(manifest.source_state.get("environment") or environment_name(cs, manifest.source))
        )
        env = get_environment(composer_client(), name)
        report = RestoreReport(NAME, manifest.source, manifest.backup_id, name, dry_run=dry_run)
        entries = {
            part: [e for e in manifest.entries if part_of(e) == part]
            for part in ("dags", "metadata", "config", "snapshot")
        }
        taken = set(manifest.source_state.get("parts", [])) | ({"snapshot"} if entries["snapshot"] else set())
        missing = [part for part in parts if only and part not in taken]
        if missing:
            raise NotFound(
                f"backup {manifest.backup_id} of {manifest.source} holds no {', '.join(missing)} part"
            )
        if "dags" in parts and entries["dags"]:
            self.restore_dags(settings, store, environment_bucket(env), entries["dags"], overwrite, report)
        if "metadata" in parts and entries["metadata"]:
            self.restore_metadata(cs, store, env, entries["metadata"], dry_run, delete_extra, report)
        if "config" in parts and entries["config"]:
            saved = json.loads(store.get_bytes(entries["config"][0].stored_key))
            for change in config_diff(
                saved, config_of(env, cs.model_copy(update={"secrets_mode": "reference"}), None)
            ):
                report.actions.append({"kind": "config", "action": "differs", **change})
        if "snapshot" in parts and entries["snapshot"]:
            path = json.loads(store.get_bytes(entries["snapshot"][0].stored_key))["snapshot_path"]
            if not dry_run:
                load_snapshot(env, path)
            report.actions.append({"kind": "snapshot", "name": path, "action": "load"})
        report.seconds = time.monotonic() - started
        return report

    def restore_dags(
        self,
        settings: BackstopSettings,
        store: BackupStore,
        bucket: str,
        entries: list[ManifestEntry],
        overwrite: bool,
        report: RestoreReport,
    ) -> None:
        client = storage_client(settings.project)
        actions = gcs.plan_objects(client, bucket, entries, overwrite)
        report.actions += [{"kind": "dags", "name": e.name, "action": a} for e, a in actions]
        report.conflicts = [e.name for e, a in actions if a == "conflict"]
        report.unchanged += sum(1 for _, a in actions if a == "unchanged")
        report.created += sum(1 for _, a in actions if a == "create")
        report.overwritten += sum(1 for _, a in actions if a == "overwrite")
        if not report.dry_run:
            gcs.write_objects(client, store, bucket, actions, report.backup_id, noun="file")

    def restore_metadata(
        self,
        cs: ComposerSettings,
        store: BackupStore,
        env: Any,
        entries: list[ManifestEntry],
        dry_run: bool,
        delete_extra: bool,
        report: RestoreReport,
    ) -> None:
        exports = {
            e.name.removeprefix("airflow/").removesuffix(".json"): json.loads(store.get_bytes(e.stored_key))
            for e in entries
        }
        encrypted = any("$encrypted" in json.dumps(v["items"]) for v in exports.values())
        if encrypted and not cs.encryption_key_block:
            raise ConfigError(
                "the backup holds encrypted secrets and composer settings name no encryption_key_block"
            )
        box = secret_box(cs, encrypted)
        api = airflow_api(cs, env)
        for kind in KINDS:
            if kind in exports:
                data = exports[kind]
                actions = import_items(
                    api, kind, data["items"], box, data.get("masked", {}), dry_run, delete_extra
                )
                report.actions += actions
                report.created += sum(1 for a in actions if a["action"] == "create")
                report.overwritten += sum(1 for a in actions if a["action"] in ("update", "delete"))
                report.unchanged += sum(1 for a in actions if a["action"] == "unchanged")

    def verify_restored(
        self, settings: BackstopSettings, store: BackupStore, manifest: BackupManifest, target: str
    ) -> list[str]:
        cs = composer_settings(settings)
        objects = [e for e in manifest.entries if part_of(e) == "dags"]
        if target.startswith("gs://"):
            return gcs.COMPONENT.verify_restored(
                settings, store, manifest.model_copy(update={"entries": objects}), target
            )
        env = get_environment(composer_client(), environment_name(cs, target))
        bucket = environment_bucket(env)
        there = gcs.existing_objects(storage_client(settings.project), bucket, {e.name for e in objects})
        problems = [
            f"differs or missing in gs://{bucket}: {e.name}"
            for e in objects
            if there.get(e.name) != (e.size, e.crc32c)
        ]
        if any(part_of(e) == "metadata" for e in manifest.entries):
            api = airflow_api(cs, env)
            for kind in KINDS:
                names = {str(i.get("key") or i.get("connection_id") or i.get("name")) for i in api.list(kind)}
                expected = manifest.source_state.get("counts", {}).get(kind, 0)
                if len(names) < expected:
                    problems.append(f"{kind}: {len(names)} in {env.name}, backup holds {expected}")
        return problems

    def scratch_target(self, manifest: BackupManifest, suffix: str) -> str:
        """A scratch bucket: a drill cannot create a Composer environment, so it restores the
        DAGs, plugins and data files into a bucket and verifies them there (metadata and config
        are checked against the source by validation)."""
        base = manifest.source.lower()[: 63 - len(suffix) - 16].rstrip("-._")
        return f"gs://{check_bucket(f'{base}-composer-drill-{suffix}'.lower())}"

    def remove_target(self, settings: BackstopSettings, target: str) -> None:
        if target.startswith("gs://"):
            gcs.COMPONENT.remove_target(settings, target)


def check_parts(parts: list[str], allow_snapshot: bool = False) -> list[str]:
    known = (*PARTS, "snapshot") if allow_snapshot else PARTS
    unknown = [p for p in parts if p not in known]
    if unknown:
        raise InvalidInput(f"unknown composer part(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    return list(dict.fromkeys(parts))


COMPONENT = ComposerComponent()
