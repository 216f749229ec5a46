"""What the benchmarks share: a process's own peak RSS, a result as a markdown section, replacing one
section of RESULTS.md, and the busiest second of a list of times."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

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


def markdown(rows: list[dict[str, Any]]) -> str:
    from backstop.core.report import markdown_table

    return markdown_table(rows) if rows else "_(no rows)_"


def section(result: dict[str, Any]) -> str:
    """One benchmark's result dict as markdown; tolerates other shapes (list-of-dict values become tables)."""
    parts = [f"## {result.get('title', 'benchmark')}", ""]
    tables = result.get("tables")
    if tables is None:  # a foreign result shape: scalars as one table, lists of dicts as their own
        scalars = [
            {"measure": k, "value": v}
            for k, v in result.items()
            if k != "title" and not isinstance(v, (list, dict))
        ]
        tables = [{"title": "Figures", "rows": scalars}] if scalars else []
        tables += [
            {"title": k, "rows": v}
            for k, v in result.items()
            if isinstance(v, list) and v and isinstance(v[0], dict)
        ]
    for table in tables:
        parts += [f"### {table['title']}", "", markdown(table["rows"]), ""]
    parts += [f"- {note}" for note in result.get("notes", [])]
    return "\n".join(parts).rstrip() + "\n"


def peak_per_second(times: list[float]) -> int:
    """The most events (copies, writes) of `times` (seconds) in any 1-second window."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best
