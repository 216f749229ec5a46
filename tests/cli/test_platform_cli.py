"""The unattended path, as a user runs it: `backstop up`, bootstrap, seed, deploy, a deployment run by
the real process worker, its validation run from the trigger, a failure alert at the local receiver,
the staleness alert, and what the CLI says when the platform is down.

Everything runs the real `backstop` command in a subprocess against its own BACKSTOP_HOME, its own
HOME and free ports, so it never meets a platform someone is running. The tests that need a running
platform share one (`backstop up` costs about half a minute); the one that stops it runs last.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from localdev.platform import DEFAULT_PORTS, EMULATOR_ENV, free_port

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
    # another home's platform answers on the default Prefect port: still not this home's server
    with socket.create_server(("127.0.0.1", 0)) as other:
        taken = env | {"BACKSTOP_PREFECT_PORT": str(other.getsockname()[1])}
        for argv in (["preflight"], ["backup", "gcs", "--bucket", "b"]):
            assert_one_error_line(
                run(taken, *argv), "no Prefect server: PREFECT_API_URL is not set", "backstop up"
            )
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
    """`backstop up` in a fresh BACKSTOP_HOME on free ports; `backstop down` afterwards unless the last
    test has stopped it already."""
    from localdev.platform import LocalPlatform

    root = tmp_path_factory.mktemp("unattended")
    (root / "home").mkdir()
    env = clean_env(root / "bk", root / "home")
    try:
        ok(env, "up")
        yield env
    finally:
        if LocalPlatform(Path(env["BACKSTOP_HOME"])).running():
            run(env, "down")


@pytest.fixture(scope="module")
def seeded(user: dict[str, str]) -> dict[str, Any]:
    """`backstop bootstrap`, then `backstop seed`, in a shell that sourced the env; their JSON output."""
    shell = source_env(user)
    boot = json.loads(ok(shell, "bootstrap", "--json"))
    rows = json.loads(ok(shell, "seed", "--objects", "20", "--rows", "200", "--json"))
    return {"bootstrap": boot, "seed": rows}


def source_env(env: dict[str, str]) -> dict[str, str]:
    """`source .backstop/env`."""
    sourced = dict(env)
    for line in (Path(env["BACKSTOP_HOME"]) / "env").read_text().splitlines():
        if not line.startswith("export "):
            continue
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


def received(shell: dict[str, str]) -> list[dict[str, Any]]:
    """What the local alert receiver got: what `backstop alerts --json` prints, read over HTTP so that a
    poll does not start a CLI process (about 3 s each) every second."""
    return list(httpx.get(shell["BACKSTOP_ALERTS_URL"] + "/messages", timeout=10).json())


def wait_for(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    return check()


def test_readme_order_worker_runs_a_deployment_and_a_failure_alerts(
    user: dict[str, str], seeded: dict[str, Any]
) -> None:
    first = status(user)
    assert set(first) == {
        "gcs",
        "bigquery",
        "prefect",
        "gke",
        "airflow",
        "composer",
        "alerts",
        "worker",
        "warm",
    }
    again = ok(user, "up")  # harmless a second time: same processes, same ports
    assert "worker: already running" in again and status(user) == first

    shell = source_env(user)
    boot = seeded["bootstrap"]  # `backstop bootstrap` and `backstop seed` ran in this shell (fixture)
    assert boot["notify_block"] == "custom-webhook/backstop-local-alerts"  # the local receiver by default
    assert "STORAGE_EMULATOR_HOST" in boot["work_pool_env"]
    assert [row["component"] for row in seeded["seed"]] == ["gcs", "bigquery", "configs", "composer", "gke"]
    settings = json.loads(ok(shell, "settings", "show", "--json"))
    assert "demo-raw-data" in settings["gcs_sources"] and "demo_sales" in settings["bigquery_datasets"]
    # the fresh install passes its own weekly preflight: the secondary bucket is not where the primary is
    findings = json.loads(ok(shell, "preflight", "--json"))
    located = {(f["bucket"], f["check"]): f for f in findings if f["check"].endswith("location")}
    assert located[("backstop-backups-dr", "secondary location")]["level"] == "ok", located
    deployed = on_a_terminal(shell, "deploy")  # as the README has it: a progress line, then the table
    assert re.search(r"deploying \d+ deployments", deployed), deployed[-2000:]
    assert "backstop-flow-run-failed" in deployed  # alerts exist on a fresh setup

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
    # the commands ran in children of the warm process `backstop up` started, and say what cold ones do
    warm_log = (Path(user["BACKSTOP_HOME"]) / "logs" / "warm.log").read_text()
    for verbs in ("bootstrap", "seed", "settings show", "preflight", "deploy", "list"):
        assert f"runs backstop {verbs}\n" in warm_log, warm_log
    cold = ok(shell | {"BACKSTOP_WARM": "0"}, "list", "--component", "gcs", "--json")
    assert json.loads(cold)["backups"] == listed

    # the failure reaches the local receiver and `backstop alerts` shows it
    failed = api.wait_final(failing, 120)
    assert failed["state"]["type"] == "FAILED"

    def alerted(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            m
            for m in messages
            if "no-such-bucket-e2e" in m["text"] and "deployment gcs-daily-backup" in m["text"]
        ]

    wait_for(lambda: alerted(received(shell)), timeout=60)
    (alert,) = alerted(json.loads(ok(shell, "alerts", "--json")))
    assert alert["subject"].startswith("Backstop: backup-gcs run ") and alert["subject"].endswith(" Failed")
    assert f"{failed['name']}" in alert["text"]
    # one failed run, one alert: the flow's own hook stays quiet where the automation alerts
    assert [m for m in received(shell) if failed["name"] in m["subject"] + m["text"]] == [alert]

    # a user's mistake is no incident: a restore refused for its input ends "Refused", alerts no one
    backup_id = listed[0]["backup_id"]
    refused = api.run("restore-gcs", "gcs-restore", {"source": "no-such-bucket-e2e"})
    ended = api.wait_final(refused, 120)
    assert (ended["state"]["type"], ended["state"]["name"]) == ("CANCELLED", "Refused"), ended["state"]
    assert "no validated backup of gcs/no-such-bucket-e2e" in ended["state"]["message"]
    assert_one_error_line(
        run(shell, "restore", "gcs", "--bucket", "no-such-bucket-e2e", "--backup-id", backup_id),
        f"backup {backup_id} is a backup of gcs 'demo-raw-data', not of gcs 'no-such-bucket-e2e'",
    )
    restores = [r["id"] for r in api.runs_of("restore-gcs", "gcs-restore")]
    assert restores == [refused]  # the CLI refused before a flow run started
    assert not [m for m in received(shell) if ended["name"] in m["subject"] + m["text"]]

    # once the bucket is a source the settings schedule, health fails naming it and why its backup failed
    ok(shell, "settings", "set", "gcs_sources=[demo-raw-data, no-such-bucket-e2e]")
    health = run(shell, "health")
    assert health.returncode == 2 and "gcs/no-such-bucket-e2e" in health.stderr
    assert "latest backup run failed" in health.stderr and "does not exist" in health.stderr
    assert status(user) == first


def prefect_ui(env: dict[str, str]) -> str:
    return str(json.loads(ok(env, "status", "--json"))["services"]["prefect"]["endpoints"]["PREFECT_UI_URL"])


def test_the_prefect_ui_talks_to_its_own_server_on_a_moved_port(user: dict[str, str]) -> None:
    ui = prefect_ui(user)
    assert ui == f"http://127.0.0.1:{user['BACKSTOP_PREFECT_PORT']}" and not ui.endswith(":4200")
    settings = httpx.get(f"{ui}/ui-settings", timeout=30).json()
    assert settings["api_url"] == f"{ui}/api"  # what the browser calls, not 127.0.0.1:4200


def test_sourcing_the_env_says_it_replaces_an_exported_prefect_home(user: dict[str, str]) -> None:
    env_file = Path(user["BACKSTOP_HOME"]) / "env"
    mine = user | {"PREFECT_HOME": "/somewhere/mine"}
    done = subprocess.run(["bash", "-c", f"source {env_file}; echo $PREFECT_HOME"], env=mine,
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    platform_home = source_env(user)["PREFECT_HOME"]
    assert done.stdout.strip() == platform_home
    assert f"PREFECT_HOME was /somewhere/mine, now {platform_home}" in done.stderr
    unset = {k: v for k, v in user.items() if k != "PREFECT_HOME"}
    quiet = subprocess.run(["bash", "-c", f"source {env_file}"], env=unset, capture_output=True, text=True)
    assert quiet.stderr == ""


def chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def test_the_ui_lists_the_deployments_and_shows_a_restore_run_form_in_headless_chromium(
    user: dict[str, str], seeded: dict[str, Any], tmp_path: Path
) -> None:
    """The deployments `backstop deploy` made (above, or here when run alone) as the UI shows them
    in a browser, and the form a user fills to start a restore from the UI: every parameter of the
    flow, with its description, and the bucket to restore as the one required field."""
    browser = chromium()
    if browser is None:
        pytest.skip("no chromium binary on this machine (Debian package `chromium`); none is downloaded")
    shell = source_env(user)
    api = Api(shell["PREFECT_API_URL"])
    try:
        api.deployment_id("backup-gcs", "gcs-daily-backup")
    except httpx.HTTPStatusError:
        ok(shell, "deploy", "--json")
    ui = prefect_ui(user)

    def page(path: str) -> str:
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
             "--virtual-time-budget=20000", "--dump-dom", f"{ui}{path}"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert "Can't connect to Server API" not in done.stdout
        return done.stdout

    listed = page("/deployments")
    deployed = {
        d["name"]
        for d in yaml.safe_load((Path(__file__).parents[2] / "prefect.yaml").read_text())["deployments"]
    }
    shown = {name for name in deployed if f">{name}<" in listed}
    assert len(shown) >= 5, listed[-2000:]  # the first page of the deployments `deploy` made

    restore = api.deployment_id("restore-gcs", "gcs-restore")
    schema = api.call("GET", f"deployments/{restore}")["parameter_openapi_schema"]
    form = " ".join(re.sub(r"<[^>]+>", " ", page(f"/deployments/deployment/{restore}/run")).split())
    assert "Parameters" in form and "Submit" in form, form[-2000:]
    for name, field in schema["properties"].items():
        described = " ".join(field["description"].split("`")[0].split())  # up to its first code span
        assert f"{name} " in form and described in form, (name, described, form)
    required = [n for n in schema["properties"] if f"{n} (Optional)" not in form]
    assert required == ["source"], required  # the bucket is the one field a user must fill


def test_settings_edits_are_validated_and_a_first_setup_names_its_buckets(
    user: dict[str, str], seeded: dict[str, Any], tmp_path: Path
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
    assert_one_error_line(  # a secondary where the primary is: refused before anything is made
        run(shell, *argv),
        "secondary bucket 'first-backups-dr' needs --secondary-location, another location than the primary's (EU)",
    )
    assert run(shell, "--settings", "first", "settings", "show").returncode != 0  # no block saved
    result = json.loads(ok(shell, *argv, "--secondary-location", "europe-west4", "--json"))
    assert result["backup_buckets_created"] == ["first-backups", "first-backups-dr"]
    assert result["notify_block"] == "custom-webhook/backstop-alerts"
    first = json.loads(ok(shell, "--settings", "first", "settings", "show", "--json"))
    assert (first["project"], first["backup_bucket"], first["location"]) == ("p-first", "first-backups", "EU")
    assert first["secondary_location"] == "europe-west4"
    assert first["notify_block"] == "custom-webhook/backstop-alerts"
    shown = json.loads(ok(shell, "settings", "show", "--json"))  # set, then exported, edited, imported
    assert shown["retention"]["keep_last"] == 4 and shown["objectives"]["gcs"]["rpo_hours"] == 12
    assert shown["notify_block"] == "custom-webhook/backstop-local-alerts"  # untouched by the first setup


# The demo's own steps, cut to the configuration-files round trip to stay fast; everything else of
# run_demo (its platform, ports, Prefect server, settings, stopping) is what `backstop demo` runs.
SHORT_DEMO = (
    "import sys; from pathlib import Path; import localdev.demo as demo; "
    "demo.STEPS = [step for step in demo.STEPS if step[0] == 'Configuration files']; "
    "sys.exit(demo.run_demo(Path(sys.argv[1])))"
)


def test_demo_with_the_platform_up_leaves_settings_and_processes_alone(
    user: dict[str, str], seeded: dict[str, Any]
) -> None:
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
    after = json.loads(ok(user, "status", "--json"))
    assert {name: int(info["pid"]) for name, info in after["services"].items()} == processes
    assert after["demo"] == {}  # the demo stopped what it started


# -- the staleness alert -----------------------------------------------------------------------
# With a short RPO, deploy's proactive trigger on the real Prefect server posts to the local alert
# receiver for a component with no validated backup within its RPO, and stays quiet for a component
# whose validation deployment completed within it.
# 21.6 s: above Prefect's 10 s minimum for a proactive window, and long enough for a validation
# deployment run (worker pickup and a process start, ~5-10 s here) to complete inside it.
RPO_HOURS = 0.006
WINDOW = timedelta(hours=RPO_HOURS)
# after a window ends: Prefect evaluates proactive triggers every 5 s, then the action posts
SETTLE = timedelta(seconds=12)


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def automation_created(api: Api, name: str) -> datetime:
    found = api.call("POST", "automations/filter", json={})
    (created,) = [when(a["created"]) for a in found if a["name"] == name]
    return created


def first_window(database: Path, api: Api, name: str) -> tuple[datetime, datetime] | None:
    """The open window (start, end) of the proactive automation `name`, read from the Prefect
    server's own database (its API does not show a trigger's windows), or None before it opens."""
    found = api.call("POST", "automations/filter", json={})
    (automation,) = [a["id"] for a in found if a["name"] == name]
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        rows = db.execute(
            'SELECT start, "end" FROM automation_bucket WHERE automation_id IN (?, ?)',
            (automation, automation.replace("-", "")),
        ).fetchall()
    if not rows:
        return None
    ((start, end),) = rows
    return stored(start), stored(end)


def stored(stamp: str) -> datetime:
    """A time as Prefect's SQLite database holds it (UTC, written with or without its offset)."""
    moment = when(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_staleness_alert_fires_without_a_validated_backup_and_not_with_one(
    user: dict[str, str], seeded: dict[str, Any]
) -> None:
    shell = source_env(user)
    # the seed's bucket as the one scheduled gcs source (a test above adds a failing one)
    ok(shell, "settings", "set", "gcs_sources=[demo-raw-data]")
    ok(shell, "backup", "gcs")  # something to validate (a CLI backup does not count for the alert)
    deployed = json.loads(ok(shell, "deploy", "--json"))
    assert {"backstop-stale-configs", "backstop-stale-gcs"} <= set(deployed["automations"])
    # short RPOs: the deployed staleness automations follow them
    rpos = [f"objectives.configs.rpo_hours={RPO_HOURS}", f"objectives.gcs.rpo_hours={RPO_HOURS}"]
    changed = ok(shell, "settings", "set", *rpos)
    assert f"updated automation backstop-stale-gcs: alerts after {RPO_HOURS:g} h without a backup" in changed

    api = Api(shell["PREFECT_API_URL"])
    configs_since = automation_created(api, "backstop-stale-configs")
    gcs_since = automation_created(api, "backstop-stale-gcs")
    # gcs: its validation deployment runs on the worker and completes within the window. Prefect opens
    # a proactive trigger's first window at its first evaluation (every 5 s) and ignores a Completed
    # event that occurred before it, so the run starts once that window is open.
    database = Path(shell["PREFECT_HOME"]) / "prefect.db"
    window = wait_for(lambda: first_window(database, api, "backstop-stale-gcs"), timeout=30)
    assert window, "Prefect opened no window for the gcs staleness automation within 30 s"
    opened, closes = window
    validation = api.wait_final(api.run("validate-gcs", "gcs-validate"), timeout=WINDOW.total_seconds())
    assert validation["state"]["type"] == "COMPLETED", validation["state"]
    assert opened <= when(validation["end_time"]) < closes, (
        "the validation ended outside the window",
        window,
    )

    def staleness(component: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The component's staleness alerts from the automations with the short RPO."""
        subject = f"Backstop: no {component} backup within its RPO of {RPO_HOURS:g} h"
        since = {"configs": configs_since, "gcs": gcs_since}[component] - timedelta(seconds=1)  # whole s
        return [m for m in messages if m["subject"] == subject and when(m["received_at"]) >= since]

    # configs: nothing validated it, so the alert fires once its window has passed (~5 s later)
    limit = (configs_since + WINDOW + 3 * SETTLE - datetime.now(configs_since.tzinfo)).total_seconds()
    wait_for(lambda: staleness("configs", received(shell)), timeout=max(limit, 1))
    alerts = staleness("configs", json.loads(ok(shell, "alerts", "--json")))
    assert alerts, f"no staleness alert for configs: {received(shell)}"
    first = alerts[0]
    assert "No validated backup of configs: no validation run (configs-validate) completed" in first["text"]
    fired = (when(first["received_at"]) - configs_since).total_seconds()
    assert fired >= WINDOW.total_seconds() - 1  # not before its window ended (received_at is in whole s)
    ended = (when(validation["end_time"]) - opened).total_seconds()
    print(
        f"configs alerted {fired:.0f} s after its automation was created; gcs validated {ended:.1f} s into its window"
    )

    # gcs: once its window (and Prefect's evaluation after it) has passed, still no alert
    rest = (closes + SETTLE - datetime.now(closes.tzinfo)).total_seconds()
    time.sleep(max(rest, 0))
    assert staleness("gcs", received(shell)) == []


def on_a_terminal(env: dict[str, str], *argv: str) -> str:
    """What a person sees running `backstop ARGV` in a terminal (a pseudo-terminal here)."""
    master, slave = pty.openpty()
    child = subprocess.Popen([BACKSTOP, *argv], env=env | {"TERM": "xterm", "COLUMNS": "160"},
                             stdin=slave, stdout=slave, stderr=slave, cwd=Path(__file__).parents[2])  # fmt: skip
    os.close(slave)
    seen = b""
    with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
        while chunk := os.read(master, 65536):
            seen += chunk
    os.close(master)
    assert child.wait(300) == 0, seen.decode(errors="replace")[-2000:]
    return seen.decode(errors="replace")


def test_a_backup_shows_a_progress_line_on_a_terminal_and_none_when_piped(
    user: dict[str, str], seeded: dict[str, Any]
) -> None:
    shell = source_env(user)
    for i in range(3):  # something new to copy (an unchanged bucket is reused whole: no units run)
        upload = f"{shell['STORAGE_EMULATOR_HOST']}/upload/storage/v1/b/demo-raw-data/o"
        params = {"uploadType": "media", "name": f"progress/new-{time.time_ns()}-{i}.txt"}
        httpx.post(upload, params=params, content=b"new", timeout=30).raise_for_status()
    seen = on_a_terminal(shell, "backup", "gcs", "--bucket", "demo-raw-data")
    assert "backup gcs/demo-raw-data" in seen and "units" in seen  # the live line, drawn by rich
    assert "validated" in seen  # then the result table
    piped = run(shell, "backup", "gcs", "--bucket", "demo-raw-data")
    assert piped.returncode == 0 and piped.stderr == "" and "units" not in piped.stdout
    as_json = on_a_terminal(shell, "backup", "gcs", "--bucket", "demo-raw-data", "--json")
    assert "units" not in as_json and json.loads(as_json.replace("\r\n", "\n"))[0]["status"] == "validated"


# -- one service dies: the rest still answers -----------------------------------------------------
def test_one_dead_service_hides_nothing_else(user: dict[str, str], seeded: dict[str, Any]) -> None:
    from localdev.platform import LocalPlatform

    shell = source_env(user)
    pid = status(user)["bigquery"]
    LocalPlatform(Path(user["BACKSTOP_HOME"])).kill("bigquery")
    wait_for(lambda: "bigquery" in json.loads(run(user, "status", "--json").stdout)["gone"], timeout=30)

    shown = run(user, "status")
    assert shown.returncode == 3 and f"not running (pid {pid} gone)" in shown.stdout
    assert f"home: {Path(user['BACKSTOP_HOME']).resolve()}" in shown.stdout  # where it looked
    assert "gcs" in json.loads(run(user, "status", "--json").stdout)["services"]

    listed = run(shell, "list", "--component", "gcs", "--json")  # nothing of gcs is down
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["backups"] and json.loads(listed.stdout)["unreachable"] == []
    everything = run(shell, "list", "--all", "--json")
    assert everything.returncode == 3, everything.stderr
    rows = json.loads(everything.stdout)["unreachable"]
    assert {r["component"] for r in rows} == {"bigquery"} and "BigQuery emulator not reachable" in str(rows)
    assert json.loads(everything.stdout)["backups"]
    unsourced = run(user, "list", "--all", "--json")  # a shell that never sourced the env: the same
    assert unsourced.returncode == 3 and json.loads(unsourced.stdout)["unreachable"] == rows

    health = run(shell, "health", "--json")  # the short RPOs set above are breached: exit 2, all said
    assert health.returncode == 2 and "breach" in health.stderr
    report = json.loads(health.stdout)
    assert "gcs" in {r["component"] for r in report["health"]}
    assert {r["component"] for r in report["unreachable"]} == {"bigquery"}
    assert_one_error_line(run(shell, "backup", "bigquery"), "BigQuery emulator not reachable at")


# -- last: it stops the platform the tests above share ---------------------------------------------


def test_down_then_validate_is_one_error_line(user: dict[str, str]) -> None:
    shell = source_env(user)
    ok(user, "down")
    assert status(user) == {}
    api = shell["PREFECT_API_URL"]
    assert_one_error_line(run(shell, "validate", BACKUP_ID), f"Prefect server not reachable at {api}")
    assert_one_error_line(run(user, "validate", BACKUP_ID), f"Prefect server not reachable at {api}")
