"""Retention flows: prune backups by policy, ensure storage tiers, check the buckets' configuration.

One task per (component, source) and per store, whose sweep deletes in units on the settings'
task runner (tasks/engine/units.py); objects that could not be deleted and sources whose task
failed are reported in the `prune-problems` artifact, a warning log line and the result, and stop
no other source: the run itself completes (the CLI exits 1). Objects the bucket keeps (a hold, the
retention policy) are no failure: they are listed in `prune-kept-by-bucket` and the result.
"""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from backstop.core.errors import BackstopError, InvalidInput, ValidationFailed
from backstop.core.manifest import utcnow
from backstop.core.names import check_source_name
from backstop.core.report import human_bytes, markdown_table
from backstop.core.retention import RetentionPolicy
from blocks.clients import storage_client, storage_client_as
from blocks.settings import BackstopSettings, load_settings
from flows.hooks import backstop_flow
from tasks.catalog.backups import record_run
from tasks.engine.lifecycle import loaded
from tasks.engine.protocol import COMPONENTS, get_component
from tasks.operations import buckets, retention_layers, security
from tasks.operations.prune import PruneReport, prune, sources_in
from tasks.storage.bucket import BackupStore, open_store


def _bullets(items: list[str], limit: int = 200) -> str:
    """A markdown list of the first `limit` items, and how many more the run's result holds."""
    lines = [f"- {i}" for i in items[:limit]]
    if len(items) > limit:
        lines.append(f"- and {len(items) - limit} more (the flow run's result lists them all)")
    return "\n".join(lines)


@task(name="prune-source", cache_policy=NO_CACHE)
def prune_source(
    settings: BackstopSettings, secondary: bool, component: str, source: str, dry_run: bool
) -> dict[str, Any]:
    """Apply the source's retention policy in one store; returns the summary and the plan rows."""
    store = open_store(settings, secondary=secondary)
    policy = RetentionPolicy.from_settings(settings.retention_for(component, source))
    chosen = get_component(component) if component in COMPONENTS else None
    external = getattr(chosen, "delete", None)
    release = (
        (lambda manifest: external(settings, loaded(chosen, store, manifest)))
        if external and not secondary
        else None
    )
    try:
        report: PruneReport = prune(
            store, component, source, policy, utcnow(), dry_run=dry_run, release=release, settings=settings
        )
    except BaseException as exc:  # a failed prune leaves a record health and `list --all` show
        record_run(store, "prune", component, source, exc)
        raise
    get_run_logger().info(
        "%s %s/%s: keep %d, remove %d%s, %d objects (%s) deleted, %d not deleted",
        store.where(),
        component,
        source,
        len(report.plan.keep),
        len(report.plan.remove),
        " (dry run)" if dry_run else "",
        report.deleted_objects,
        human_bytes(report.deleted_bytes),
        len(report.not_deleted),
    )
    rows = [row | {"bucket": store.bucket_name} for row in report.rows()]
    return {"summary": report.summary(), "rows": rows}


def _stores(settings: BackstopSettings) -> list[tuple[bool, BackupStore]]:
    stores = [(False, open_store(settings))]
    if settings.secondary_bucket:
        stores.append((True, open_store(settings, secondary=True)))
    return stores


@backstop_flow(name="prune-backups")
def prune_backups(
    component: str = "",
    source: str = "",
    dry_run: bool = False,
    settings_block: str = "default",
) -> dict[str, Any]:
    """Apply the retention policy to every (component, source) in the primary and secondary buckets.

    Args:
        component: only this component (e.g. "gcs"; empty: all).
        source: only this source (needs `component`; empty: all).
        dry_run: plan only: print what would be kept and removed, and why; delete nothing.
        settings_block: name of the Backstop settings block.

    Returns:
        {"rows": one per backup (bucket, component, source, backup_id, started, status, decision, reason),
         "summaries": one per store and source, "problems": what could not be deleted}.
    """
    if source and not component:
        raise InvalidInput("prune: --source needs --component")
    if component:
        get_component(component)  # InvalidInput naming the known ones
    if source:
        check_source_name(source)
    settings = load_settings(settings_block)
    futures = []
    problems: list[str] = []
    for secondary, store in _stores(settings):
        try:
            groups = sources_in(store, component or None)
        except BackstopError as exc:  # e.g. the secondary bucket is gone: prune the other store anyway
            problems.append(f"{store.where()}: not pruned: {exc}")
            continue
        if source:
            groups = [g for g in groups if g[1] == source]
        futures += [prune_source.submit(settings, secondary, c, s, dry_run) for c, s in groups]
    rows: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    kept: list[str] = []
    for future in futures:
        future.wait()
        state = future.state
        if state.is_completed():
            result = future.result()
            rows += result["rows"]
            summaries.append(result["summary"])
            problems += result["summary"]["not_deleted"]
            kept += result["summary"]["kept_by_bucket"]
        else:  # one source failing does not stop the others
            problems.append(f"prune task failed: {state.message}")
    columns = ["bucket", "component", "source", "backup_id", "started", "status", "decision", "reason"]
    create_table_artifact(
        [{c: r.get(c) for c in columns} for r in rows],
        key="prune-plan",
        description=("Retention plan (dry run)" if dry_run else "Retention: what was kept and removed"),
    )
    if problems:
        create_markdown_artifact("# Not deleted\n\n" + _bullets(problems), key="prune-problems")
    if kept:
        create_markdown_artifact(
            "# Kept by the bucket (object holds, retention policy)\n\n" + _bullets(kept),
            key="prune-kept-by-bucket",
        )
        get_run_logger().info(
            "%d object(s) kept by the bucket (holds, retention policy): %s", len(kept), kept[0]
        )
    result = {"rows": rows, "summaries": summaries, "problems": problems, "kept_by_bucket": kept}
    if problems and not dry_run:
        get_run_logger().warning("prune finished with %d problem(s): %s", len(problems), problems[0])
    return result


@backstop_flow(name="ensure-storage-tiers")
def ensure_storage_tiers(settings_block: str = "default") -> dict[str, Any]:
    """Put the lifecycle (storage tier) rules on the backup buckets; report tier warnings."""
    settings = load_settings(settings_block)
    client = storage_client(settings.project)
    rules = buckets.lifecycle_rules(settings)
    components = buckets.tiers_of(settings).components
    changed = {}
    for bucket in filter(None, [settings.backup_bucket, settings.secondary_bucket]):
        changed[bucket] = buckets.ensure_lifecycle(client, bucket, rules, components)
        get_run_logger().info(
            "gs://%s: lifecycle rules %s", bucket, "updated" if changed[bucket] else "already set"
        )
    warnings = buckets.tier_warnings(settings)
    rows = [
        {
            "class": r["action"].get("storageClass", r["action"]["type"]),
            "age_days": r["condition"]["age"],
            "prefixes": ", ".join(r["condition"]["matchesPrefix"]),
        }
        for r in rules
    ]
    body = (
        "# Storage tiers\n\n"
        + markdown_table(rows)
        + "\n\n"
        + "\n".join(f"- gs://{b}: {'updated' if c else 'unchanged'}" for b, c in changed.items())
    )
    if warnings:
        body += "\n\n## Warnings\n\n" + "\n".join(f"- {w}" for w in warnings)
    create_markdown_artifact(body, key="storage-tiers")
    return {"rules": rules, "changed": changed, "warnings": warnings}


@backstop_flow(name="preflight-check")
def preflight_check(
    settings_block: str = "default", fail_on_error: bool = True, iam: bool = False
) -> list[dict[str, str]]:
    """Check the backup buckets: versioning, soft delete, retention policy and lock, public access,
    uniform access, KMS keys and their locations, and a secondary copy really elsewhere; and that no
    retention layer outside them (Backup for GKE plans, BigQuery / Composer snapshots) deletes data
    of a backup Backstop still keeps.

    Args:
        settings_block: name of the Backstop settings block.
        fail_on_error: fail the run (and so alert) when a finding is an error; the scheduled
            deployment does, the CLI prints the findings and exits 1 instead.
        iam: also check, with testIamPermissions as each service account of deployments/iam/roles.yaml,
            that every job holds what it needs on the buckets and nothing more.
    """
    settings = load_settings(settings_block)
    try:
        client = storage_client(settings.project)
        findings = [f.as_dict() for f in buckets.preflight(client, settings)]
        findings += [f.as_dict() for f in security.preflight_security(client, settings)]
        findings += [f.as_dict() for f in retention_layers.retention_findings(settings, client)]
    except BackstopError as exc:
        findings = [
            {"level": "error", "bucket": settings.backup_bucket, "check": "preflight", "message": str(exc)}
        ]
    findings += [
        {"level": "warning", "bucket": "-", "check": "tiers", "message": w}
        for w in buckets.tier_warnings(settings)
    ]
    if iam:
        findings += iam_findings(settings)
    counts = {level: sum(f["level"] == level for f in findings) for level in ("ok", "warning", "error")}
    create_markdown_artifact(
        f"# Preflight: {counts['error']} error(s), {counts['warning']} warning(s)\n\n"
        + markdown_table(findings),
        key="preflight",
    )
    for finding in findings:
        if finding["level"] != "ok":
            get_run_logger().warning("%s %s: %s", finding["bucket"], finding["check"], finding["message"])
    errors = [f"{f['bucket']} {f['check']}: {f['message']}" for f in findings if f["level"] == "error"]
    if errors and fail_on_error:
        raise ValidationFailed(f"preflight: {len(errors)} red finding(s): " + " | ".join(errors[:5]), errors)
    return findings


def iam_findings(settings: BackstopSettings) -> list[dict[str, str]]:
    """Per service account and bucket: missing permissions and permissions it should not have."""
    from tasks.operations import iam

    kinds = {
        "backup": [settings.backup_bucket],
        "secondary": [settings.secondary_bucket or ""],
        "sources": list(settings.gcs_sources),
        "targets": list(settings.gcs_sources),  # restores go back to the sources by default
    }
    kinds = {k: [b for b in v if b] for k, v in kinds.items()}
    rows = iam.check_iam(
        iam.load_spec(), kinds, settings.project, lambda email: storage_client_as(settings.project, email)
    )
    out = []
    for row in rows:
        parts = [f"missing: {row['missing']}"] if row["missing"] else []
        parts += [f"should not have: {row['should_not_have']}"] if row["should_not_have"] else []
        parts += [row["error"]] if row["error"] else []
        out.append(
            {
                "level": row["level"],
                "bucket": row["bucket"],
                "check": f"iam {row['service_account']}",
                "message": "; ".join(parts) or f"exactly what the job needs on the {row['kind']} bucket",
            }
        )
    return out
