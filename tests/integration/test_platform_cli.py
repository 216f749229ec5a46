"""The unattended path, as a user runs it: `backstop up`, bootstrap, seed, deploy, a deployment run by
the real process worker, its validation run from the trigger, a failure alert at the local receiver,
and what the CLI says when the platform is down.

Everything runs the real `backstop` command in a subprocess against its own BACKSTOP_HOME, its own
HOME and free ports, so it never meets a platform someone is running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backstop.platform import DEFAULT_PORTS, EMULATOR_ENV, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BACKSTOP = str(Path(sys.executable).with_name("backstop"))
BACKUP_ID = "20261124T220000Z-1a2b3c"


def clean_env(home: Path, user_home: Path) -> dict[str, str]:
    """A user's shell: nothing of this test process's emulators or Prefect, every port free."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "BACKSTOP_", "BQEMU_")) and k not in EMULATOR_ENV
    }
    env |= {"BACKSTOP_HOME": str(home), "HOME": str(user_home), "DO_NOT_TRACK": "1"}
    env["PREFECT_WORKER_QUERY_SECONDS"] = "2"  # the worker `backstop up` starts polls every 5 s by default
    env |= {f"BACKSTOP_{name.upper()}_PORT": str(free_port()) for name in DEFAULT_PORTS}
    return env


def run(env: dict[str, str], *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BACKSTOP, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).parents[2],
    )


def ok(env: dict[str, str], *argv: str, timeout: float = 300) -> str:
    done = run(env, *argv, timeout=timeout)
    assert done.returncode == 0, f"backstop {' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


def assert_one_error_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert done.stdout == ""


# -- with nothing running --------------------------------------------------------------------
def test_platform_down_is_one_error_line_and_nothing_in_home(tmp_path: Path) -> None:
    user_home = tmp_path / "home"
    user_home.mkdir()
    env = clean_env(tmp_path / "bk", user_home)
    api = f"http://127.0.0.1:{env['BACKSTOP_PREFECT_PORT']}/api"
    started = time.monotonic()
    assert_one_error_line(
        run(env, "validate", BACKUP_ID), f"Prefect server not reachable at {api}", "backstop up"
    )
    # a shell that sourced the env of a platform since stopped: the same one line
    stale = env | {"PREFECT_API_URL": api, "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}"}
    assert_one_error_line(run(stale, "list"), "not reachable at", "start it with `backstop up`")
    assert_one_error_line(run(env, "alerts"), "alert receiver not running")
    assert time.monotonic() - started < 60  # no temporary Prefect server, no minutes of retries
    assert list(user_home.iterdir()) == []  # nothing written under the user's home


def test_mistyped_flag_and_closed_pipe(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "bk", tmp_path)
    done = run(env, "list", "--compnent", "gcs")
    assert_one_error_line(done, "unrecognized arguments: --compnent gcs", "did you mean --component?")
    assert_one_error_line(run(env, "helth"), "did you mean health?")
    # the reader is gone before the command writes (`backstop status | head -0`): it ends quietly
    child = subprocess.Popen([BACKSTOP, "status"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    assert child.wait(60) == 0
    assert child.stderr.read() == b""


# -- the whole unattended path ---------------------------------------------------------------
@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`backstop up` in a fresh BACKSTOP_HOME on free ports; `backstop down` afterwards."""
    root = tmp_path_factory.mktemp("unattended")
    (root / "home").mkdir()
    env = clean_env(root / "bk", root / "home")
    try:
        ok(env, "up")
        yield env
    finally:
        run(env, "down")


def source_env(env: dict[str, str]) -> dict[str, str]:
    """`source .backstop/env`."""
    sourced = dict(env)
    for line in (Path(env["BACKSTOP_HOME"]) / "env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        sourced[key] = value
    return sourced


def status(env: dict[str, str]) -> dict[str, int]:
    services = json.loads(ok(env, "status", "--json"))["services"]
    return {name: int(info["pid"]) for name, info in services.items()}


class Api:
    """The few Prefect REST calls a person makes from the UI: run a deployment, watch its runs."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url.rstrip("/") + "/", timeout=30)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One REST call; a 503 (a busy server) is retried, as Prefect's own client does."""
        for attempt in range(6):
            response = self.http.request(method, path, **kwargs)
            if response.status_code != 503 or attempt == 5:
                response.raise_for_status()
                return response.json()
            time.sleep(1 + attempt)

    def deployment_id(self, flow: str, name: str) -> str:
        return str(self.call("GET", f"deployments/name/{flow}/{name}")["id"])

    def run(self, flow: str, name: str, parameters: dict[str, Any] | None = None) -> str:
        deployment = self.deployment_id(flow, name)
        body = {"parameters": parameters or {}}
        return str(self.call("POST", f"deployments/{deployment}/create_flow_run", json=body)["id"])

    def wait_final(self, run_id: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = dict(self.call("GET", f"flow_runs/{run_id}"))
            if (
                run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
                or time.monotonic() > deadline
            ):
                return run
            time.sleep(1)

    def runs_of(self, flow: str, name: str) -> list[dict[str, Any]]:
        body = {"deployments": {"id": {"any_": [self.deployment_id(flow, name)]}}}
        return list(self.call("POST", "flow_runs/filter", json=body))


def wait_for(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    return check()


def test_readme_order_worker_runs_a_deployment_and_a_failure_alerts(user: dict[str, str]) -> None:
    first = status(user)
    assert set(first) == {"gcs", "bigquery", "prefect", "gke", "airflow", "composer", "alerts", "worker"}
    again = ok(user, "up")  # harmless a second time: same processes, same ports
    assert "worker: already running" in again and status(user) == first

    shell = source_env(user)
    boot = json.loads(ok(shell, "bootstrap", "--json"))
    assert boot["notify_block"] == "custom-webhook/backstop-local-alerts"  # the local receiver by default
    assert "STORAGE_EMULATOR_HOST" in boot["work_pool_env"]
    seeded = json.loads(ok(shell, "seed", "--objects", "20", "--rows", "200", "--json"))
    assert [row["component"] for row in seeded] == ["gcs", "bigquery", "configs", "composer", "gke"]
    settings = json.loads(ok(shell, "settings", "show", "--json"))
    assert "demo-raw-data" in settings["gcs_sources"] and "demo_sales" in settings["bigquery_datasets"]
    deployed = json.loads(ok(shell, "deploy", "--json"))
    assert "backstop-flow-run-failed" in deployed["automations"]  # alerts exist on a fresh setup

    # the worker runs the scheduled backup as the CLI would, and the trigger runs its validation;
    # a second run of the same deployment on a bucket that does not exist fails
    api = Api(shell["PREFECT_API_URL"])
    backup = api.wait_final(api.run("backup-gcs", "gcs-daily-backup"), timeout=120)
    assert backup["state"]["type"] == "COMPLETED", backup["state"]
    failing = api.run("backup-gcs", "gcs-daily-backup", {"sources": ["no-such-bucket-e2e"]})
    validations = wait_for(
        lambda: [r for r in api.runs_of("validate-gcs", "gcs-validate") if r["state"]["type"] == "COMPLETED"],
        timeout=90,
    )
    assert validations, f"no completed gcs-validate run: {api.runs_of('validate-gcs', 'gcs-validate')}"
    listed = json.loads(ok(shell, "list", "--component", "gcs", "--json"))["backups"]
    assert [(b["source"], b["status"]) for b in listed] == [("demo-raw-data", "validated")]

    # the failure reaches the local receiver and `backstop alerts` shows it
    failed = api.wait_final(failing, 120)
    assert failed["state"]["type"] == "FAILED"

    def alerted() -> list[dict[str, Any]]:
        messages = json.loads(ok(shell, "alerts", "--json"))
        return [
            m
            for m in messages
            if "no-such-bucket-e2e" in m["text"] and "deployment gcs-daily-backup" in m["text"]
        ]

    (alert,) = wait_for(alerted, timeout=60)
    assert alert["subject"].startswith("Backstop: backup-gcs run ") and alert["subject"].endswith(" Failed")
    assert f"{failed['name']}" in alert["text"]

    # once the bucket is a source the settings schedule, health fails naming it and why its backup failed
    ok(shell, "settings", "set", "gcs_sources=[demo-raw-data, no-such-bucket-e2e]")
    health = run(shell, "health")
    assert health.returncode == 2 and "gcs/no-such-bucket-e2e" in health.stderr
    assert "latest backup run failed" in health.stderr and "does not exist" in health.stderr
    assert status(user) == first


def test_settings_edits_are_validated_and_a_first_setup_names_its_buckets(
    user: dict[str, str], tmp_path: Path
) -> None:
    shell = source_env(user)
    ok(shell, "settings", "set", "retention.keep_last=5", "objectives.gcs.rpo_hours=12")
    assert_one_error_line(
        run(shell, "settings", "set", "retention.keep_last=-1"),
        "settings field 'retention.keep_last': Input should be greater than or equal to 0",
    )
    exported = tmp_path / "settings.yaml"
    ok(shell, "settings", "export", str(exported))
    exported.write_text(exported.read_text().replace("keep_last: 5", "keep_last: 4") + "keep_forever: true\n")
    assert_one_error_line(run(shell, "settings", "import", str(exported)), "'keep_forever': no such field")
    exported.write_text(exported.read_text().replace("keep_forever: true\n", ""))
    ok(shell, "settings", "import", str(exported))

    # a first setup as against Google Cloud, into its own settings block, alerts to a webhook
    receiver = shell["BACKSTOP_ALERTS_URL"] + "/elsewhere"
    argv = ["--settings", "first", "bootstrap", "--project", "p-first", "--backup-bucket", "first-backups"]
    argv += ["--secondary-bucket", "first-backups-dr", "--location", "EU", "--notify", f"webhook:{receiver}"]
    result = json.loads(ok(shell, *argv, "--json"))
    assert result["backup_buckets_created"] == ["first-backups", "first-backups-dr"]
    assert result["notify_block"] == "custom-webhook/backstop-alerts"
    first = json.loads(ok(shell, "--settings", "first", "settings", "show", "--json"))
    assert (first["project"], first["backup_bucket"], first["location"]) == ("p-first", "first-backups", "EU")
    assert first["notify_block"] == "custom-webhook/backstop-alerts"
    shown = json.loads(ok(shell, "settings", "show", "--json"))  # set, then exported, edited, imported
    assert shown["retention"]["keep_last"] == 4 and shown["objectives"]["gcs"]["rpo_hours"] == 12
    assert shown["notify_block"] == "custom-webhook/backstop-local-alerts"  # untouched by the first setup


# The demo's own steps, cut to the configuration-files round trip to stay fast; everything else of
# run_demo (its platform, ports, Prefect server, settings, stopping) is what `backstop demo` runs.
SHORT_DEMO = (
    "import sys; from pathlib import Path; import backstop.demo as demo; "
    "demo.STEPS = [step for step in demo.STEPS if step[0] == 'Configuration files']; "
    "sys.exit(demo.run_demo(Path(sys.argv[1])))"
)


def test_demo_with_the_platform_up_leaves_settings_and_processes_alone(user: dict[str, str]) -> None:
    shell = source_env(user)  # the worst case: a shell pointed at the user's platform
    settings = ok(shell, "settings", "show", "--json")
    processes = status(user)
    done = subprocess.run(
        [sys.executable, "-c", SHORT_DEMO, user["BACKSTOP_HOME"]],
        env=shell,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "byte-identical" in done.stdout
    assert ok(shell, "settings", "show", "--json") == settings
    assert status(user) == processes
    assert json.loads(ok(user, "status", "--json"))["demo"] == {}  # the demo stopped what it started


def test_down_then_validate_is_one_error_line(user: dict[str, str]) -> None:
    shell = source_env(user)
    ok(user, "down")
    assert status(user) == {}
    api = shell["PREFECT_API_URL"]
    assert_one_error_line(run(shell, "validate", BACKUP_ID), f"Prefect server not reachable at {api}")
    assert_one_error_line(run(user, "validate", BACKUP_ID), f"Prefect server not reachable at {api}")
