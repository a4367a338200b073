"""Ingestion: bad rows are quarantined with a reason, counts add up, reloading adds nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ranking.errors import IngestError
from ranking.ingest.contract import check_readable, ingest, load_events
from ranking.warehouse import warehouse
from tests.conftest import NOW

TYPES = ["impression", "click", "view", "play", "skip", "add_to_cart", "purchase", "rating"]

GOOD = {
    "event_id": "e1",
    "user_id": "u1",
    "item_id": "i1",
    "event_type": "click",
    "event_timestamp": "2026-02-01T10:00:00Z",
    "value": "",
    "session_id": "s1",
    "position": "3",
}

BAD_ROWS = [
    ("missing user_id", {"user_id": ""}),
    ("missing item_id", {"item_id": ""}),
    ("unknown event_type hover", {"event_type": "hover"}),
    ("unparseable event_timestamp", {"event_timestamp": "not a time"}),
    ("future event_timestamp", {"event_timestamp": "2027-01-01T00:00:00Z"}),
    ("negative value", {"value": "-1.5"}),
    ("value is not a number", {"value": "abc"}),
    ("position is not an integer", {"position": "top"}),
]


def _rows() -> list[dict]:
    rows = [dict(GOOD), dict(GOOD, event_id="e2", event_type="PURCHASE", value="9.5")]
    for n, (_, change) in enumerate(BAD_ROWS):
        rows.append(dict(GOOD, event_id=f"bad{n}", **change))
    rows.append(dict(GOOD))  # a duplicate of e1 inside the file
    return rows


def _write(rows: list[dict], path: Path) -> Path:
    frame = pd.DataFrame(rows)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
        frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_each_bad_row_is_quarantined_with_its_reason(tmp_path: Path, suffix: str) -> None:
    path = _write(_rows(), tmp_path / f"events{suffix}")
    with warehouse(tmp_path / "w.duckdb") as con:
        report = load_events(con, path, TYPES, NOW)
        quarantine = con.execute(
            "SELECT reason, source_row, source_file FROM quarantine ORDER BY source_row"
        ).fetchall()
        stored = con.execute("SELECT event_id, event_type, value FROM events ORDER BY 1").fetchall()
    assert report.read == 11
    assert report.accepted == 2
    assert report.quarantined == len(BAD_ROWS)
    assert report.duplicates == 1
    assert report.balanced
    assert [r[0] for r in quarantine] == [reason for reason, _ in BAD_ROWS]
    assert [r[1] for r in quarantine] == list(range(3, 3 + len(BAD_ROWS)))  # 1-based rows
    assert all(r[2] == str(path) for r in quarantine)
    assert stored == [("e1", "click", None), ("e2", "purchase", 9.5)]


def test_reloading_the_same_file_adds_nothing(tmp_path: Path) -> None:
    path = _write(_rows(), tmp_path / "events.csv")
    with warehouse(tmp_path / "w.duckdb") as con:
        load_events(con, path, TYPES, NOW)
        again = load_events(con, path, TYPES, NOW)
        counts = con.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM quarantine)"
        ).fetchall()[0]
    assert again.accepted == 0
    assert again.duplicates == 3 and again.quarantined == len(BAD_ROWS) and again.balanced
    assert counts == (2, len(BAD_ROWS))


def test_event_id_is_derived_when_absent_so_reloads_dedupe(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "event_id"} for r in _rows()[:2]]
    path = _write(rows + rows[:1], tmp_path / "no_ids.csv")
    with warehouse(tmp_path / "w.duckdb") as con:
        first = load_events(con, path, TYPES, NOW)
        second = load_events(con, path, TYPES, NOW)
    assert (first.accepted, first.duplicates) == (2, 1)
    assert (second.accepted, second.duplicates) == (0, 3)


def test_folder_of_mixed_formats_loads_every_file(tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    _write([GOOD], folder / "a.csv")
    _write([dict(GOOD, event_id="e9")], folder / "b.jsonl")
    (folder / "notes.txt").write_text("ignored: not an input format")
    with warehouse(tmp_path / "w.duckdb") as con:
        report = load_events(con, folder, TYPES, NOW)
    assert len(report.files) == 2 and report.accepted == 2 and report.balanced


def test_epoch_seconds_and_milliseconds_parse(tmp_path: Path) -> None:
    rows = [
        dict(GOOD, event_id="s", event_timestamp="1769940000"),
        dict(GOOD, event_id="ms", event_timestamp="1769940000000"),
    ]
    path = _write(rows, tmp_path / "epoch.csv")
    with warehouse(tmp_path / "w.duckdb") as con:
        load_events(con, path, TYPES, NOW)
        times = {r[0]: r[1] for r in con.execute("SELECT event_id, event_timestamp FROM events")
                 .fetchall()}  # fmt: skip
    assert times["s"] == times["ms"] == pd.Timestamp("2026-02-01 10:00:00").to_pydatetime()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "no such file"),
        ("events.xlsx", b"x", "unsupported format"),
        ("broken.parquet", b"this is not parquet", "cannot be read"),
    ],
)
def test_unreadable_file_gives_one_error_naming_it(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(IngestError) as info:
        check_readable(path)
    assert str(path) in str(info.value) and message in str(info.value)
    assert "\n" not in str(info.value)


def test_items_bad_rows_quarantined_and_newest_row_wins(tmp_path: Path) -> None:
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "", "i3", "i1"],
            "category": ["drama|comedy", "news", "x", "kids", "drama"],
            "created_at": ["2026-01-01", "2026-01-02", "2026-01-01", "when?", "2026-01-05"],
            "price": ["1.5", "-2", "1", "3", "2.5"],
            "available": ["true", "true", "true", "true", "false"],
        }
    )
    items.to_csv(tmp_path / "items.csv", index=False)
    _write([GOOD], tmp_path / "events.csv")
    reports = ingest(tmp_path / "w.duckdb", tmp_path / "events.csv", TYPES, NOW,
                     tmp_path / "items.csv")  # fmt: skip
    item_report = reports[0]
    assert item_report.reasons == {
        "missing item_id": 1,
        "negative price": 1,
        "unparseable created_at": 1,
    }
    assert (item_report.accepted, item_report.duplicates) == (1, 1) and item_report.balanced
    with warehouse(tmp_path / "w.duckdb", read_only=True) as con:
        row = con.execute("SELECT primary_category, price, available FROM items").fetchall()
    assert row == [("drama", 2.5, False)]


SERVED = {"user_id": "u1", "item_id": "i1", "event_type": "impression",
          "event_timestamp": "2026-02-02T10:00:00Z", "session_id": "r1", "position": 1}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"item_id": "made-up"}, "served log: item unknown to the catalogue and the events"),
        ({"user_id": "stranger"}, "served log: user unknown to the events"),
        ({"item_id": "i" * 21}, "served log: id over 20 characters"),
        ({"event_type": "purchase"}, "served log: not an impression"),
    ],
    ids=["unknown-item", "unknown-user", "long-id", "not-an-impression"],
)
def test_a_served_log_keeps_only_what_the_service_could_have_written(
    tmp_path: Path, change: dict, reason: str
) -> None:
    """A file named like the service's log is checked against what the service produces:
    known users and items, impressions, ids within its limit. The same rows under another
    name are ordinary events (the service is not their author)."""
    _write([GOOD], tmp_path / "history.csv")
    rows = [dict(SERVED, event_id="s-ok"), dict(SERVED, event_id="s-bad", **change)]
    served = _write(rows, tmp_path / "served-20260202.jsonl")
    other = _write(rows, tmp_path / "other.jsonl")
    with warehouse(tmp_path / "w.duckdb") as con:
        load_events(con, tmp_path / "history.csv", TYPES, NOW)
        checked = load_events(con, served, TYPES, NOW, served_id_length=20)
        plain = load_events(con, other, TYPES, NOW, served_id_length=20)
        stored = con.execute(
            "SELECT reason, record FROM quarantine WHERE source_file LIKE '%served-%'"
        ).fetchall()
    assert (checked.accepted, checked.quarantined, checked.reasons) == (1, 1, {reason: 1})
    assert checked.balanced
    assert [r for r, _ in stored] == [reason]
    assert next(iter(change.values())) in stored[0][1]  # the raw record is kept
    assert (plain.quarantined, plain.duplicates) == (0, 1)  # s-ok already in; s-bad accepted
