"""`backstop recover --as-of T`: the whole platform back to a point between two backup rounds.

All five components run on the local platform (fake-gcs-server, bqemulator, the local Composer,
Airflow and Backup for GKE servers), seeded as the contract suite seeds them. Nothing is mocked:
the failed step is the Backup for GKE server refusing the project (as it does for a missing
permission), and the notifications are POSTed to a local HTTP receiver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backstop.core.manifest import utcnow
from backstop_cli.main import main
from localdev.platform import PROJECT
from tests.conftest import unique
from tests.contract.conftest import airflow_secrets, composer_servers, gke_server  # noqa: F401 (fixtures)
from tests.contract.subjects.bigquery import BigQuerySubject
from tests.contract.subjects.composer import ComposerSubject
from tests.contract.subjects.configs import ConfigsSubject
from tests.contract.subjects.gcs import GcsSubject
from tests.contract.subjects.gke import GkeSubject
from tests.flows.test_health_and_notify import Receiver

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    local = Receiver()
    yield local
    local.close()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr().out
    return code, json.loads(out[out.index("{") :])


def change(subjects: dict[str, Any], sources: dict[str, str], server: Any) -> None:
    """Change data in every component (a GKE namespace grows: one that vanished would fail validation)."""
    for name, subject in subjects.items():
        subject.change(sources[name])
    cluster = subjects["gke"].full(sources["gke"])
    namespaces = server.namespaces(cluster)
    namespaces["shop"]["resources"] += 10
    server.add_cluster(cluster, namespaces)


def test_recover_as_of_between_two_rounds_resumes_after_a_failed_step(
    gcs: Any,
    bq: Any,
    settings: Any,
    store: Any,
    composer_servers: None,  # noqa: F811
    gke_server: Any,  # noqa: F811
    airflow_secrets: dict[str, str],  # noqa: F811
    receiver: Receiver,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from blocks.notifications import save_webhook_block
    from blocks.recovery import BigQueryCheck, GcsPrefixCheck, RecoveryChecks
    from tasks.catalog import backups as catalog
    from tasks.components.composer.component import ComposerSettings
    from tasks.engine import lifecycle
    from tasks.operations.recover import list_operations

    settings.composer = ComposerSettings(
        airflow_auth_block=airflow_secrets["auth"], encryption_key_block=airflow_secrets["key"]
    )
    subjects: dict[str, Any] = {
        "configs": ConfigsSubject(settings, tmp_path),
        "bigquery": BigQuerySubject(bq, settings),
        "gcs": GcsSubject(gcs, settings),
        "composer": ComposerSubject(gcs, settings),
        "gke": GkeSubject(gke_server, settings),
    }
    try:
        sources = {name: subject.seed() for name, subject in subjects.items()}
        settings.gcs_sources = [sources["gcs"]]
        settings.bigquery_datasets = [sources["bigquery"]]
        settings.recovery_checks = RecoveryChecks(
            bigquery=[
                BigQueryCheck(
                    dataset=sources["bigquery"],
                    sql=f"SELECT COUNT(*) FROM `{PROJECT}.{{dataset}}.people`",
                    expected="20",
                )
            ],
            gcs=[GcsPrefixCheck(bucket=sources["gcs"], prefix="data/", min_objects=6)],
        )
        settings.notify_block = save_webhook_block(unique("hook"), receiver.url)
        block = unique("settings")
        settings.save(block, overwrite=True)

        first = {name: subjects[name].state(source) for name, source in sources.items()}
        round_one = {
            name: lifecycle.backup(name, settings, source, store=store).backup_id
            for name, source in sources.items()
        }
        as_of = utcnow()
        change(subjects, sources, gke_server)
        for name in ("configs", "bigquery", "gcs", "composer"):  # appeared after T: recovery deletes it
            subjects[name].add_in_scope(sources[name])
        for name, source in sources.items():
            assert lifecycle.backup(name, settings, source, store=store).status == "validated"
        gcs.bucket(sources["gcs"]).blob("data/part-0.csv").delete()  # and deleted after the second
        bq.query(f"DELETE FROM `{PROJECT}.{sources['bigquery']}.people` WHERE id > 15").result(timeout=30)
        (tmp_path / sources["configs"] / "dags" / "etl.py").unlink()
        gke_server.delete_namespace(subjects["gke"].full(sources["gke"]), "payments")
        assert all(subjects[n].state(s) != first[n] for n, s in sources.items() if n != "composer")

        # GKE refuses the project once: four steps complete, the fifth fails, the rest is named.
        gke_server.deny(PROJECT)
        try:
            code, failed = run_cli(
                capsys, "--settings", block, "recover", "--as-of", as_of.isoformat(), "--yes",
                "--reason", "bad deploy", "--json",
            )  # fmt: skip
        finally:
            gke_server.denied.discard(PROJECT)
        assert code == 1 and failed["outcome"] == "failed"
        assert [s["status"] for s in failed["steps"]] == ["succeeded"] * 4 + ["failed"]
        assert [s["component"] for s in failed["steps"]] == ["configs", "bigquery", "gcs", "composer", "gke"]
        assert f"backstop recover --resume {failed['operation_id']}" in failed["message"]
        assert receiver.wait_for(f"{failed['operation_id']} failed", 10)

        code, done = run_cli(
            capsys, "--settings", block, "recover", "--resume", failed["operation_id"], "--yes", "--json"
        )
        assert code == 0 and done["outcome"] == "succeeded", done["message"]
        assert done["operation_id"] == failed["operation_id"] and done["resumed"] == 1
        assert done["steps"][:4] == failed["steps"][:4]  # completed steps were not redone
        assert {p["component"]: p["backup_id"] for p in done["plan"]} == round_one
        checks = [c for s in done["steps"] for c in s["checks"]]
        assert len(checks) == 7 and all(c["passed"] for c in checks), checks
        assert done["approval"].startswith("approved with --yes")

        for name, source in sources.items():
            assert subjects[name].state(source) == first[name], name

        assert [o.operation_id for o in list_operations(store)] == [done["operation_id"]]
        restores = [r for r in catalog.list_runs(store) if r.kind == "restore"]
        outcomes = sorted((r.component, r.outcome) for r in restores)
        assert outcomes == sorted(
            [(n, "succeeded") for n in sources] + [("gke", "failed")]
        )  # one restore per step, the failed one once more
        assert all(
            "covered by the approval of operation" in r.details.get("approval", "")
            for r in restores
            if not r.failed
        )
        assert receiver.wait_for(f"{done['operation_id']} started", 10)
        assert receiver.wait_for(f"{done['operation_id']} succeeded", 10)

        code, listed = run_cli(capsys, "--settings", block, "restores", "--json")
        assert code == 0 and [o["operation_id"] for o in listed["operations"]] == [done["operation_id"]]
    finally:
        subjects["composer"].stop()


def test_dry_run_plans_only_and_the_platform_drill_recovers_into_scratch_and_cleans_up(
    gcs: Any, bq: Any, settings: Any, store: Any, prefect_harness: None, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tasks.engine import lifecycle
    from tasks.operations.recover import list_operations

    subjects: dict[str, Any] = {
        "configs": ConfigsSubject(settings, tmp_path),
        "bigquery": BigQuerySubject(bq, settings),
        "gcs": GcsSubject(gcs, settings),
    }
    sources = {name: subject.seed() for name, subject in subjects.items()}
    settings.gcs_sources, settings.bigquery_datasets = [sources["gcs"]], [sources["bigquery"]]
    block = unique("settings")
    settings.save(block, overwrite=True)
    first = {name: subjects[name].state(source) for name, source in sources.items()}
    for name, source in sources.items():
        lifecycle.backup(name, settings, source, store=store)
    code, planned = run_cli(capsys, "--settings", block, "recover", "--as-of", "now", "--dry-run", "--json")
    assert (
        code == 0 and [s["overwrites"] for s in planned["steps"]] == ["replaces 0, deletes 0, creates 0"] * 3
    )
    # a time ahead (a typo of the year) is refused, not planned as the newest state
    assert main(["--settings", block, "recover", "--as-of", "2099-01-01", "--dry-run"]) == 2
    assert "2099-01-01T00:00:00+00:00 is in the future" in capsys.readouterr().err
    subjects["gcs"].change(sources["gcs"])
    subjects["gcs"].add_in_scope(sources["gcs"])

    code, planned = run_cli(capsys, "--settings", block, "recover", "--as-of", "now", "--dry-run", "--json")
    assert code == 0 and planned["outcome"] == "planned"
    assert [s["status"] for s in planned["steps"]] == ["pending"] * 3
    gcs_step = next(s for s in planned["steps"] if s["component"] == "gcs")
    assert gcs_step["overwrites"] == "replaces 1, deletes 1, creates 0"  # what the approval would cover
    code, kept = run_cli(
        capsys, "--settings", block, "recover", "--as-of", "now", "--dry-run", "--keep-newer", "--json"
    )
    assert code == 0 and not kept["exact"]
    assert [s["overwrites"] for s in kept["steps"] if s["component"] == "gcs"] == [
        "replaces 1, deletes 0, creates 0"
    ]
    assert subjects["gcs"].state(sources["gcs"]) != first["gcs"]  # nothing restored

    assert main(["--settings", block, "recover", "--as-of", "now", "--reason", "no approval"]) == 2
    assert "not approved" in capsys.readouterr().err
    assert subjects["gcs"].state(sources["gcs"]) != first["gcs"]  # refused before anything was written
    refused = [o for o in list_operations(store) if o.reason == "no approval"]
    assert len(refused) == 1 and refused[0].outcome == "failed" and "not approved" in refused[0].message

    code, drill = run_cli(capsys, "--settings", block, "drill", "--platform", "--json")
    assert code == 0 and drill["passed"], drill["problems"]
    assert drill["steps"] == 3 and drill["cleaned_up"] and drill["rto_minutes"] == 240
    assert all(
        subjects[n].gone(t) for n, t in zip(["configs", "bigquery", "gcs"], drill["targets"], strict=True)
    )
    assert subjects["configs"].state(sources["configs"]) == first["configs"]  # the originals were only read
    operations = {o.operation_id: o for o in list_operations(store)}
    assert operations[drill["operation_id"]].reason == "platform drill"
    assert not operations[drill["operation_id"]].into_original
