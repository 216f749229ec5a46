"""Large temporary files (BigQuery's Parquet parts, staged configs) live in a scratch folder of the
process (tasks/storage/scratch.py): what a process killed outright leaves there is removed by the
next one, and a running process's folder is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).parents[2]

WRITER = """
import os, time
from tasks.storage import scratch
with open(os.path.join(scratch.folder(), "part-00000.parquet"), "wb") as handle:
    handle.write(os.urandom(1 << 20))
print(scratch.folder(), flush=True)
time.sleep(60)
"""


def writer(tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process that wrote a part file into its scratch folder and waits; (process, its folder)."""
    env = os.environ | {"TMPDIR": str(tmp)}
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER], env=env, cwd=CHECKOUT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, Path(process.stdout.readline().strip())


@pytest.mark.integration
def test_the_next_process_removes_what_a_killed_one_left_and_keeps_a_running_ones(tmp_path: Path) -> None:
    killed, left = writer(tmp_path)
    running, kept = writer(tmp_path)
    try:
        killed.send_signal(signal.SIGKILL)  # no code of it runs: its files stay
        killed.wait(timeout=30)
        assert (left / "part-00000.parquet").stat().st_size == 1 << 20

        env = os.environ | {"TMPDIR": str(tmp_path)}
        code = "from tasks.storage import scratch; print(scratch.folder())"
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=CHECKOUT, capture_output=True, text=True, check=True
        )
        own = Path(done.stdout.strip())
        assert not left.exists()
        assert (kept / "part-00000.parquet").exists()  # its process still runs
        assert own.parent == tmp_path and own != kept and not own.exists()  # gone when it exited
    finally:
        running.send_signal(signal.SIGKILL)
        running.wait(timeout=30)


@pytest.mark.unit
def test_another_hosts_folder_and_a_malformed_name_are_left_alone(tmp_path: Path) -> None:
    from tasks.storage import scratch

    other_host = tmp_path / f"{scratch.PREFIX}otherhost-1-abc"
    odd = tmp_path / f"{scratch.PREFIX}{scratch._host()}-notapid-abc"
    for folder in (other_host, odd):
        folder.mkdir()
    assert scratch.sweep(str(tmp_path)) == []
    assert other_host.exists() and odd.exists()
