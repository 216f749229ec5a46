"""Tables for people: a cause is shown whole (wrapped, first line first), a cut list says so."""

from __future__ import annotations

from backstop.core.report import joined, left_out, summarized, table_and_details, text_table

CAUSE = (
    "400 POST http://127.0.0.1:9050/bigquery/v2/projects/demo/queries?prettyPrint=false: "
    'Invalid dataset ID "backstop-demo__demo_sales_backstop_snapshots"\nsecond line of the cause'
)


def test_a_long_multi_line_cause_is_whole_wrapped_and_aligned() -> None:
    table = text_table([{"source": "demo_sales", "problem": CAUSE}, {"source": "x", "problem": "ok"}])
    lines = table.splitlines()
    column = lines[0].index("problem")
    text = " ".join(line[column:].strip() for line in lines[2:-1])
    assert text.replace(" ", "") == CAUSE.replace("\n", "").replace(" ", "")  # nothing cut
    assert lines[2].startswith("demo_sales") and lines[2][column:].startswith("400 POST")  # first line first
    assert all(line[:column].strip() == "" for line in lines[3:-1])  # continuation lines stay in the column
    assert lines[-1].startswith("x") and lines[-1][column:] == "ok"
    assert "second line of the cause" in lines[-2]


def test_cut_lists_say_how_many_were_left_out() -> None:
    assert joined(["a", "b"]) == "a; b"
    assert joined([str(i) for i in range(8)], 3) == "0; 1; 2; and 5 more"
    assert left_out(200, 200, "--json") == ""
    assert left_out(200, 2003, "--json lists every action") == (
        "1803 more row(s) not shown (first 200 of 2003): --json lists every action"
    )


def test_a_backup_table_keeps_the_common_columns_and_puts_a_components_own_counts_under_it() -> None:
    rows = [
        {
            "status": "validated",
            "source": "prod",
            "backup_id": "b1",
            "resource_count": 104,
            "source_size": "4.5 GB",
        },
        {"status": "validated", "source": "raw", "backup_id": "b2"},
    ]
    text = table_and_details(rows, ["status", "source", "backup_id"], "source", width=30)
    lines = text.splitlines()
    assert lines[0].split() == ["status", "source", "backup_id"]  # no column for one component's counts
    assert lines[2].split() == ["validated", "prod", "b1"] and lines[3].split() == ["validated", "raw", "b2"]
    assert lines[4:] == ["prod: resource count 104,", "  source size 4.5 GB"]  # wrapped, nothing cut
    assert max(map(len, lines)) <= 30


def test_a_long_restore_plan_reads_by_folder_with_notes_and_blocked_actions_as_they_are() -> None:
    creates = [
        {"name": f"events/2026/{i:05d}.json", "change": "create", "why": "absent in target"}
        for i in range(1990)
    ]
    creates += [{"name": f"models/m{i}.bin", "change": "create", "why": "absent in target"} for i in range(3)]
    deletes = [
        {"name": f"tmp/{i}", "change": "delete", "why": "not in the backup (--exact)"} for i in range(300)
    ]
    note = {"name": "bucket", "change": "note", "why": "the backup holds only events/ and models/"}
    blocked = {"name": "locked/a", "change": "blocked", "why": "retention until 2027-01-01"}
    rows = summarized(
        [*creates, *deletes, note, blocked, {"name": "top.txt", "change": "create", "why": "new"}], 200
    )
    assert rows == [
        note,
        blocked,
        {"name": "tmp/ (300)", "change": "delete", "why": "not in the backup (--exact)"},
        {"name": "events/ (1,990)", "change": "create", "why": "absent in target"},
        {"name": "models/ (3)", "change": "create", "why": "absent in target"},
        {"name": "top.txt", "change": "create", "why": "new"},
    ]
    few = [*creates[:3], note]
    assert summarized(few, 200) == [note, *creates[:3]]  # when they fit: every action as it is
    mixed = [
        {"name": f"a/{i}", "change": "replace", "why": "differs" if i % 2 else "newer"} for i in range(5)
    ]
    assert summarized(mixed, 2) == [{"name": "a/ (5)", "change": "replace", "why": "various"}]
