"""Health report, failure notifications, automations, approvals and the deployment spec.

Notifications are checked against a real HTTP receiver (http.server on a free port): the hook and
the server-side automation must really POST to it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cronsim import CronSim

from backstop.core.errors import Conflict, ObjectiveBreached
from backstop.core.manifest import BackupManifest, ManifestEntry
from localdev.platform import free_port
from tasks.catalog import index
from tests.conftest import unique

pytestmark = pytest.mark.flow


class Receiver:
    """A local webhook endpoint that keeps every JSON body it receives."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wait_for(self, text: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for post in self.posts:
                if text in json.dumps(post):
                    return post
            time.sleep(0.2)
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    local = Receiver()
    yield local
    local.close()


@pytest.fixture
def notifying_settings(prefect_harness: None, settings: Any, receiver: Receiver) -> str:
    """Settings saved as a block whose notify_block posts to the local receiver."""
    from blocks.notifications import save_webhook_block

    settings.notify_block = save_webhook_block(unique("hook"), receiver.url)
    name = unique("settings")
    settings.save(name, overwrite=True)
    return name


def failing_flow() -> Any:
    from flows.hooks import backstop_flow

    @backstop_flow(name="backstop-test-failure")
    def fails_on_purpose(marker: str, settings_block: str = "default") -> None:
        raise RuntimeError(f"broken on purpose {marker}")

    return fails_on_purpose


def test_failure_hook_posts_to_the_webhook(notifying_settings: str, receiver: Receiver) -> None:
    marker = unique("m")
    state = failing_flow()(marker, settings_block=notifying_settings, return_state=True)
    assert state.is_failed()
    post = receiver.wait_for(marker, timeout=5)
    assert post is not None, f"no notification received; got {receiver.posts}"
    assert post["subject"] == "Backstop: backstop-test-failure Failed"
    assert f"broken on purpose {marker}" in post["text"]
    assert len([p for p in receiver.posts if marker in json.dumps(p)]) == 1  # one run, one alert


def test_a_run_the_failure_automation_covers_alerts_once(notifying_settings: str, receiver: Receiver) -> None:
    """A deployment's run (tagged `backstop`) fails: the automation alerts, the hook stays quiet."""
    from prefect import tags

    from blocks.settings import load_settings
    from deployments.automations import create_automations
    from deployments.spec import load_spec
    from flows.hooks import TAG

    create_automations(load_settings(notifying_settings), load_spec())
    marker = unique("once")
    with tags(TAG):
        state = failing_flow()(marker, settings_block=notifying_settings, return_state=True)
    assert state.is_failed()  # the hook has run by now (in this process, before the call returned)
    post = receiver.wait_for(marker, timeout=60)  # the server's automation: seconds, more when loaded
    assert post is not None, f"the automation did not post within 60 s; got {receiver.posts}"
    assert "entered Failed" in post["text"]
    assert len([p for p in receiver.posts if marker in json.dumps(p)]) == 1


def test_hook_with_no_notify_block_does_not_hide_the_failure(saved_settings: str) -> None:
    state = failing_flow()("x", settings_block=saved_settings, return_state=True)
    assert state.is_failed()
    assert "broken on purpose x" in (state.message or "")


def test_each_group_of_composer_parts_has_its_own_staleness_alert_on_its_own_validations(
    notifying_settings: str,
) -> None:
    """Hourly metadata validations must not keep quiet an alert about DAG backups that stopped: the
    DAGs and config (validated after the daily backup) and the metadata (after the hourly one) are
    watched apart, each within its RPO, and a part's RPO changed in the settings is followed."""
    from prefect.client.orchestration import get_client

    from blocks.settings import load_settings
    from deployments.automations import (
        create_automations,
        follow_objectives,
        notification_block_id,
        replace_automation,
        staleness_automation,
    )
    from deployments.spec import load_spec

    settings = load_settings(notifying_settings)
    block_id = notification_block_id(settings.notify_block or "")
    replace_automation(
        staleness_automation("composer", ["composer-validate"], 1, block_id)
    )  # an older deploy's
    made = create_automations(settings, load_spec())
    with get_client(sync_client=True) as client:
        dags = client.read_automation(made["backstop-stale-composer-dags-config"])
        metadata = client.read_automation(made["backstop-stale-composer-metadata"])
        assert not client.read_automations_by_name("backstop-stale-composer")  # the whole-component one went
    assert dags is not None and metadata is not None
    assert dags.trigger.within == timedelta(hours=24)  # type: ignore[union-attr]
    assert dags.trigger.match_related["prefect.resource.name"] == ["composer-dags-validate"]  # type: ignore[union-attr,index]
    assert metadata.trigger.within == timedelta(hours=1)  # type: ignore[union-attr]
    assert metadata.trigger.match_related["prefect.resource.name"] == ["composer-metadata-validate"]  # type: ignore[union-attr,index]

    composer = settings.objectives_for("composer")
    settings.objectives["composer"] = composer.model_copy(
        update={"part_rpo_hours": {"dags": 12, "config": 24}}
    )
    assert follow_objectives(settings, ["composer"]) == [
        ("backstop-stale-composer-dags-config", 12.0),
        ("backstop-stale-composer-metadata", 1.0),
    ]
    with get_client(sync_client=True) as client:
        (dags,) = client.read_automations_by_name("backstop-stale-composer-dags-config")
    assert dags.trigger.within == timedelta(hours=12)  # type: ignore[union-attr]


def test_failure_automation_is_created_and_posts(notifying_settings: str, receiver: Receiver) -> None:
    from prefect.client.orchestration import get_client

    from blocks.settings import load_settings
    from deployments.automations import create_automations
    from deployments.spec import load_spec

    tag = unique("tag")
    made = create_automations(load_settings(notifying_settings), load_spec(), tag=tag)
    with get_client(sync_client=True) as client:
        failed = client.read_automation(made[f"backstop-flow-run-failed-{tag}"])
        stale = client.read_automation(made["backstop-stale-gcs"])
    assert failed is not None and failed.enabled
    assert failed.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert stale is not None and stale.trigger.posture == "Proactive"
    assert stale.trigger.within == timedelta(hours=24)  # the operations plan's RPO for Cloud Storage
    # a backup counts once it validated: the trigger watches the validation deployment
    assert set(stale.trigger.match_related["prefect.resource.name"]) == {"gcs-validate"}

    # a failed run tagged for Backstop makes the server post through the same block
    from prefect import tags

    marker = unique("auto")
    with tags(tag):
        failing_flow()(marker, settings_block="no-such-settings", return_state=True)
    post = receiver.wait_for("entered Failed", timeout=60)
    assert post is not None, f"the automation did not post within 60 s; got {receiver.posts}"
    assert post["subject"].startswith("Backstop: backstop-test-failure run ")


def test_health_reports_a_stale_backup(saved_settings: str, settings: Any, store: Any) -> None:
    from flows.health import health_report

    old = datetime.now(UTC) - timedelta(hours=30, minutes=2)
    manifest = BackupManifest(
        backup_id=f"{old:%Y%m%dT%H%M%S}Z-abcdef",
        component="gcs",
        source="stale-bucket",
        started_at=old,
        finished_at=old + timedelta(minutes=2),
        status="validated",
        entries=[ManifestEntry(name="a.txt", stored_key="pool/gcs/stale-bucket/a", size=10)],
    )
    index.write_manifest(store, manifest)
    with pytest.raises(
        ObjectiveBreached,
        match=r"gcs/stale-bucket: last validated backup .* is 30\.0 h old, over the RPO of 24 h",
    ):
        health_report(settings_block=saved_settings)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        (report,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["health-report"])),
            limit=1,
            sort=ArtifactSort.CREATED_DESC,
        )
    assert "1 of 1 source(s) breach an objective" in report.data
    assert "| breach | gcs | stale-bucket |" in report.data


def test_require_approval_denies_without_yes_outside_a_flow() -> None:
    from tasks.engine.approval import require_approval

    require_approval("overwrite gs://x", yes=True)
    with pytest.raises(Conflict, match="overwrite gs://x: not approved"):
        require_approval("overwrite gs://x", yes=False)


@pytest.mark.parametrize("answer", [True, False])
def test_require_approval_pauses_for_an_answer(prefect_harness: None, answer: bool) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.flow_runs import resume_flow_run

    from tasks.engine.approval import require_approval

    @flow(name="approval-test")
    def guarded() -> str:
        require_approval("overwrite gs://orig", yes=False, timeout=30, poll_interval=1)
        return "overwrote"

    outcome: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: outcome.update(state=guarded(return_state=True)))
    runner.start()
    deadline = time.monotonic() + 20
    paused = None
    with get_client(sync_client=True) as client:
        while paused is None and time.monotonic() < deadline:
            # this test's runs only: the session's harness holds many other runs by now
            mine = FlowFilter(name=FlowFilterName(any_=["approval-test"]))
            runs = client.read_flow_runs(flow_filter=mine, limit=20)
            paused = next((r for r in runs if r.state and r.state.is_paused() and r.name and r.flow_id), None)
            time.sleep(0.3)
    assert paused is not None, "the flow run never paused for approval"
    resume_flow_run(paused.id, run_input={"approve": answer})
    runner.join(30)
    state = outcome["state"]
    if answer:
        assert state.is_completed() and state.result() == "overwrote"
    else:
        assert state.is_failed() and "overwrite gs://orig: approval denied" in (state.message or "")


# -- the deployment spec --------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]
EXPECTED_TIMES = {
    "composer-dags-daily-backup": "15 0 * * *",
    "configs-daily-backup": "30 0 * * *",
    "bigquery-daily-backup": "0 1 * * *",
    "gcs-daily-backup": "0 2 * * *",
    "gcs-incremental-backup": "0 */6 * * *",
    "gke-daily-backup": "0 3 * * *",
    "composer-metadata-hourly-backup": "5 * * * *",
    "weekly-retention": "0 4 * * 0",
    "monthly-restore-drill": "0 5 1 * *",
    "daily-health-report": "0 6 * * *",
    "daily-secondary-copy": "0 7 * * *",
    "weekly-preflight": "30 4 * * 0",
    "weekly-revalidate-kept-backups": "30 5 * * 6",
}


def spec_deployments() -> list[dict[str, Any]]:
    from deployments.spec import load_spec

    return list(load_spec(ROOT / "prefect.yaml")["deployments"])


def test_schedules_are_utc_cron_and_staggered() -> None:
    from prefect.client.schemas.schedules import CronSchedule

    found = {}
    for deployment in spec_deployments():
        assert deployment["work_pool"]["name"] == "backstop-process"
        for schedule in deployment.get("schedules", []):
            assert schedule["timezone"] == "UTC"
            CronSchedule(cron=schedule["cron"], timezone="UTC")  # what `prefect deploy` accepts
            found[deployment["name"]] = schedule["cron"]
    assert found == EXPECTED_TIMES
    # no two daily jobs start at the same minute
    start = datetime(2026, 1, 5, tzinfo=UTC)
    firsts = [next(CronSim(c, start)) for n, c in found.items() if "hourly" not in n and "*/" not in c]
    assert len({(t.hour, t.minute) for t in firsts}) == len(firsts)
    for deployment in spec_deployments():
        if deployment["name"].endswith("-restore"):
            assert not deployment.get("schedules"), deployment["name"]
        if deployment["name"].endswith("-validate"):
            (trigger,) = deployment["triggers"]
            assert trigger["expect"] == ["prefect.flow-run.Completed"]


@pytest.mark.parametrize("deployment", spec_deployments(), ids=lambda d: d["name"])
def test_entrypoint_resolves_to_a_flow(deployment: dict[str, Any]) -> None:
    import importlib

    from prefect import Flow

    path, name = deployment["entrypoint"].split(":")
    assert (ROOT / path).exists(), f"{deployment['name']}: {path} does not exist"
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    assert isinstance(getattr(module, name), Flow), f"{deployment['entrypoint']} is not a flow"


def test_bootstrap_registers_blocks_saves_settings_and_creates_the_pool(
    prefect_harness: None, settings: Any
) -> None:
    from prefect.client.orchestration import get_client

    from blocks.settings import load_settings
    from deployments.bootstrap import bootstrap

    name = unique("boot")
    first = bootstrap(name, settings)
    assert "backstop-settings" in first["block_types"] and first["settings_saved"]
    assert load_settings(name).backup_bucket == settings.backup_bucket
    again = bootstrap(name)  # re-running keeps the saved settings and the pool
    assert not again["settings_saved"] and not again["work_pool_created"]
    assert load_settings(name).backup_bucket == settings.backup_bucket
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool("backstop-process")
    assert pool.type == "process" and "command" in pool.base_job_template["job_configuration"]
    assert first["backup_buckets_created"] == []  # the fixture made them already


def test_bootstrap_creates_missing_backup_buckets(prefect_harness: None, settings: Any, gcs: Any) -> None:
    from deployments.bootstrap import bootstrap

    fresh = settings.model_copy(
        update={"backup_bucket": unique("newbk"), "secondary_bucket": unique("newbk-dr")}
    )
    result = bootstrap(unique("boot"), fresh)
    assert result["backup_buckets_created"] == [fresh.backup_bucket, fresh.secondary_bucket]
    assert (
        gcs.lookup_bucket(fresh.backup_bucket) is not None
        and gcs.lookup_bucket(fresh.secondary_bucket) is not None
    )


def test_staleness_automation_fires_when_no_backup_completes(
    notifying_settings: str, receiver: Receiver
) -> None:
    from blocks.settings import load_settings
    from deployments.automations import notification_block_id, replace_automation, staleness_automation

    component = unique("comp")
    block_id = notification_block_id(load_settings(notifying_settings).notify_block or "")
    # the shortest window Prefect allows for a proactive trigger (10 s) stands in for the RPO
    started = time.monotonic()
    replace_automation(staleness_automation(component, [f"{component}-validate"], 10 / 3600, block_id))
    post = receiver.wait_for(f"no {component} backup within its RPO", timeout=60)
    assert post is not None, f"the staleness automation did not post; got {receiver.posts}"
    assert (
        f"No validated backup of {component}: no validation run ({component}-validate) completed"
        in post["text"]
    )
    assert time.monotonic() - started >= 9


def test_deploying_again_keeps_an_unchanged_automation_and_replaces_a_changed_one(
    notifying_settings: str,
) -> None:
    """A staleness automation made again would start its window afresh (Prefect's proactive
    trigger): a `backstop deploy` re-run keeps an unchanged one, so the RPO is not restarted."""
    from prefect.client.orchestration import get_client

    from blocks.settings import load_settings
    from deployments.automations import notification_block_id, replace_automation, staleness_automation

    component = unique("comp")
    block_id = notification_block_id(load_settings(notifying_settings).notify_block or "")
    first = replace_automation(staleness_automation(component, [f"{component}-validate"], 24, block_id))
    again = replace_automation(staleness_automation(component, [f"{component}-validate"], 24, block_id))
    assert again == first
    changed = replace_automation(staleness_automation(component, [f"{component}-validate"], 12, block_id))
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(f"backstop-stale-{component}")
    assert [a.id for a in found] == [changed] and changed != first
    assert found[0].trigger.within == timedelta(hours=12)  # type: ignore[union-attr]
