"""A backup's spools (tasks/storage/spool.py) leave nothing in the temp folder, even when the
process is killed in the middle of a backup (a killed or cancelled run left its spool files in
/tmp: ~35 of them a test run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).parents[2]

SCRIPT = """
import sys, time
from backstop.core.manifest import ManifestEntry
from tasks.storage.spool import EntrySpool, KeySpool
keys = KeySpool()
keys.add((f"pool/k-{i:07d}", i, "crc", None) for i in range(200_000))  # more than the page cache holds
entries = EntrySpool(ManifestEntry(name=f"e{i}", size=i, stored_key=f"k{i}") for i in range(1000))
assert len(keys.lookup(["pool/k-0000042"])) == 1 and len(entries) == 1000
print("spooled", flush=True)
time.sleep(60)
"""


@pytest.mark.integration
def test_a_killed_process_leaves_no_spool_file(tmp_path: Path) -> None:
    env = os.environ | {"TMPDIR": str(tmp_path), "SQLITE_TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], env=env, cwd=CHECKOUT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "spooled"
        assert list(tmp_path.iterdir()) == []  # nothing to see while it runs
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.unit
def test_a_spool_spills_to_disk_and_finds_what_it_was_given() -> None:
    from tasks.storage.spool import KeySpool

    with KeySpool() as spool:
        spool.add((f"k{i}", i, f"c{i}", None) for i in range(50_000))
        found = spool.lookup(["k7", "k49999", "missing"])
        assert len(spool) == 50_000
    assert {k: v[:2] for k, v in found.items()} == {"k7": (7, "c7"), "k49999": (49999, "c49999")}
