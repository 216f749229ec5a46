"""Cloud Composer component: DAG bucket, Airflow metadata and environment config.

Source = the environment's short name. One backup holds the parts asked for:
- "dags":     objects under dags/, plugins/ and data/ of the environment bucket (read from the
              environment's config.dag_gcs_prefix), copied server-side into the generation-keyed
              pool with tasks/components/gcs/component.py (entries named by object name, e.g. "dags/etl.py");
- "metadata": variables, connections and pools through the Airflow REST API, one JSON file each
              ("airflow/<kind>.json"), secrets encrypted or replaced by references (secretbox);
- "config":   the environment's software config as JSON ("composer/environment.json"), and with
              the `snapshot` option a Composer snapshot ("composer/snapshot.json" holds its path).
Restore writes DAG files (never over different content unless overwrite), creates or updates
metadata, shows the config as a diff (no write) and loads the snapshot only when asked. An exact
restore (`request.exact`) also deletes, with overwrite, the DAG-bucket objects (dags/, plugins/,
data/) and the Airflow variables, connections and pools the backup does not hold, for the parts
it restores.
"""

from __future__ import annotations

import json
import os
from typing import Any

from backstop.core.errors import ConfigError, NotFound
from backstop.core.manifest import BackupManifest, ManifestEntry
from backstop.core.names import check_bucket, check_source_name
from blocks.clients import composer_client, storage_client
from blocks.components import ComposerSettings
from blocks.settings import BackstopSettings
from tasks.catalog import points
from tasks.components.composer.airflow import KINDS, check_python_files, export_metadata, import_items
from tasks.components.composer.environment import (
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
from tasks.components.composer.options import NOUN, PART, ComposerOptions
from tasks.components.composer.parts import (
    PARTS,
    SNAPSHOT_FILE,
    check_parts,
    composer_settings,
    is_file_pattern,
    part_of,
    selection,
)
from tasks.components.composer.scratch import plan_into_bucket
from tasks.components.gcs import component as gcs
from tasks.components.gcs import copy as gcs_copy
from tasks.components.gcs import restore as gcs_restore
from tasks.components.gcs.plan import PlanCounts, plan_backup
from tasks.engine.protocol import BackupPlan as LifecyclePlan
from tasks.engine.protocol import Context, LifecycleMethods, RestorePlan, RestoreRequest
from tasks.storage.bucket import BackupStore
from tasks.storage.google_api import converted_errors, crc32c_b64
from tasks.storage.spool import KeySpool

NAME = "composer"
BUCKET_PREFIXES = ["dags/", "plugins/", "data/"]
ENV_FILE = "composer/environment.json"


def _snapshot_path(store: BackupStore, entry: ManifestEntry) -> str:
    """Where the Composer snapshot a backup saved lives (gs://...), from its stored record."""
    return str(json.loads(store.get_bytes(entry.stored_key))["snapshot_path"])


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


class ComposerComponent(LifecycleMethods):
    """Cloud Composer environments: source = environment short name; a unit = one part."""

    name = NAME
    noun, part = NOUN, PART
    parts = PARTS
    part_names = ("snapshot", "dags/FILE", "plugins/FILE", "data/FILE")
    Options = ComposerOptions

    def part_named(self, name: str) -> str:
        """The snapshot is part of config; files of the environment's bucket (dags/etl.py,
        plugins/, data/*.csv) are part of dags."""
        return "config" if name == "snapshot" else "dags" if is_file_pattern(name) else name

    def entry_part(self, entry: ManifestEntry) -> str:
        """dags, config (the snapshot file too) or metadata."""
        part = part_of(entry)
        return "config" if part == "snapshot" else part

    def sources(self, settings: BackstopSettings) -> list[str]:
        return [e.rsplit("/", 1)[-1] for e in composer_settings(settings).environments]

    def check_source(self, settings: BackstopSettings, source: str) -> str:
        """The environment's short name (the catalog's source). A full name not in the settings is
        added to this run's settings, so the rest of the run resolves the short name to it."""
        if source.startswith("projects/"):
            full = environment_name(composer_settings(settings), source)
            cs = composer_settings(settings)
            if full not in cs.environments:
                cs.environments.append(full)
                settings.composer = cs
            return full.rsplit("/", 1)[-1]
        return check_source_name(source)

    def check_target(self, settings: BackstopSettings, target: str) -> str:
        if target.startswith("gs://"):
            return f"gs://{check_bucket(target.removeprefix('gs://').split('/', 1)[0])}"
        return environment_name(composer_settings(settings), target)

    def plan_backup(self, ctx: Context, manifest: BackupManifest) -> LifecyclePlan:
        cs = composer_settings(ctx.settings)
        full = environment_name(cs, manifest.source)
        env = get_environment(composer_client(), full)
        chosen = check_parts(list(ctx.options.parts or PARTS))
        key_id = None
        if cs.secrets_mode == "encrypt" and {"metadata", "config"} & set(chosen):
            box = secret_box(cs, True)
            key_id = box.key_id if box else None
        state: dict[str, Any] = {"environment": full, "parts": chosen, "counts": {}, "key_id": key_id}
        return LifecyclePlan(units=[(part, full) for part in chosen], state=state, private=env)

    def run_unit(
        self, ctx: Context, manifest: BackupManifest, unit: tuple[str, str]
    ) -> tuple[list[ManifestEntry], dict[str, Any]]:
        part, full = unit
        cs = composer_settings(ctx.settings)
        env = get_environment(composer_client(), full)
        if part == "dags":
            return self.backup_dags(ctx.settings, ctx.store, manifest, env)
        box = secret_box(cs, cs.secrets_mode == "encrypt")
        if part == "metadata":
            exported = export_metadata(
                airflow_api(cs, env),
                cs.secret_variable_patterns,
                cs.secrets_mode,
                box,
                f"composer/{manifest.source}",
            )
            entries = [
                _put_json(
                    ctx.store, manifest, f"airflow/{kind}.json", data, rows=data["count"], part="metadata"
                )
                for kind, data in exported.items()
            ]
            return entries, {"counts": {kind: data["count"] for kind, data in exported.items()}}
        entries = [_put_json(ctx.store, manifest, ENV_FILE, config_of(env, cs, box), part="config")]
        if cs.snapshot if ctx.options.snapshot is None else ctx.options.snapshot:
            body = {"snapshot_path": save_snapshot(cs, env)}
            entries.append(_put_json(ctx.store, manifest, SNAPSHOT_FILE, body, part="snapshot"))
        return entries, {}

    def backup_dags(
        self, settings: BackstopSettings, store: BackupStore, manifest: BackupManifest, env: Any
    ) -> tuple[list[ManifestEntry], dict[str, Any]]:
        """Copy the environment bucket's dags/, plugins/ and data/ into the pool (only new generations)."""
        client, bucket = storage_client(settings.project), environment_bucket(env)
        objects = gcs.list_source(client, bucket, BUCKET_PREFIXES)
        last = points.previous_backup(store, NAME, manifest.source, part="dags")
        kept: list[ManifestEntry] = []
        counts = PlanCounts()
        entries: list[ManifestEntry] = []
        for batch in plan_backup(
            objects, bucket, store.iter_entries(last) if last else (), kept.extend, counts
        ):
            entries += gcs_copy.copy_batch(client, bucket, batch, store)
        entries += kept
        dag_files = sum(1 for e in entries if e.name.startswith("dags/") and e.name.endswith(".py"))
        state = {"bucket": bucket, "objects": len(entries), "copied": counts.copied, "reused": counts.reused}
        return entries, state | {"counts": {"dag_files": dag_files}}

    def gone_outside(self, ctx: Context, manifest: BackupManifest) -> list[str]:
        """The Composer snapshot a backup saved, when its files are gone from Cloud Storage (a
        snapshot lives in a bucket: its lifecycle rules or a person may delete it)."""
        saved = [e for e in manifest.entries if part_of(e) == "snapshot"]
        if not saved:
            return []
        path = _snapshot_path(ctx.store, saved[0])
        bucket, _, prefix = path.removeprefix("gs://").partition("/")
        client = storage_client(ctx.settings.project)
        with converted_errors(f"listing Composer snapshot {path}"):
            found = list(client.list_blobs(bucket, prefix=prefix.rstrip("/") + "/", max_results=1))
        return [] if found else [f"Composer snapshot {path} no longer exists"]

    def check(
        self, ctx: Context, manifest: BackupManifest, sample_percent: float, damaged: set[str]
    ) -> list[str]:
        problems: list[str] = []
        state = manifest.source_state
        objects = [e for e in manifest.entries if part_of(e) == "dags"]
        if "objects" in state and state["objects"] != len(objects):
            problems.append(
                f"manifest lists {len(objects)} bucket objects, the environment had {state['objects']}"
            )
        python = composer_settings(ctx.settings).airflow_python or os.environ.get("BACKSTOP_AIRFLOW_PYTHON")
        problems += check_python_files(python, ctx.store, [e for e in objects if e.name not in damaged])
        for entry in manifest.entries:
            if part_of(entry) != "metadata" or entry.name in damaged:
                continue
            kind = entry.name.removeprefix("airflow/").removesuffix(".json")
            try:
                count = len(json.loads(ctx.store.get_bytes(entry.stored_key))["items"])
            except (ValueError, KeyError) as exc:
                problems.append(f"{entry.name}: not a metadata export ({exc})")
                continue
            expected = state.get("counts", {}).get(kind)
            if count != expected:
                problems.append(
                    f"{entry.name}: holds {count} {kind}, the environment had {expected} at backup time"
                )
        return problems

    def plan_restore(self, ctx: Context, manifest: BackupManifest, request: RestoreRequest) -> RestorePlan:
        cs = composer_settings(ctx.settings)
        chosen = selection(request.only, allow_snapshot=True)
        parts = chosen.parts
        chosen.check_matched([e for e in manifest.entries if part_of(e) == "dags"], manifest.backup_id)
        entries = {
            p: [e for e in manifest.entries if part_of(e) == p and chosen.takes(e)]
            for p in ("dags", "metadata", "config", "snapshot")
        }
        taken = set(manifest.source_state.get("parts", [])) | ({"snapshot"} if entries["snapshot"] else set())
        missing = [part for part in parts if request.only and part not in taken]
        if missing:
            raise NotFound(
                f"backup {manifest.backup_id} of {manifest.source} holds no {', '.join(missing)} part"
            )
        client = storage_client(ctx.settings.project)
        original = str(manifest.source_state.get("environment") or environment_name(cs, manifest.source))
        target = request.target or original
        if target.startswith("gs://"):  # every part's files into a bucket (drills)
            return plan_into_bucket(client, manifest, target, chosen)
        env = get_environment(composer_client(), target)
        bucket = environment_bucket(env)
        actions: list[dict[str, Any]] = []
        private: dict[str, Any] = {"bucket": bucket, "env": env}
        if "dags" in parts and (entries["dags"] or (request.exact and "dags" in taken)):
            private["dags"], extra = self.plan_dags(client, bucket, entries["dags"], request.exact)
            private["extra"] = [n for n in extra if chosen.takes_file(n)]
            change = {"create": "create", "overwrite": "replace", "unchanged": "unchanged"}
            actions += [{"name": e.name, "part": "dags", "change": change[a]} for e, a in private["dags"]]
            actions += [
                {"name": n, "part": "dags", "change": "delete", "why": "not in the backup"}
                for n in private["extra"]
            ]
        if "metadata" in parts and entries["metadata"] and env is not None:
            private["metadata"] = self.metadata_exports(cs, ctx.store, entries["metadata"])
            actions += self.metadata_actions(cs, env, private["metadata"], request, dry_run=True)
        if "config" in parts and entries["config"] and env is not None:
            saved = json.loads(ctx.store.get_bytes(entries["config"][0].stored_key))
            current = config_of(env, cs.model_copy(update={"secrets_mode": "reference"}), None)
            actions += [
                {"name": "config", "part": "config", "change": "note", **c}
                for c in config_diff(saved, current)
            ]
        if "snapshot" in parts and entries["snapshot"] and env is not None:
            path = _snapshot_path(ctx.store, entries["snapshot"][0])
            actions.append(
                {
                    "name": path,
                    "part": "snapshot",
                    "change": "replace",
                    "why": "loading a snapshot replaces the environment's state",
                }
            )
            private["snapshot"] = path
        into_original = target == original or bucket == manifest.source_state.get("bucket")
        return RestorePlan(target=target, into_original=into_original, actions=actions, private=private)

    def plan_dags(
        self, client: Any, bucket: str, entries: list[ManifestEntry], exact: bool
    ) -> tuple[list[tuple[ManifestEntry, Any]], list[str]]:
        """Per DAG-bucket entry, what restoring it does; with `exact`, the objects under dags/,
        plugins/ and data/ of `bucket` that the backup does not hold (to delete)."""
        if client.lookup_bucket(bucket) is None:
            return [(e, "create") for e in entries], []
        planned = gcs.plan_objects(client, bucket, entries, overwrite=True)
        if not exact:
            return planned, []
        held = {e.name for e in entries}
        listed = gcs.list_source(client, bucket, BUCKET_PREFIXES)
        return planned, [o.name for o in listed if o.name not in held and not o.is_placeholder]

    def metadata_actions(
        self,
        cs: ComposerSettings,
        env: Any,
        metadata: tuple[dict[str, Any], Any],
        request: RestoreRequest,
        dry_run: bool,
    ) -> list[dict[str, Any]]:
        """Plan (`dry_run`) or import the Airflow variables, connections and pools of the backup:
        create missing ones, update ("replace") differing ones with overwrite, and with `exact`
        delete the others (with overwrite). "why" says what to set by hand (passwords, masked keys)."""
        exports, box = metadata
        api = airflow_api(cs, env)
        actions: list[dict[str, Any]] = []
        for kind in (k for k in KINDS if k in exports):
            data = exports[kind]
            done = import_items(
                api,
                kind,
                data["items"],
                box,
                data.get("masked", {}),
                dry_run,
                request.exact,
                request.overwrite,
            )
            actions += [
                {
                    "name": f"{kind}/{a['name']}",
                    "part": "metadata",
                    "change": {"update": "replace"}.get(a["action"], a["action"]),
                    "why": a["note"],
                }
                for a in done
            ]
        return actions

    def metadata_exports(
        self, cs: ComposerSettings, store: BackupStore, entries: list[ManifestEntry]
    ) -> tuple[dict[str, Any], Any]:
        exports = {
            e.name.removeprefix("airflow/").removesuffix(".json"): json.loads(store.get_bytes(e.stored_key))
            for e in entries
        }
        encrypted = any("$encrypted" in json.dumps(v["items"]) for v in exports.values())
        if encrypted and not cs.encryption_key_block:
            raise ConfigError(
                "the backup holds encrypted secrets and composer settings name no encryption_key_block"
            )
        return exports, secret_box(cs, encrypted)

    def apply_restore(
        self, ctx: Context, manifest: BackupManifest, plan: RestorePlan, request: RestoreRequest
    ) -> None:
        private = plan.private
        client = storage_client(ctx.settings.project)
        if "dags" in private:
            gcs.ensure_target_bucket(client, private["bucket"], ctx.settings.location)
            wanted = [
                (e, a)
                for e, a in private["dags"]
                if a == "create" or (a == "overwrite" and request.overwrite)
            ]
            gcs_copy.write_objects(
                client, ctx.store, private["bucket"], wanted, manifest.backup_id, noun="file"
            )
            if request.overwrite and private["extra"]:
                with KeySpool() as extra:
                    extra.add((name, 0, None, None) for name in private["extra"])
                    gcs_restore.delete_objects(client, private["bucket"], extra)
        if "metadata" in private:
            self.metadata_actions(
                composer_settings(ctx.settings), private["env"], private["metadata"], request, dry_run=False
            )
        if "snapshot" in private and request.overwrite:
            load_snapshot(private["env"], private["snapshot"])

    def verify_restored(
        self, ctx: Context, manifest: BackupManifest, target: str, only: list[str] | None
    ) -> list[str]:
        cs = composer_settings(ctx.settings)
        chosen = selection(only, allow_snapshot=True)
        parts = set(chosen.parts)
        objects = [e for e in manifest.entries if part_of(e) == "dags" and chosen.takes(e)]
        client = storage_client(ctx.settings.project)
        if target.startswith("gs://"):
            files = [e for e in manifest.entries if chosen.takes(e)]
            return gcs.verify_objects(client, target.removeprefix("gs://"), files)
        env = get_environment(composer_client(), environment_name(cs, target))
        problems = gcs.verify_objects(client, environment_bucket(env), objects)
        metadata = [e for e in manifest.entries if part_of(e) == "metadata"]
        if "metadata" in parts and metadata:
            exports, box = self.metadata_exports(cs, ctx.store, metadata)
            api = airflow_api(cs, env)
            for kind in (k for k in KINDS if k in exports):
                data = exports[kind]
                for item in import_items(api, kind, data["items"], box, data.get("masked", {}), dry_run=True):
                    # an item held as a reference (or with masked keys) is set by hand: not compared
                    if item["action"] == "create" or (item["action"] == "update" and not item["note"]):
                        how = "missing" if item["action"] == "create" else "differs from the backup"
                        problems.append(f"{kind} {item['name']}: {how} in {env.name}")
        return problems

    def scratch_target(self, manifest: BackupManifest, suffix: str) -> str:
        """A scratch bucket: a drill cannot create a Composer environment, so it restores every
        part's files into a bucket and verifies them there (see `plan_into_bucket`)."""
        base = manifest.source.lower()[: 63 - len(suffix) - 16].rstrip("-._")
        return f"gs://{check_bucket(f'{base}-composer-drill-{suffix}'.lower())}"

    def remove_target(self, settings: BackstopSettings, target: str) -> None:
        if target.startswith("gs://"):
            gcs.COMPONENT.remove_target(settings, target)


COMPONENT = ComposerComponent()
