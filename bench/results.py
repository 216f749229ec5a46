"""What the benchmarks share: a process's own peak RSS, and replacing one section of RESULTS.md."""

from __future__ import annotations

import resource
from pathlib import Path

RESULTS = Path(__file__).parent / "RESULTS.md"


def peak_mb() -> float:
    """This process's own peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def replace_section(mark: str, body: str, path: Path = RESULTS) -> None:
    """Put `body` (starting with the `mark` heading) in place of the section headed `mark`, where it
    stands (appended when there is none); the sections around it stay."""
    text = path.read_text() if path.exists() else ""
    before, after = (text.split(mark, 1) + [""])[:2] if mark in text else (text, "")
    rest = "\n## " + after.split("\n## ", 1)[1] if "\n## " in after else ""
    path.write_text(before.rstrip() + "\n\n" + body.rstrip() + "\n" + rest)
