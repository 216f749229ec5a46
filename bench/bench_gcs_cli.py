"""Benchmark: `backstop backup gcs` / `backstop restore gcs` as users run them, against a plain copy loop.

    python -m bench.bench_gcs_cli --objects 10000 [--large 3] [--repeats 2]

Both sides run end to end as processes (start-up included) on one local platform (the local Cloud
Storage server of `backstop up`, in memory, or fake-gcs-server with BACKSTOP_GCS_SERVER=fake, a
Prefect server and the CLI's warm process, started here on free ports and stopped at the end; the
backstop commands run in the warm process as after `backstop up`), in the same run, alternating,
each full backup and restore into fresh buckets:
- Backstop: `backstop backup gcs --bucket SRC` (validated after: counts, sizes, crc32c, a sampled
  read-back) into a fresh backup bucket, then `backstop restore gcs --bucket SRC --backup-id ID
  --target NEW` (verified after against the backup);
- plain: bench/plain_gcs.py, list + `copy_blob` on 16 threads, SRC -> a copy bucket, and that copy
  -> a new bucket. No generations, checksums, manifest or verification.
- rclone (when installed: Debian's `rclone`; skipped otherwise): `rclone copy emu:SRC emu:NEW
  --transfers 16 --checkers 16`, server-side, as the "backup" and, from that copy, the "restore".
- Backstop once more with `gcs_write_rate` raised to 1,000,000/s ("ramp off"): by default Backstop
  writes at most 1,000 objects/s into a bucket (Google's starting rate for a bucket, doubled every 20
  minutes of sustained load), so 10,000 copies take at least 10 s whatever the client; rclone and
  the plain loop do not keep to it. The ramp-off rows are the copy speed the others are held to.
Each side is the best of `--repeats` runs (other work on a shared machine only adds time).
`BENCH_WRAP="py-spy record -o /tmp/x.svg --"` runs the backstop commands under a profiler.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import backstop_cli.commands.platform  # noqa: F401  (the local platform's `warm` service)
from bench.bench_bigquery import timed
from bench.bench_gcs import rclone, seed_source, unique
from localdev.platform import PROJECT, LocalPlatform

HERE = Path(__file__).parent
PLAIN = str(HERE / "plain_gcs.py")
BACKSTOP = str(Path(sys.executable).parent / "backstop")


RAMP_OFF = 1_000_000.0  # writes/s: the write ramp never waits
SIDES = {"backstop": None, "backstop ramp off": RAMP_OFF}  # Backstop's sides: their gcs_write_rate


def settings(env: dict[str, str], name: str, bucket: str, rate: float | None = None) -> None:
    extra = f", gcs_write_rate={rate!r}" if rate else ""
    code = (
        "from blocks.settings import BackstopSettings; "
        f"BackstopSettings(project={PROJECT!r}, backup_bucket={bucket!r}{extra}).save({name!r}, overwrite=True)"
    )
    timed([sys.executable, "-c", code], env)


def backstop_round(env: dict[str, str], client: Any, source: str, side: str, i: int) -> dict[str, float]:
    """One `backstop backup gcs` and one `backstop restore gcs` of it into a new bucket; wall seconds."""
    wrap = shlex.split(os.environ.get("BENCH_WRAP", ""))
    name, bucket = f"bench-gcs-{i}-{side.replace(' ', '-')}", unique("bench-backups")
    client.create_bucket(bucket)
    settings(env, name, bucket, SIDES[side])
    cli = [*wrap, BACKSTOP, "--settings", name]
    out: dict[str, float] = {}
    wall, _, text = timed([*cli, "backup", "gcs", "--bucket", source, "--json"], env)
    out[f"{side} backup"] = wall
    (row,) = json.loads(text)
    assert row["status"] == "validated", row
    target = unique("bench-restored")
    restore = [
        *cli,
        "restore",
        "gcs",
        "--bucket",
        source,
        "--backup-id",
        row["backup_id"],
        "--target",
        target,
    ]
    out[f"{side} restore"] = timed([*restore, "--json"], env)[0]
    listed = sum(1 for _ in client.list_blobs(target))
    assert listed == sum(1 for _ in client.list_blobs(source)), (listed, target)
    return out


def one_round(env: dict[str, str], client: Any, source: str, i: int) -> dict[str, float]:
    """One backup and one restore on each side (and rclone's copies, when installed); wall seconds of each."""
    out: dict[str, float] = {}
    plain_copy = unique("bench-plain")
    out["plain backup"] = timed([sys.executable, PLAIN, PROJECT, source, plain_copy], env)[0]
    for side in SIDES:
        out |= backstop_round(env, client, source, side, i)
    out["plain restore"] = timed([sys.executable, PLAIN, PROJECT, plain_copy, unique("bench-plain-r")], env)[
        0
    ]
    if shutil.which("rclone"):
        listed = sum(1 for _ in client.list_blobs(source))
        port = int(env["STORAGE_EMULATOR_HOST"].rsplit(":", 1)[1])
        rclone_copy = unique("bench-rclone")
        out["rclone backup"], copied = rclone("copy", source, rclone_copy, port)
        out["rclone restore"], again = rclone("copy", rclone_copy, unique("bench-rclone-r"), port)
        assert copied == again == listed, (copied, again, listed)
    return out


def run(objects: int, large: int = 3, repeats: int = 2) -> dict[str, Any]:
    from blocks.clients import storage_client

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="bench-gcs-") as workdir:
        platform = LocalPlatform.with_free_ports(  # as `backstop up` starts them, its warm process too
            workdir, services=("gcs", "prefect", "warm"), persistent=False
        )
        platform_env = platform.up()
        env = os.environ | platform_env | {
            "BACKSTOP_HOME": workdir, "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }  # fmt: skip
        os.environ.update({k: v for k, v in platform_env.items() if not k.startswith("PREFECT")})
        try:
            client = storage_client(PROJECT)
            warm = unique("bench-warm")
            seed_source(client, warm, 20, 0, 1)
            one_round(env, client, warm, 99)  # warm up: emulator, Prefect server, file caches
            source = unique("bench-src")
            seed_source(client, source, objects, large, 20)
            start = min(timed([BACKSTOP, "backup", "gcs", "--help"], env)[0] for _ in range(3))
            runs: dict[str, list[float]] = {}
            for i in range(repeats):
                for step, seconds in one_round(env, client, source, i).items():
                    runs.setdefault(step, []).append(seconds)
                    print(f"  {step}: {seconds:.1f} s", file=sys.stderr, flush=True)
        finally:
            platform.down()
    return as_table(runs, objects + large, start, started)


def as_table(runs: dict[str, list[float]], count: int, start: float, started: str) -> dict[str, Any]:
    rows = []
    for step in ("backup", "restore"):
        for side in SIDES:
            p, b = min(runs[f"plain {step}"]), min(runs[f"{side} {step}"])
            r = min(runs[f"rclone {step}"]) if f"rclone {step}" in runs else None
            rows.append({
                "objects": count, "step": step, "side": side, "backstop_s": round(b, 2), "plain_s": round(p, 2),
                "ratio": f"{b / p:.2f}x", "rclone_s": round(r, 2) if r else "-",
                "vs rclone": f"{b / r:.2f}x" if r else "- (not installed)",
                "runs backstop / plain / rclone (s)": " / ".join(
                    ", ".join(f"{x:.1f}" for x in runs.get(f"{tool} {step}", [])) or "-"
                    for tool in (side, "plain", "rclone")
                ),
            })  # fmt: skip
    return {
        "title": f"Cloud Storage end to end, the CLI as a process ({started})",
        "tables": [{"title": "backstop CLI vs plain loop process and rclone", "rows": rows}],
        "notes": [f"`backstop backup gcs --help` (CLI start-up): {start:.2f} s, best of 3."],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_gcs_cli", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--objects", type=int, default=10_000, help="small objects (1-10 KB)")
    parser.add_argument("--large", type=int, default=3, help="20 MB objects")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    from bench.results import section

    print(section(run(args.objects, args.large, args.repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
