"""Plain-text and markdown tables for people. Pure: no I/O."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# The widest a cell is shown before it wraps onto more lines of the same row (a table of causes
# stays readable on a terminal; nothing is cut: the whole text is there, first line first).
CELL_WIDTH = 72


def _lines(text: str, width: int) -> list[str]:
    """`text` as the lines of one cell: its own lines, each wrapped at `width`, none cut."""
    out: list[str] = []
    for line in text.splitlines() or [""]:
        out += textwrap.wrap(line, width, break_long_words=True, break_on_hyphens=False) or [""]
    return out


def text_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, width: int = CELL_WIDTH
) -> str:
    """Rows as an aligned text table (first row's keys are the columns unless given). A long or
    multi-line cell wraps within its column, so a cause is shown whole and the table stays aligned."""
    if not rows:
        return "(nothing)"
    cols = list(columns or rows[0].keys())
    cells = [[_lines(_cell(row.get(c)), width) for c in cols] for row in rows]
    widths = [max(len(c), *(len(line) for r in cells for line in r[i])) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()
    rule = "  ".join("-" * w for w in widths)
    body = []
    for row in cells:
        for k in range(max(len(cell) for cell in row)):
            parts = [(cell[k] if k < len(cell) else "").ljust(w) for cell, w in zip(row, widths, strict=True)]
            body.append("  ".join(parts).rstrip())
    return "\n".join([line, rule, *body])


def table_and_details(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], key: str, width: int = 100
) -> str:
    """Rows as a table of `columns` (what every row has), then, for each row with other fields, one
    wrapped paragraph `<key>: field value, field value, ...`: a row of a dozen component-specific
    counts would otherwise make a table twice as wide as a terminal."""
    text = text_table([{c: row.get(c) for c in columns} for row in rows])
    for row in rows:
        extra = [f"{k.replace('_', ' ')} {_cell(v)}" for k, v in row.items() if k not in columns]
        if extra:
            text += "\n" + textwrap.fill(
                f"{row.get(key)}: " + ", ".join(extra), width, subsequent_indent="  ", break_on_hyphens=False
            )
    return text


def _plain(value: Any) -> str:
    """A value as a person reads it: lists one item a line, mappings `key: value` a line."""
    if isinstance(value, dict):
        return "\n".join(f"{k}: {_plain(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple | set):
        return "\n".join(_plain(v) for v in value) or "-"
    return _cell(value)


def fields_table(result: dict[str, Any]) -> str:
    """A result mapping as a two-column table (no Python reprs: lists and mappings a line an item)."""
    return text_table([{"what": k.replace("_", " "), "value": _plain(v)} for k, v in result.items()])


def joined(items: Sequence[Any], limit: int = 5, sep: str = "; ") -> str:
    """The first `limit` items joined, and how many more there are: a cut list says so."""
    shown = sep.join(str(i) for i in items[:limit])
    return shown + (f"{sep}and {len(items) - limit} more" if len(items) > limit else "")


def left_out(shown: int, total: int, how: str) -> str:
    """'' when nothing was cut, else a line saying how many rows were left out and how to see them."""
    return (
        "" if total <= shown else f"{total - shown} more row(s) not shown (first {shown} of {total}): {how}"
    )


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_nothing_"
    cols = list(columns or rows[0].keys())
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_cell(r.get(c)).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(out)


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TB"


# The changes of a restore plan a person must read first, in this order; the others follow.
READ_FIRST = ("note", "blocked", "delete", "replace", "skipped")


def read_first(actions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A restore plan's actions with notes, blocked, deletes, replaces and skips first (each in plan
    order), so that a table cut at N rows never cuts them off behind creates."""
    rank = {change: i for i, change in enumerate(READ_FIRST)}
    return sorted(actions, key=lambda a: rank.get(a.get("change", ""), len(READ_FIRST)))


def summarized(actions: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """A restore plan's actions for a person, in `read_first` order: each action as it is when they fit
    in `limit` rows; else notes and blocked actions as they are and the others one row per change and
    top folder (`create  events/ (1,990)`, the why they share or "various"): a restore of a
    million objects reads as a few lines, not as its first 200 creates."""
    ordered = read_first(actions)
    if len(ordered) <= limit:
        return ordered
    rows: list[dict[str, Any]] = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for action in ordered:
        change, name = str(action.get("change", "")), str(action.get("name", ""))
        if change in ("note", "blocked"):
            rows.append(action)
            continue
        head, slash, _ = name.partition("/")
        groups.setdefault((change, head + slash if slash else name), []).append(action)
    for (change, folder), members in groups.items():
        if len(members) == 1:
            rows.append(members[0])
            continue
        whys = {str(m.get("why", "")) for m in members}
        why = whys.pop() if len(whys) == 1 else "various"
        rows.append({"name": f"{folder} ({len(members):,})", "change": change, "why": why})
    return rows
