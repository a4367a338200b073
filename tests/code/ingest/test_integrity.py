"""Ingestion under bad input and concurrent use: ids kept verbatim, one load all or nothing,
malformed lines quarantined with their line, readers never blocked by a writer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from ranking.errors import IngestError
from ranking.ingest.contract import check_readable, ingest, plain_reader
from ranking.warehouse import warehouse, writing
from tests.conftest import NOW

TYPES = ["click", "view", "purchase"]
HEADER = "event_id,user_id,item_id,event_type,event_timestamp,value,session_id,position"


def _events(con) -> list[tuple]:
    return con.execute(
        "SELECT user_id, item_id, event_type, event_timestamp FROM events ORDER BY 1, 2"
    ).fetchall()


def _add(con, event_id: str) -> None:
    con.execute(
        "INSERT INTO events (event_id, user_id, item_id, event_type, event_timestamp)"
        f" VALUES ('{event_id}', 'u', 'i', 'click', TIMESTAMP '2026-02-01')"
    )


def _count(db: Path, table: str = "events") -> int:
    with warehouse(db, read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def test_json_ids_that_mix_numbers_and_strings_are_stored_verbatim(tmp_path: Path) -> None:
    log = tmp_path / "mixed.jsonl"
    rows = [
        {"user_id": 1, "item_id": "a", "event_type": "click",
         "event_timestamp": "2026-02-01T10:00:00Z"},
        {"user_id": "u2", "item_id": 7, "event_type": "view", "event_timestamp": 1769940000},
    ]  # fmt: skip
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (report,) = ingest(tmp_path / "w.duckdb", log, TYPES, NOW)
    assert (report.accepted, report.quarantined) == (2, 0)
    with warehouse(tmp_path / "w.duckdb", read_only=True) as con:
        stored = _events(con)
    assert [(u, i) for u, i, *_ in stored] == [("1", "a"), ("u2", "7")]  # no quotes kept
    assert str(stored[1][3]) == "2026-02-01 10:00:00"  # epoch seconds beside ISO text


def test_a_json_array_file_loads_its_records(tmp_path: Path) -> None:
    log = tmp_path / "array.json"
    record = {"user_id": "u1", "item_id": "i1", "event_type": "click",
              "event_timestamp": "2026-02-01T10:00:00Z"}  # fmt: skip
    log.write_text(json.dumps([record, dict(record, item_id="i2")]))
    (report,) = ingest(tmp_path / "w.duckdb", log, TYPES, NOW)
    assert (report.read, report.accepted, report.quarantined) == (2, 2, 0)


def test_csv_quoting_and_malformed_lines(tmp_path: Path) -> None:
    """Standard quoting (a quoted newline, a quoted comma) is data; a line with too many or
    too few fields, or not UTF-8, is quarantined under its line number, the rest loads."""
    good = [f"e{n},u{n},i{n},click,2026-02-01T10:00:00Z,,s{n},{n}" for n in range(30)]
    lines = [HEADER, *good[:10],
             'e-q,u-q,i-q,view,2026-02-01T11:00:00Z,,"a session, with\na newline",1',
             "e-long,u,i,click,2026-02-01T10:00:00Z,,s,1,EXTRA",
             "e-short,u,i",
             *good[10:]]  # fmt: skip
    log = tmp_path / "log.csv"
    log.write_bytes(("\n".join(lines) + "\n").encode() + b"e-lat,caf\xe9,i,click,2026-02-01,,s,1\n")
    db = tmp_path / "w.duckdb"
    (report,) = ingest(db, log, TYPES, NOW)
    assert (report.read, report.accepted, report.quarantined) == (34, 31, 3)
    assert report.balanced
    with warehouse(db, read_only=True) as con:
        session = con.execute("SELECT session_id FROM events WHERE event_id = 'e-q'").fetchall()
        quarantined = con.execute(
            "SELECT reason, record FROM quarantine ORDER BY source_row"
        ).fetchall()
    assert session == [("a session, with\na newline",)]
    assert [r for r, _ in quarantined] == [
        "malformed CSV line: too many columns",
        "malformed CSV line: missing columns",
        "malformed CSV line: invalid encoding",
    ]
    assert "EXTRA" in quarantined[0][1]  # the raw line is kept


def test_timezone_aware_parquet_timestamps_are_converted_to_utc(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "item_id": ["i1", "i2"],
            "event_type": ["click", "view"],
            "event_timestamp": pd.to_datetime(["2026-02-01 11:00", "2026-02-01 12:00"]).tz_localize(
                "Europe/Paris"
            ),
        }
    )
    frame.to_parquet(tmp_path / "tz.parquet")
    (report,) = ingest(tmp_path / "w.duckdb", tmp_path / "tz.parquet", TYPES, NOW)
    assert report.accepted == 2
    with warehouse(tmp_path / "w.duckdb", read_only=True) as con:
        times = [str(r[3]) for r in _events(con)]
    assert times == ["2026-02-01 10:00:00", "2026-02-01 11:00:00"]


def test_the_same_file_through_another_path_is_quarantined_once(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    log = tmp_path / "in" / "log.csv"
    log.write_text(f"{HEADER}\ne1,u1,i1,hover,2026-02-01T10:00:00Z,,s,1\n")
    (tmp_path / "link").symlink_to(tmp_path / "in")
    db = tmp_path / "w.duckdb"
    for spelling in (log, tmp_path / "in" / ".." / "in" / "log.csv", tmp_path / "link/log.csv"):
        (report,) = ingest(db, spelling, TYPES, NOW)
        assert report.quarantined == 1
    assert _count(db, "quarantine") == 1


def test_a_load_whose_second_file_fails_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rows = [f"e{n},u{n},i{n},click,2026-02-01T10:00:00Z,,s,1" for n in range(1000)]
    (folder / "a.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    (folder / "b.csv").write_text(f"{HEADER}\n")
    db = tmp_path / "w.duckdb"
    ingest(db, folder / "b.csv", TYPES, NOW)  # an existing warehouse, empty

    def failing_late(path: Path) -> str:  # reads fine, then fails while loading
        if path.name == "b.csv":
            fail = "error('disk went away') IS NULL"
            return f"(SELECT range::VARCHAR AS user_id FROM range(3) WHERE {fail})"
        return plain_reader(path)

    with pytest.raises(IngestError, match=r"b\.csv: cannot be read: .*disk went away"):
        ingest(db, folder, TYPES, NOW, events_reader=failing_late)
    assert _count(db) == 0 and _count(db, "quarantine") == 0
    assert not list(tmp_path.glob("w.duckdb.writing*"))
    # The pre-check reads every file as the load does, so it finds it before any load.
    with pytest.raises(IngestError, match=r"b\.csv: cannot be read: .*disk went away"):
        check_readable(folder, failing_late)


def test_readers_are_not_blocked_while_a_writer_writes(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    log = tmp_path / "log.csv"
    log.write_text(f"{HEADER}\ne1,u1,i1,click,2026-02-01T10:00:00Z,,s,1\n")
    ingest(db, log, TYPES, NOW)
    count = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print(c.execute('SELECT count(*) FROM events').fetchall()[0][0])"
    )
    reader = [sys.executable, "-c", count, str(db)]
    with writing(db) as con:
        _add(con, "e2")
        during = subprocess.run(reader, capture_output=True, text=True, check=True)
        assert during.stdout.strip() == "1"  # another process reads the last committed state
    after = subprocess.run(reader, capture_output=True, text=True, check=True)
    assert after.stdout.strip() == "2"


def test_writers_queue_and_say_so(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    waits: list[str] = []
    first_inside, release = threading.Event(), threading.Event()

    def add(event_id: str, hold: bool) -> None:
        with writing(db, on_wait=waits.append) as con:
            if hold:
                first_inside.set()
                release.wait(10)
            _add(con, event_id)

    first = threading.Thread(target=add, args=("e1", True))
    first.start()
    assert first_inside.wait(10)
    second = threading.Thread(target=add, args=("e2", False))
    second.start()
    second.join(0.5)
    assert second.is_alive()  # queued behind the first writer, not failed
    release.set()
    first.join(10)
    second.join(10)
    assert len(waits) == 1 and "another process is writing" in waits[0]
    assert _count(db) == 2  # neither write lost


def test_a_killed_writer_leaves_the_warehouse_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    with writing(db) as con:
        _add(con, "e1")
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from ranking.warehouse import writing\n"
        "with writing(Path(sys.argv[1])) as con:\n"
        '    con.execute("DELETE FROM events")\n'
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(db)], check=False,
                          cwd=Path(__file__).resolve().parents[3])  # fmt: skip
    assert done.returncode == -signal.SIGKILL
    assert _count(db) == 1
    with writing(db) as con:  # the next writer starts from the committed file
        assert con.execute("SELECT count(*) FROM events").fetchall()[0][0] == 1
    assert not (tmp_path / "w.duckdb.writing").exists()
    assert os.path.getsize(db) > 0


IMPLAUSIBLE = [
    ({"value": "NaN"}, "value is not finite"),
    ({"value": "inf"}, "value is not finite"),
    ({"position": "1.5"}, "position is not an integer"),
    ({"position": "1e12"}, "position is not an integer"),
    ({"event_timestamp": "0"}, "event_timestamp before 1990-01-01"),  # epoch 0
    ({"event_timestamp": "1900-01-01T00:00:00"}, "event_timestamp before 1990-01-01"),
    ({"event_timestamp": "0001-01-01T00:00:00"}, "event_timestamp before 1990-01-01"),
    ({"user_id": "a\x00b"}, "user_id holds control characters"),
    ({"item_id": "evil\u202etxt"}, "item_id holds control characters"),
    ({"user_id": "u" * 1_000_000}, "user_id over 256 characters"),
]


@pytest.mark.parametrize(("change", "reason"), IMPLAUSIBLE,
                         ids=[r + str(i) for i, (_, r) in enumerate(IMPLAUSIBLE)])  # fmt: skip
def test_implausible_values_are_quarantined_with_the_rule_they_break(
    tmp_path: Path, change: dict, reason: str
) -> None:
    good = {"user_id": "u1", "item_id": "i1", "event_type": "click",
            "event_timestamp": "2026-02-01T10:00:00Z", "value": "2.5", "position": "3"}  # fmt: skip
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps(good) + "\n" + json.dumps(good | change) + "\n")
    (report,) = ingest(tmp_path / "w.duckdb", log, TYPES, NOW)
    assert (report.accepted, report.quarantined, report.reasons) == (1, 1, {reason: 1})


def test_an_integral_position_written_as_a_float_is_an_integer(tmp_path: Path) -> None:
    row = {"user_id": "u1", "item_id": "i1", "event_type": "click",
           "event_timestamp": "2026-02-01T10:00:00Z", "position": 2.0}  # fmt: skip
    frame = pd.DataFrame([row])
    frame.to_parquet(tmp_path / "p.parquet")
    (report,) = ingest(tmp_path / "w.duckdb", tmp_path / "p.parquet", TYPES, NOW)
    assert report.accepted == 1
    with warehouse(tmp_path / "w.duckdb", read_only=True) as con:
        assert con.execute("SELECT position FROM events").fetchall() == [(2,)]
