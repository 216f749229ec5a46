"""What the local Backup for GKE server's clusters hold, and the pure rules a restore applies to it.

A cluster is {namespace: spec}; a spec counts `resources`, `pods`, `volumes` and `bytes`, and may
name its objects (`objects`: ["Kind/name", ...]) so a restore filter can pick some of them, and give
its workloads' labels (`labels`: {key: value}). What the cluster's Kubernetes API lists for a
namespace is synthesized from its spec (`localdev.servers.gke_objects`).
No gRPC and no state here: `localdev.servers.gke_model` keeps the clusters.
"""

from __future__ import annotations

from typing import Any

from google.cloud.gke_backup_v1 import types as gke_types

t: Any = gke_types  # proto-plus enums confuse mypy; the messages are checked by the client

Namespaces = dict[str, dict[str, Any]]
DEMO_PROJECT = "backstop-demo"
DEMO_LOCATION = "us-central1"
DEMO_SHOP_OBJECTS = [
    "Deployment/frontend",
    "Deployment/cart",
    "Service/frontend",
    "Service/cart",
    "ConfigMap/shop-settings",
    "PersistentVolumeClaim/cart-data",
]
DEMO_CLUSTERS: dict[str, Namespaces] = {
    "prod": {
        "shop": {"resources": 42, "pods": 6, "volumes": 2, "bytes": 3 * 2**30, "objects": DEMO_SHOP_OBJECTS},
        "payments": {"resources": 27, "pods": 4, "volumes": 1, "bytes": 2**30},
        "monitoring": {"resources": 35, "pods": 5, "volumes": 1, "bytes": 512 * 2**20},
    },
    "staging": {"shop": {"resources": 40, "pods": 3, "volumes": 1, "bytes": 2**29}},
}


def copy_namespaces(namespaces: Namespaces) -> Namespaces:
    """A deep-enough copy of namespace specs (their `objects` lists and `labels` are copied too)."""
    return {
        ns: {k: type(v)(v) if isinstance(v, (list, dict)) else v for k, v in spec.items()}
        for ns, spec in namespaces.items()
    }


def claims(spec: dict[str, Any]) -> list[str]:
    """PVC names of a namespace: its PersistentVolumeClaim objects, else 'data-<i>' per volume."""
    named = [o.split("/", 1)[1] for o in spec.get("objects", []) if o.startswith("PersistentVolumeClaim/")]
    return (named + [f"data-{i}" for i in range(len(named), int(spec["volumes"]))])[: int(spec["volumes"])]


def _matches(selector: Any, namespace: str, obj: str) -> bool:
    kind, _, name = obj.partition("/")
    return (
        (not selector.group_kind.resource_kind or selector.group_kind.resource_kind == kind)
        and (not selector.name or selector.name == name)
        and (not selector.namespace or selector.namespace == namespace)
    )


def selected_objects(spec: dict[str, Any], namespace: str, selectors: Any) -> list[str]:
    """The objects ("Kind/name") of a backed-up namespace that a `Restore.Filter` selects.

    The model does not track API groups: a selector's resource_group is not compared.
    """
    return [
        o
        for o in spec.get("objects", [])
        if (
            not selectors.inclusion_filters
            or any(_matches(s, namespace, o) for s in selectors.inclusion_filters)
        )
        and not any(_matches(s, namespace, o) for s in selectors.exclusion_filters)
    ]


def merge_objects(cluster: Namespaces, namespace: str, source: dict[str, Any], objects: list[str]) -> int:
    """Put `objects` (from the backed-up `source` namespace) into `namespace`; returns volumes added."""
    target = cluster.setdefault(
        namespace, {"resources": 0, "pods": 0, "volumes": 0, "bytes": 0, "objects": []}
    )
    target.setdefault("objects", [])
    new = [o for o in objects if o not in target["objects"]]
    volumes = sum(o.startswith("PersistentVolumeClaim/") for o in new)
    target["objects"] = sorted([*target["objects"], *new])
    target["resources"] += len(new)
    target["volumes"] += volumes
    target["bytes"] += volumes * (source["bytes"] // max(source["volumes"], 1))
    return volumes


def restore_into(
    cluster: Namespaces,
    contents: Namespaces,
    chosen: list[str],
    renames: dict[str, str],
    selectors: Any | None,
    replace: bool,
) -> tuple[int, int] | str:
    """Restore the `chosen` backed-up namespaces (`contents`) into `cluster`, renamed by `renames`.

    With `selectors` (a Restore.Filter) only the objects it selects come back, merged into the
    target namespaces; without, each namespace is replaced whole. Returns (resources, volumes)
    restored, or, when something exists already and `replace` is off, the conflict (nothing changed).
    """
    if selectors is not None:
        picked = {ns: selected_objects(contents[ns], ns, selectors) for ns in chosen}
        picked = {ns: objects for ns, objects in picked.items() if objects}
        clashes = [
            f"{renames.get(ns, ns)}/{o}"
            for ns, objects in picked.items()
            for o in objects
            if o in cluster.get(renames.get(ns, ns), {}).get("objects", [])
        ]
    else:
        clashes = [renames.get(ns, ns) for ns in chosen if renames.get(ns, ns) in cluster]
    if clashes and not replace:
        return f"{'resource' if selectors is not None else 'namespace'}(s) {', '.join(clashes)} already exist"
    if selectors is not None:
        volumes = sum(
            merge_objects(cluster, renames.get(ns, ns), contents[ns], o) for ns, o in picked.items()
        )
        return sum(len(o) for o in picked.values()), volumes
    for ns in chosen:
        cluster[renames.get(ns, ns)] = copy_namespaces({ns: contents[ns]})[ns]
    return sum(contents[ns]["resources"] for ns in chosen), sum(contents[ns]["volumes"] for ns in chosen)


def namespace_renames(config: t.RestoreConfig) -> dict[str, str]:
    """old -> new namespace, read from transformation rules that REPLACE /metadata/namespace."""
    renames = {}
    for rule in config.transformation_rules:
        for action in rule.field_actions:
            if (
                action.op == t.RestoreConfig.TransformationRuleAction.Op.REPLACE
                and action.path == "/metadata/namespace"
            ):
                for ns in rule.resource_filter.namespaces:
                    renames[ns] = action.value
    return renames
