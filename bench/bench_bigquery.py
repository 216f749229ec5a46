"""Benchmark: Backstop's BigQuery backup and restore of one table against what a user would write instead.

    python -m bench.bench_bigquery --rows 300000,3000000 [--repeats 2] [--write]

Both sides run end to end as processes on one local platform (fake-gcs-server, bqemulator and a
Prefect server, started here on free ports and stopped at the end), in the same run, alternating:
- Backstop: the `backstop` CLI as users run it (`backstop backup bigquery --dataset D`, which
  validates the backup after it, 5% sample; the same with `--no-validate`; `backstop restore bigquery
  --dataset D --backup-id ID --target T`, which verifies the restored table's rows and digest),
  CLI start-up included: with the warm process `backstop up` starts (backstop_cli/warm.py), and
  cold (BACKSTOP_WARM=0: every command imports Prefect and the Google clients itself).
- plain: bench/plain_bigquery.py, Storage Read API -> pyarrow -> one Parquet file (zstd, Backstop's
  codec) -> upload; back: download -> create the table -> load job. No hashes, counts or manifest.
Each side is the best of `--repeats` runs (other work on a shared machine only adds time); the CPU
seconds of that run (the process and its children, not the emulators) are given beside it.
`--write` puts the section into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import backstop_cli.commands.platform  # noqa: F401  (the local platform's `warm` service)
from localdev.platform import PROJECT, LocalPlatform

HERE = Path(__file__).parent
PLAIN = str(HERE / "plain_bigquery.py")
BACKSTOP = str(Path(sys.executable).parent / "backstop")
SETTINGS = "bench-bigquery"
BUCKET = "bench-bq-backups"
MARK = "## BigQuery"


def arrow_data(rows: int) -> pa.Table:
    """A table of `rows` rows (~74 bytes each): ids, text, floats, timestamps, dates, NUMERIC."""
    import numpy as np

    ids = np.arange(rows, dtype=np.int64)
    words = np.zeros((rows, 2), dtype=np.int64)  # NUMERIC's 128-bit unscaled value: cents x 10^7
    words[:, 0] = ids * 7 % 1_000_000 * 10_000_000
    price = pa.Array.from_buffers(pa.decimal128(38, 9), rows, [None, pa.py_buffer(words.tobytes())])
    return pa.table(
        {
            "id": ids,
            "user": pc.binary_join_element_wise("user-", pa.array(ids % 9973).cast(pa.string()), ""),
            "amount": ids.astype(np.float64) * 0.25,
            "ts": pa.array(ids * 1_000_000 + 1_700_000_000_000_000, pa.timestamp("us", tz="UTC")),
            "day": pa.array((ids % 365).astype(np.int32) + 19_000, pa.date32()),
            "price": price,
        }
    )


COLD = {"BACKSTOP_WARM": "0"}  # the command imports everything itself (no `backstop warm` used)


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (the process and its children; not a warm command's child, which is
    the warm server's) and stdout of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=HERE.parent)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def seed(client: Any, dataset: str, rows: int, workdir: str) -> None:
    from google.cloud import bigquery

    client.create_dataset(f"{PROJECT}.{dataset}", exists_ok=True, timeout=60)
    path = os.path.join(workdir, f"{dataset}.parquet")
    data = arrow_data(rows)
    schema = [
        bigquery.SchemaField("id", "INT64"),
        bigquery.SchemaField("user", "STRING"),
        bigquery.SchemaField("amount", "FLOAT64"),
        bigquery.SchemaField("ts", "TIMESTAMP"),
        bigquery.SchemaField("day", "DATE"),
        bigquery.SchemaField("price", "NUMERIC"),
    ]
    client.create_table(bigquery.Table(f"{PROJECT}.{dataset}.events", schema=schema), timeout=60)
    pq.write_table(data, path)
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET)
    with open(path, "rb") as handle:
        job = client.load_table_from_file(
            handle, f"{PROJECT}.{dataset}.events", job_config=config, timeout=600
        )
    job.result(timeout=600)
    os.unlink(path)


def measure(rows: int, repeats: int, env: dict[str, str], client: Any, workdir: str) -> dict[str, Any]:
    """Best-of-`repeats` wall / CPU seconds of each step on both sides for a `rows`-row table."""
    dataset = f"bench_{rows}"
    seed(client, dataset, rows, workdir)
    runs: dict[str, list[tuple[float, float]]] = {}
    backup_id = ""
    cli = [BACKSTOP, "--settings", SETTINGS]
    for i in range(repeats):
        steps = {
            "plain backup": [sys.executable, PLAIN, "backup", PROJECT, dataset, "events", BUCKET, f"plain/{dataset}-{i}.parquet"],
            "backstop backup": [*cli, "backup", "bigquery", "--dataset", dataset, "--json"],
            "backstop backup --no-validate": [*cli, "backup", "bigquery", "--dataset", dataset, "--no-validate", "--json"],
            "backstop backup, cold": [*cli, "backup", "bigquery", "--dataset", dataset, "--json"],
        }  # fmt: skip
        for name, command in steps.items():
            wall, cpu, out = timed(command, env | (COLD if name.endswith("cold") else {}))
            runs.setdefault(name, []).append((wall, cpu))
            if name == "backstop backup":
                (row,) = json.loads(out)
                assert row["status"] == "validated", row
                backup_id = row["backup_id"]
        steps = {
            "plain restore": [sys.executable, PLAIN, "restore", PROJECT, BUCKET, f"plain/{dataset}-{i}.parquet",
                              f"{dataset}.events", f"{dataset}_plain_{i}", "events"],
            "backstop restore": [*cli, "restore", "bigquery", "--dataset", dataset, "--backup-id", backup_id,
                                 "--target", f"{dataset}_backstop_{i}", "--json"],
            "backstop restore, cold": [*cli, "restore", "bigquery", "--dataset", dataset, "--backup-id", backup_id,
                                       "--target", f"{dataset}_cold_{i}", "--json"],
        }  # fmt: skip
        for name, command in steps.items():
            wall, cpu, out = timed(command, env | (COLD if name.endswith("cold") else {}))
            runs.setdefault(name, []).append((wall, cpu))
        for target in (f"{dataset}_plain_{i}", f"{dataset}_backstop_{i}", f"{dataset}_cold_{i}"):
            restored = client.get_table(f"{PROJECT}.{target}.events", timeout=60)
            count = list(
                client.query(f"SELECT COUNT(*) FROM `{PROJECT}.{target}.events`").result(timeout=120)
            )
            assert count[0][0] == rows and len(restored.schema) == 6, (target, count[0][0])
            client.delete_dataset(f"{PROJECT}.{target}", delete_contents=True, timeout=60)
    client.delete_dataset(f"{PROJECT}.{dataset}", delete_contents=True, timeout=60)
    return {name: min(values) for name, values in runs.items()} | {
        "_all": {name: [round(w, 2) for w, _ in values] for name, values in runs.items()}
    }


def cli_start_seconds(env: dict[str, str], repeats: int = 3) -> dict[str, float]:
    """`backstop --help` (the parser: every command module imported; never warm) and `backstop backup
    bigquery --help` (the path a backup takes before its flow starts: the component's options model,
    Prefect imported), warm and cold, best of `repeats`."""
    out = {}
    for label, args, extra in (
        ("backstop --help", ["--help"], {}),
        ("backstop backup bigquery --help", ["backup", "bigquery", "--help"], {}),
        ("backstop backup bigquery --help, cold", ["backup", "bigquery", "--help"], COLD),
    ):
        out[label] = min(timed([BACKSTOP, *args], env | extra)[0] for _ in range(repeats))
    return out


def run(sizes: list[int], repeats: int = 2) -> dict[str, Any]:
    """Both sides at every size on one fresh local platform; the result as tables for RESULTS.md."""
    from blocks.clients import bigquery_client

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="bench-bq-") as workdir:
        platform = LocalPlatform.with_free_ports(
            workdir, services=("gcs", "bigquery", "prefect", "warm"), persistent=False
        )  # as `backstop up` starts it: commands go to its warm process unless BACKSTOP_WARM=0
        platform_env = platform.up()
        env = os.environ | platform_env | {
            "BACKSTOP_HOME": workdir, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }  # fmt: skip
        saved = {k: os.environ.get(k) for k in platform_env}
        os.environ.update({k: v for k, v in platform_env.items() if not k.startswith("PREFECT")})
        try:
            settings = (
                "from blocks.settings import BackstopSettings; "
                f"BackstopSettings(project={PROJECT!r}, backup_bucket={BUCKET!r}).save({SETTINGS!r}, overwrite=True)"
            )
            timed([sys.executable, "-c", settings], env)
            from blocks.clients import storage_client

            storage_client(PROJECT).create_bucket(BUCKET)
            client = bigquery_client(PROJECT)
            measure(1000, 1, env, client, workdir)  # warm up: emulator, Prefect server, file caches
            start = cli_start_seconds(env)
            results = {rows: measure(rows, repeats, env, client, workdir) for rows in sizes}
        finally:
            platform.down()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return as_tables(results, start, repeats, started)


def as_tables(
    results: dict[int, dict[str, Any]], start: dict[str, float], repeats: int, started: str
) -> dict[str, Any]:
    rows = []
    for size, steps in results.items():
        for plain, ours in (("plain backup", "backstop backup"), ("plain backup", "backstop backup --no-validate"),
                            ("plain backup", "backstop backup, cold"), ("plain restore", "backstop restore"),
                            ("plain restore", "backstop restore, cold")):  # fmt: skip
            (pw, pc_), (bw, bc) = steps[plain], steps[ours]
            rows.append({
                "rows": size, "step": ours.removeprefix("backstop "), "backstop_s": round(bw, 2),
                "plain_s": round(pw, 2), "ratio": f"{bw / pw:.2f}x",
                "backstop_cpu_s": round(bc, 2) if ours.endswith("cold") else "(warm child)",
                "plain_cpu_s": round(pc_, 2), "backstop_runs_s": ", ".join(map(str, steps["_all"][ours])),
                "plain_runs_s": ", ".join(map(str, steps["_all"][plain])),
            })  # fmt: skip
    return {
        "title": f"BigQuery: Backstop's CLI against a plain script, one table (run {started})",
        "tables": [
            {"title": "Backup and restore, end to end as processes, best of " + str(repeats), "rows": rows},
            {
                "title": "CLI start-up (best of 3)",
                "rows": [{"command": k, "seconds": round(v, 2)} for k, v in start.items()],
            },
        ],  # fmt: skip
        "notes": [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", default="300000,3000000", help="comma-separated table sizes")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="put the section into bench/RESULTS.md")
    args = parser.parse_args()
    result = run([int(n) for n in args.rows.split(",") if n], args.repeats)
    from bench.results import section

    text = section(result)
    print(text)
    if args.write:
        from bench.results import replace_section

        replace_section(
            MARK, text.replace(f"## {result['title']}", MARK + result["title"].removeprefix("BigQuery"), 1)
        )


if __name__ == "__main__":
    main()
