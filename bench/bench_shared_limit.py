"""Benchmark: the shared write limit (tasks/storage/shared_limit.py) against Prefect's own `rate_limit`,
the way a user would share one rate between processes, side by side in one run.

    python -m bench.bench_shared_limit [--rates 100,1000] [--writers 1,2,4] [--seconds 4] [--output FILE]

A Prefect server (SQLite) is started here on a free port and stopped at the end. For each rate and
writer count, that many processes (started first, then released together) take slots from one limit
on that server until together they have taken `rate x seconds`:
- backstop: `SharedSlots(bucket, rate).take()` per write, a bucket's limit made by `prepare`
  (blocks of a tenth of a second's writes, at least 10; the ramp held still);
- prefect: `prefect.concurrency.sync.rate_limit(name, occupy=block, strict=True)` per block of the
  same size, on a limit with the same rate and a burst of two blocks (as Backstop's writer did before).
Reported: writes per second from the first write to the last, as a share of the rate (the burst the
limit allows at the start adds a little over 100%), and the most writes any 1-second window saw
against what the limit allows in one (the rate, the burst and one block per writer).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from typing import Any

from bench.results import markdown, peak_per_second, replace_section

MARK = "## The shared write limit"


def _writer(kind: str, name: str, rate: float, count: int, ready: Any, out: Any) -> None:
    from tasks.storage import shared_limit

    block = shared_limit.block_for(rate)
    take: Any
    if kind == "backstop":
        take = shared_limit.SharedSlots(name, rate).take
    else:
        from prefect.concurrency.sync import rate_limit

        left = [0]

        def take() -> None:
            if left[0] == 0:
                rate_limit(name, occupy=block, strict=True)
                left[0] = block
            left[0] -= 1

    ready.wait()
    times = []
    for _ in range(count):
        take()
        times.append(time.monotonic())  # CLOCK_MONOTONIC: one clock for every process
    out.put(times)


def _limit(kind: str, rate: float) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from tasks.storage import shared_limit

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    if kind == "backstop":
        shared_limit.PERIOD = 10**9  # the ramp held still: the rate is what is measured
        shared_limit.prepare(bucket, rate)
        return bucket
    name = f"bench-prefect-{bucket}"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(
                name=name, limit=2 * shared_limit.block_for(rate), slot_decay_per_second=rate
            )
        )
    return name


def one(kind: str, rate: float, writers: int, seconds: float) -> dict[str, Any]:
    from tasks.storage import shared_limit

    name = _limit(kind, rate)
    count = int(rate * seconds / writers)
    context = multiprocessing.get_context("spawn")
    ready, out = context.Barrier(writers), context.Queue()
    procs = [
        context.Process(target=_writer, args=(kind, name, rate, count, ready, out)) for _ in range(writers)
    ]
    for proc in procs:
        proc.start()
    times = sorted(t for _ in procs for t in out.get(timeout=600))
    for proc in procs:
        proc.join()
    span, peak = times[-1] - times[0], peak_per_second(times)
    allowed = rate + shared_limit.burst_for(rate) + writers * shared_limit.block_for(rate)
    return {
        "limiter": kind, "rate/s": int(rate), "writers": writers, "writes": len(times),
        "seconds": round(span, 2), "writes/s": round(len(times) / span),
        "share of the rate": f"{len(times) / span / rate:.0%}",
        "most in 1 s (allowed)": f"{peak} ({int(allowed)})",
    }  # fmt: skip


def run(rates: list[float], counts: list[int], seconds: float) -> list[dict[str, Any]]:
    from localdev.platform import LocalPlatform

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-limit-") as workdir:
        platform = LocalPlatform.with_free_ports(workdir, services=("prefect",), persistent=False)
        os.environ.update(platform.up())
        try:
            for rate in rates:
                for writers in counts:
                    for kind in ("backstop", "prefect"):
                        rows.append(one(kind, rate, writers, seconds))
                        print(rows[-1], file=sys.stderr, flush=True)
        finally:
            platform.down()
    return rows


def as_markdown(rows: list[dict[str, Any]], started: str) -> str:
    intro = (
        "`python -m bench.bench_shared_limit`: writer processes taking slots from one limit on a Prefect\n"
        "server, Backstop's `SharedSlots` against Prefect's `rate_limit` with the same blocks and burst."
    )
    return f"{MARK} ({started})\n\n{intro}\n\n{markdown(rows)}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100,1000")
    parser.add_argument("--writers", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--output", help="write the section into this file (default: print it)")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = run(
        [float(r) for r in args.rates.split(",")], [int(w) for w in args.writers.split(",")], args.seconds
    )
    text = as_markdown(rows, started)
    if args.output:
        from pathlib import Path

        replace_section(MARK, text, Path(args.output))
    print(text)


if __name__ == "__main__":
    main()
