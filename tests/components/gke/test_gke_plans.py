"""Pure GKE logic: plan diffs and update masks, count checks, renames, scratch targets."""

from __future__ import annotations

import pytest

from backstop.core.errors import InvalidInput
from tasks.components.gke.plans import (
    GkeClusterSettings,
    GkeSettings,
    cluster_path,
    count_problems,
    describe_changes,
    desired_plan,
    parse_renames,
    parse_resource,
    parse_resources,
    parse_target,
    plan_diff,
    restore_plan_id,
    suffixed,
    update_mask,
)

pytestmark = pytest.mark.unit
CLUSTER = "projects/p/locations/us-central1/clusters/prod"


def test_same_settings_give_no_diff() -> None:
    desired = desired_plan(GkeClusterSettings(cluster="prod"), CLUSTER)
    assert plan_diff(dict(desired), desired) == {}


def test_changed_settings_give_the_fields_and_the_mask() -> None:
    old = desired_plan(GkeClusterSettings(cluster="prod", include_secrets=False, retain_days=14), CLUSTER)
    new = desired_plan(
        GkeClusterSettings(cluster="prod", namespaces=["shop", "api"], retain_days=30), CLUSTER
    )
    changes = plan_diff(old, new)
    assert set(changes) == {
        "backup_config.include_secrets",
        "retention_policy.backup_retain_days",
        "backup_config.all_namespaces",
        "backup_config.selected_namespaces",
    }
    # of the scope oneof only the member being set goes in the mask
    assert update_mask(changes) == [
        "backup_config.include_secrets",
        "backup_config.selected_namespaces",
        "retention_policy.backup_retain_days",
    ]
    assert "backup_retain_days: 14 -> 30" in describe_changes(changes)
    assert "selected_namespaces: [] -> ['api', 'shop']" in describe_changes(changes)


def test_switching_back_to_all_namespaces_sends_all_namespaces() -> None:
    old = desired_plan(GkeClusterSettings(cluster="prod", namespaces=["shop"]), CLUSTER)
    new = desired_plan(GkeClusterSettings(cluster="prod"), CLUSTER)
    assert update_mask(plan_diff(old, new)) == ["backup_config.all_namespaces"]


def test_the_cluster_of_a_plan_cannot_change() -> None:
    old = desired_plan(GkeClusterSettings(cluster="prod"), CLUSTER)
    new = desired_plan(GkeClusterSettings(cluster="prod"), CLUSTER.replace("prod", "other"))
    with pytest.raises(InvalidInput, match="cluster cannot change"):
        update_mask(plan_diff(old, new))


def test_settings_reject_two_scopes_and_bad_applications() -> None:
    with pytest.raises(ValueError, match="not both"):
        GkeClusterSettings(cluster="prod", namespaces=["a"], applications=["a/b"])
    with pytest.raises(ValueError, match="namespace/name"):
        GkeClusterSettings(cluster="prod", applications=["nope"])
    assert GkeClusterSettings(cluster="prod", namespaces=["a"]).all_namespaces is False
    assert GkeClusterSettings(cluster="prod").plan_id == "backstop-prod"
    with pytest.raises(InvalidInput, match="'staging' is not in settings.gke.clusters \\(prod\\)"):
        GkeSettings(clusters=[{"cluster": "prod"}]).cluster("staging")


def test_counts_missing_or_dropping_are_problems() -> None:
    good = {"resource_count": 100, "volume_count": 4, "pod_count": 10, "size_bytes": 1000}
    assert count_problems(good, good | {"backup_id": "b1"}, 50, True) == []
    assert count_problems(good | {"resource_count": 51}, good | {"backup_id": "b1"}, 50, True) == []
    problems = count_problems(good | {"resource_count": 40}, good | {"backup_id": "b1"}, 50, True)
    assert problems == [
        "resource_count dropped 60% (100 -> 40) against backup b1, more than the 50% threshold"
    ]
    assert count_problems(good | {"pod_count": 0}, None, 50, True) == [
        "pod_count is 0: the backup holds nothing"
    ]
    assert count_problems(good | {"volume_count": 0}, None, 50, contains_volume_data=False) == []
    assert "resource_count is None" in count_problems({}, None, 50, False)[0]


def test_renames_and_targets() -> None:
    assert parse_renames(["shop=shop-2", "api = api-2"]) == {"shop": "shop-2", "api": "api-2"}
    assert parse_renames({"a": "b"}) == {"a": "b"}
    with pytest.raises(InvalidInput, match="use old=new"):
        parse_renames(["shop"])
    with pytest.raises(InvalidInput, match="malformed namespace 'Shop_2'"):
        parse_renames(["shop=Shop_2"])
    with pytest.raises(InvalidInput, match="same name"):
        parse_renames(["a=c", "b=c"])
    assert parse_target("prod") == ("prod", None)
    assert parse_target("prod:drill-ab12") == ("prod", "drill-ab12")
    with pytest.raises(InvalidInput, match="malformed cluster name"):
        parse_target("Prod!")
    assert suffixed("shop", "drill-ab12") == "shop-drill-ab12"
    long = suffixed("n" * 63, "drill-ab12")
    assert len(long) <= 63 and long.endswith("-drill-ab12")
    assert cluster_path("p", "us-central1", "prod") == CLUSTER and cluster_path("x", "y", CLUSTER) == CLUSTER


def test_restore_plan_ids_are_stable_and_valid() -> None:
    a = restore_plan_id("backstop-prod", CLUSTER, {"config": "x"})
    assert (
        a
        == restore_plan_id("backstop-prod", CLUSTER, {"config": "x"})
        != restore_plan_id("backstop-prod", CLUSTER, {"config": "y"})
    )
    assert a.startswith("bs-prod-prod-") and len(a) <= 63


def test_cli_rejects_a_malformed_rename_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from backstop_cli.main import main

    assert main(["restore", "gke", "--cluster", "prod", "--rename", "shop"]) == 2
    assert capsys.readouterr().err.strip() == "error: malformed rename 'shop': use old=new"


def test_resources_parse_into_selectors_with_api_groups() -> None:
    assert parse_resource("shop/Deployment/frontend") == {
        "namespace": "shop",
        "group": "apps",
        "kind": "Deployment",
        "name": "frontend",
    }
    assert parse_resource("ConfigMap/settings") == {
        "namespace": "",
        "group": "",
        "kind": "ConfigMap",
        "name": "settings",
    }
    assert parse_resource("shop/Certificate.cert-manager.io/web")["group"] == "cert-manager.io"
    assert len(parse_resources(["ConfigMap/a", "ConfigMap/a", "shop/Service/a"])) == 2
    for bad, message in [
        ("frontend", "malformed resource 'frontend'"),
        ("a/b/c/d", "malformed resource"),
        ("Shop/Deployment/x", "malformed namespace 'Shop'"),
        ("shop/deployment/x", "malformed kind 'deployment'"),
        ("shop/Deployment/Front_End", "malformed object name 'Front_End'"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            parse_resource(bad)


def test_cli_rejects_a_malformed_resource_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from backstop_cli.main import main

    assert main(["restore", "gke", "--cluster", "prod", "--resource", "frontend"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: malformed resource 'frontend': use namespace/Kind/name or Kind/name"
    )


def test_local_model_restores_only_selected_objects_and_reports_conflicts() -> None:
    from google.cloud.gke_backup_v1 import types

    from localdev.servers.gke_cluster import restore_into

    backed_up = {
        "shop": {
            "resources": 3,
            "pods": 1,
            "volumes": 1,
            "bytes": 100,
            "objects": ["A/x", "B/y", "PersistentVolumeClaim/d"],
        }
    }
    pick = types.Restore.Filter(
        inclusion_filters=[
            types.ResourceSelector(namespace="shop", name="d"),
            types.ResourceSelector(group_kind=types.RestoreConfig.GroupKind(resource_kind="A")),
        ]
    )
    cluster: dict[str, dict[str, object]] = {}
    assert restore_into(cluster, backed_up, ["shop"], {"shop": "copy"}, pick, replace=False) == (2, 1)
    assert cluster["copy"] == {
        "resources": 2,
        "pods": 0,
        "volumes": 1,
        "bytes": 100,
        "objects": ["A/x", "PersistentVolumeClaim/d"],
    }
    assert restore_into(cluster, backed_up, ["shop"], {"shop": "copy"}, pick, replace=False) == (
        "resource(s) copy/A/x, copy/PersistentVolumeClaim/d already exist"
    )
    assert restore_into(cluster, backed_up, ["shop"], {"shop": "copy"}, None, replace=False) == (
        "namespace(s) copy already exist"
    )
    assert restore_into(cluster, backed_up, ["shop"], {"shop": "copy"}, None, replace=True) == (3, 1)
    assert cluster["copy"] == backed_up["shop"]
