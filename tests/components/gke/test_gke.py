"""GKE component against the local Backup for GKE server, driven by the real client over insecure gRPC."""

from __future__ import annotations

from typing import Any

import pytest

from backstop.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from localdev.platform import PROJECT
from localdev.servers.gke_server import GkeBackupServer
from tasks.catalog import index
from tests.conftest import unique

pytestmark = pytest.mark.integration

LOCATION = "us-central1"
NAMESPACES = {
    "shop": {"resources": 40, "pods": 6, "volumes": 2, "bytes": 2 * 2**30},
    "payments": {"resources": 20, "pods": 4, "volumes": 1, "bytes": 2**30},
}


def full(cluster: str, project: str = PROJECT) -> str:
    return f"projects/{project}/locations/{LOCATION}/clusters/{cluster}"


@pytest.fixture
def cluster(gke_env: GkeBackupServer) -> str:
    name = unique("c")
    gke_env.add_cluster(full(name), NAMESPACES)
    return name


def gke_settings(cluster: str, **overrides: Any) -> Any:
    from tasks.components.gke.component import GkeSettings

    item = {"cluster": cluster, "include_secrets": False, "retain_days": 14} | overrides
    return GkeSettings(
        project=PROJECT, location=LOCATION, clusters=[item], poll_seconds=0.01, drop_threshold_percent=50
    )


def test_plan_is_idempotent_and_a_changed_setting_updates_it(settings: Any, cluster: str) -> None:
    from blocks.clients import gke_backup_client
    from tasks.components.gke.api import ensure_plan

    gke = gke_settings(cluster)
    first = ensure_plan(settings, gke, gke.clusters[0])
    second = ensure_plan(settings, gke, gke.clusters[0])
    assert (first["action"], second["action"], second["changes"]) == ("created", "unchanged", [])

    changed = gke_settings(cluster, include_secrets=True, retain_days=30, namespaces=["shop"])
    third = ensure_plan(settings, changed, changed.clusters[0])
    assert third["action"] == "updated"
    assert "include_secrets: False -> True" in third["changes"]
    assert "backup_retain_days: 14 -> 30" in third["changes"]
    plan = gke_backup_client().get_backup_plan(name=third["plan"], timeout=10)
    assert plan.backup_config.include_secrets and plan.retention_policy.backup_retain_days == 30
    assert (
        list(plan.backup_config.selected_namespaces.namespaces) == ["shop"]
        and not plan.backup_config.all_namespaces
    )
    assert ensure_plan(settings, changed, changed.clusters[0])["action"] == "unchanged"


def test_backup_goes_pending_then_succeeds_and_the_manifest_has_its_counts(
    settings: Any, store: Any, cluster: str, server: GkeBackupServer
) -> None:
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("gke")

    lines: list[str] = []
    manifest = COMPONENT.backup(settings, store, cluster, gke=gke_settings(cluster), log=lines.append)
    assert any("running" in line for line in lines), lines  # the operation was pending first
    state = manifest.source_state
    assert state["state"] == "SUCCEEDED"
    assert (state["resource_count"], state["pod_count"], state["volume_count"]) == (60, 10, 3)
    assert state["size_bytes"] >= 3 * 2**30
    assert state["complete_time"] and state["backup_name"].endswith(
        f"/backups/bs-{manifest.backup_id.lower()}"
    )
    assert manifest.component == "gke" and manifest.source == cluster
    [entry] = manifest.entries
    assert store.stat(entry.stored_key).crc32c == entry.crc32c
    validated = COMPONENT.validate(settings, store, manifest, gke=gke_settings(cluster))
    assert validated.status == "validated" and index.list_manifests(store, "gke", cluster)[0].validated

    COMPONENT.delete(settings, validated, gke=gke_settings(cluster))
    with pytest.raises(ValidationFailed, match="no longer exists in Backup for GKE"):
        COMPONENT.validate(settings, store, validated, gke=gke_settings(cluster))
    COMPONENT.delete(settings, validated, gke=gke_settings(cluster))  # already gone: nothing to do


def test_failed_backup_fails_validation_naming_the_reason(
    settings: Any, store: Any, cluster: str, server: GkeBackupServer
) -> None:
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("gke")

    server.fail_next_backup("VolumeSnapshot quota exceeded in zone us-central1-a")
    manifest = COMPONENT.backup(settings, store, cluster, gke=gke_settings(cluster), log=lambda _: None)
    assert manifest.source_state["state"] == "FAILED"
    with pytest.raises(ValidationFailed, match="FAILED: VolumeSnapshot quota exceeded"):
        COMPONENT.validate(settings, store, manifest, gke=gke_settings(cluster))
    assert index.list_manifests(store, "gke", cluster)[0].status == "invalid"


def test_sharp_count_drop_fails_validation(
    settings: Any, store: Any, cluster: str, server: GkeBackupServer
) -> None:
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("gke")

    gke = gke_settings(cluster)
    first = COMPONENT.backup(settings, store, cluster, gke=gke, log=lambda _: None)
    COMPONENT.validate(settings, store, first, gke_config=gke)
    server.shrink_next_backup(0.25)
    second = COMPONENT.backup(settings, store, cluster, gke=gke, log=lambda _: None)
    with pytest.raises(ValidationFailed, match=r"resource_count dropped 75% \(60 -> 15\)") as failed:
        COMPONENT.validate(settings, store, second, gke_config=gke)
    assert first.backup_id in str(failed.value)


def test_permission_denied_and_not_found_give_clear_errors(
    settings: Any, store: Any, gke_env: GkeBackupServer
) -> None:
    from tasks.components.gke.component import GkeSettings
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("gke")

    missing = unique("c")
    with pytest.raises(NotFound, match=f"cluster .*clusters/{missing}.* not found"):
        COMPONENT.backup(settings, store, missing, gke=gke_settings(missing), log=lambda _: None)
    gke_env.deny("forbidden-project")
    gke = GkeSettings(
        project="forbidden-project", location=LOCATION, clusters=[{"cluster": "prod"}], poll_seconds=0.01
    )
    with pytest.raises(PermissionDenied, match="permission denied.*forbidden-project"):
        COMPONENT.backup(settings, store, "prod", gke=gke, log=lambda _: None)
    assert index.list_manifests(store, "gke") == []  # nothing half-done was committed


def test_restore_into_a_renamed_namespace_and_another_cluster(
    settings: Any, store: Any, cluster: str, server: GkeBackupServer
) -> None:
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("gke")

    gke = gke_settings(cluster)
    manifest = COMPONENT.validate(
        settings, store, COMPONENT.backup(settings, store, cluster, gke=gke, log=lambda _: None), gke=gke
    )

    dry = COMPONENT.restore(
        settings, store, manifest, only=["shop"], rename={"shop": "shop-restored"}, dry_run=True, gke=gke
    )
    assert dry.actions == [
        {
            "name": "shop-restored",
            "change": "create",
            "namespace": "shop",
            "restore_as": "shop-restored",
            "why": "from namespace shop of the backup",
        }
    ]
    assert "shop-restored" not in server.namespaces(full(cluster))
    # a backup of every namespace: one it did not hold is refused by name, nothing restored
    with pytest.raises(
        NotFound, match=rf"namespace\(s\) nowhere not in backup {manifest.backup_id} \(.*shop"
    ):
        COMPONENT.restore(settings, store, manifest, only=["nowhere"], gke=gke)

    report = COMPONENT.restore(
        settings, store, manifest, only=["shop"], rename={"shop": "shop-restored"}, gke=gke
    )
    assert report.created == 40
    assert server.namespaces(full(cluster))["shop-restored"] == NAMESPACES["shop"]

    same = COMPONENT.restore(settings, store, manifest, only=["shop"], gke_config=gke)
    assert (same.unchanged, same.created, same.overwritten) == (1, 0, 0)  # identical: nothing restored
    server.set_namespace(full(cluster), "shop", NAMESPACES["shop"] | {"pods": 9})
    with pytest.raises(Conflict, match="overwrite was not asked for"):  # changed since the backup
        COMPONENT.restore(settings, store, manifest, only=["shop"], gke_config=gke)
    assert server.namespaces(full(cluster))["shop"]["pods"] == 9
    replaced = COMPONENT.restore(
        settings, store, manifest, only=["shop"], overwrite=True, yes=True, gke_config=gke
    )
    assert (replaced.created, replaced.overwritten) == (40, 1)
    assert server.namespaces(full(cluster))["shop"] == NAMESPACES["shop"]

    other = unique("c")
    server.add_cluster(full(other), {})
    whole = COMPONENT.restore(settings, store, manifest, target=other, gke_config=gke)
    assert whole.created == 60 and server.namespaces(full(other)) == NAMESPACES
    assert COMPONENT.check_restored(settings, store, manifest, other, gke_config=gke) == []

    scratch = COMPONENT.scratch_target(manifest, "ab12")
    drill_gke = gke_settings(cluster, drill_namespaces=["payments"])
    COMPONENT.restore(settings, store, manifest, target=scratch, gke_config=drill_gke)
    assert "payments-drill-ab12" in server.namespaces(full(cluster))
    assert COMPONENT.check_restored(settings, store, manifest, scratch, gke_config=drill_gke) == []
    COMPONENT.remove_target(settings, scratch, gke=drill_gke)
    assert "payments-drill-ab12" not in server.namespaces(full(cluster))  # the drill leaves nothing
    assert "payments" in server.namespaces(full(cluster))
    assert COMPONENT.check_restored(settings, store, manifest, scratch, gke_config=drill_gke) == [
        f"no restore of {manifest.backup_id} into {scratch} found in Backup for GKE"
    ]


@pytest.mark.flow
def test_backup_and_restore_flows(
    saved_settings: str, store: Any, cluster: str, server: GkeBackupServer
) -> None:
    from flows.gke import backup_gke, restore_gke

    gke = gke_settings(cluster)
    [row] = backup_gke([cluster], {"gke_config": gke}, settings_block=saved_settings)
    assert (row["resource_count"], row["volume_count"], row["pod_count"], row["status"]) == (
        60,
        3,
        10,
        "validated",
    )

    summary = restore_gke(
        cluster,
        only=["payments"],
        options={"gke_config": gke, "rename": {"payments": "payments-copy"}},
        settings_block=saved_settings,
    )
    assert (
        summary["created"] == 20
        and server.namespaces(full(cluster))["payments-copy"] == NAMESPACES["payments"]
    )

    dry = restore_gke(
        cluster,
        options={"gke_config": gke, "resources": ["payments/Deployment/api", "ClusterRole/reader"]},
        dry_run=True,
        settings_block=saved_settings,
    )
    assert {
        "name": "ClusterRole/reader",
        "change": "create",
        "resource": "ClusterRole/reader",
        "restore_as": "ClusterRole/reader",
    } in dry["actions"]

    server.fail_next_backup("cluster unreachable: agent not running")
    with pytest.raises(ValidationFailed, match="agent not running"):
        backup_gke([cluster], {"gke_config": gke}, settings_block=saved_settings)


WITH_OBJECTS = {
    "shop": {
        "resources": 4,
        "pods": 2,
        "volumes": 1,
        "bytes": 2**30,
        "objects": [
            "ConfigMap/settings",
            "Deployment/frontend",
            "PersistentVolumeClaim/data",
            "Service/frontend",
        ],
    },
    "payments": {
        "resources": 2,
        "pods": 1,
        "volumes": 1,
        "bytes": 2**29,
        "objects": ["ConfigMap/settings", "Deployment/api"],
    },
}


def test_restore_chosen_resources_brings_back_only_those(
    settings: Any, store: Any, gke_env: GkeBackupServer
) -> None:
    from backstop.core.errors import InvalidInput
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("gke")

    cluster = unique("c")
    gke_env.add_cluster(full(cluster), WITH_OBJECTS)
    gke = gke_settings(cluster)
    manifest = COMPONENT.validate(
        settings, store, COMPONENT.backup(settings, store, cluster, gke=gke, log=lambda _: None), gke=gke
    )
    assert gke_env.delete_namespace(full(cluster), "shop")

    chosen = ["shop/Deployment/frontend", "shop/PersistentVolumeClaim/data"]
    dry = COMPONENT.restore(settings, store, manifest, resources=chosen, dry_run=True, gke_config=gke)
    assert {
        "name": "shop/Deployment/frontend",
        "change": "create",
        "resource": "shop/Deployment/frontend",
        "restore_as": "shop/Deployment/frontend",
    } in dry.actions
    creates = [a["name"] for a in dry.actions if a["change"] == "create"]
    assert creates == chosen  # a row per object restored, none for the namespace they go into
    assert "shop" not in gke_env.namespaces(full(cluster))

    report = COMPONENT.restore(settings, store, manifest, resources=chosen, gke_config=gke)
    assert report.created == 2 == len([a for a in report.actions if a["change"] == "create"])
    assert report.actions[-1]["volumes_restored"] == 1
    after = gke_env.namespaces(full(cluster))
    assert after["shop"]["objects"] == ["Deployment/frontend", "PersistentVolumeClaim/data"]
    assert (after["shop"]["resources"], after["shop"]["volumes"]) == (2, 1)
    assert after["payments"] == WITH_OBJECTS["payments"]  # untouched
    assert COMPONENT.check_restored(settings, store, manifest, cluster, gke_config=gke) == []

    # 'Kind/name' selects in every namespace: payments still has its ConfigMap, so it conflicts
    with pytest.raises(Conflict, match="payments/ConfigMap/settings already exist"):
        COMPONENT.restore(settings, store, manifest, resources=["ConfigMap/settings"], gke_config=gke)
    only_shop = COMPONENT.restore(
        settings, store, manifest, only=["shop"], resources=["ConfigMap/settings"], gke=gke
    )
    assert only_shop.created == 1
    assert gke_env.namespaces(full(cluster))["shop"]["objects"] == [
        "ConfigMap/settings",
        "Deployment/frontend",
        "PersistentVolumeClaim/data",
    ]
    with pytest.raises(
        NotFound, match=f"nothing in backup {manifest.backup_id} matches shop/Deployment/gone"
    ):
        COMPONENT.restore(settings, store, manifest, resources=["shop/Deployment/gone"], gke_config=gke)
    with pytest.raises(InvalidInput, match="malformed resource 'shop/frontend/x/y'"):
        COMPONENT.restore(settings, store, manifest, resources=["shop/frontend/x/y"], gke_config=gke)


@pytest.mark.flow
def test_prune_deletes_the_gke_backup_and_keeps_a_delete_locked_one(
    prefect_harness: None, settings: Any, store: Any, cluster: str, server: GkeBackupServer
) -> None:
    from blocks.settings import RetentionSettings
    from flows.retention import prune_backups
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("gke")

    def backed_up(gke: Any) -> Any:
        manifest = COMPONENT.backup(settings, store, cluster, gke=gke, log=lambda _: None)
        return COMPONENT.validate(settings, store, manifest, gke_config=gke)

    unlocked, locked = gke_settings(cluster), gke_settings(cluster, delete_lock_days=7)
    oldest, middle, newest = backed_up(unlocked), backed_up(locked), backed_up(locked)
    assert middle.source_state["delete_lock_days"] == 7
    settings.gke = locked
    settings.retention = RetentionSettings(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    block = unique("settings")
    settings.save(block, overwrite=True)

    result = prune_backups(component="gke", source=cluster, settings_block=block)

    assert oldest.source_state["backup_name"] not in server.backups  # gone from Backup for GKE
    assert middle.source_state["backup_name"] in server.backups
    assert {m.backup_id for m in index.list_manifests(store, "gke", cluster)} == {
        middle.backup_id,
        newest.backup_id,
    }
    [problem] = result["problems"]
    assert problem.startswith(f"backup {middle.backup_id} kept:") and "delete-locked until" in problem


def test_a_namespace_that_disappeared_fails_validation_by_name(
    settings: Any, store: Any, cluster: str, server: GkeBackupServer
) -> None:
    from tasks.engine.calls import ComponentCalls

    COMPONENT = ComponentCalls("gke")

    gke = gke_settings(cluster)
    first = COMPONENT.backup(settings, store, cluster, gke=gke, log=lambda _: None)
    assert first.source_state["namespace_volumes"] == {"shop": 2, "payments": 1}
    COMPONENT.validate(settings, store, first, gke_config=gke)
    server.delete_namespace(full(cluster), "payments")  # a third of everything: under the threshold
    second = COMPONENT.backup(settings, store, cluster, gke=gke, log=lambda _: None)
    with pytest.raises(ValidationFailed) as failed:
        COMPONENT.validate(settings, store, second, gke_config=gke)
    assert failed.value.problems == [
        f"namespace payments had 1 volume backup(s) in backup {first.backup_id} and has none in this one"
    ]
