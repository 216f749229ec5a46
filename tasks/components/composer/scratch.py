"""A drill's scratch target for Cloud Composer: a bucket that receives every part's files."""

from __future__ import annotations

from typing import Any

from backstop.core.manifest import BackupManifest
from tasks.components.composer.parts import Selection, part_of
from tasks.components.gcs import component as gcs
from tasks.engine.protocol import RestorePlan


def plan_into_bucket(client: Any, manifest: BackupManifest, target: str, chosen: Selection) -> RestorePlan:
    """A drill cannot create a Composer environment: it restores the files of every part asked
    (DAGs, plugins and data, the Airflow metadata exports, the environment config) into a
    scratch bucket, where verification compares each with the backup."""
    bucket = target.removeprefix("gs://")
    entries = [e for e in manifest.entries if chosen.takes(e)]
    planned = (
        gcs.plan_objects(client, bucket, entries, overwrite=True)
        if client.lookup_bucket(bucket) is not None
        else [(e, "create") for e in entries]
    )
    change = {"create": "create", "overwrite": "replace", "unchanged": "unchanged"}
    actions = [{"name": e.name, "part": part_of(e), "change": change[a]} for e, a in planned]
    into_original = bucket == manifest.source_state.get("bucket")
    private = {"bucket": bucket, "env": None, "dags": planned, "extra": []}
    return RestorePlan(target=target, into_original=into_original, actions=actions, private=private)
