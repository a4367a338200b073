"""Property: for any events file (CSV, JSON Lines or Parquet) mixing good and nasty values,
every row lands in exactly one place, every accepted row equals its source, and every
count is what the warehouse holds.

The default suite runs ``FUZZ_EXAMPLES`` files (200); ``make test-faults`` runs 10,000
(``RANKING_FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ranking.ingest.contract import load_events_file
from ranking.warehouse import SCHEMA
from tests.conftest import NOW

TYPES = ["click", "view", "purchase"]
FUZZ_EXAMPLES = int(os.environ.get("RANKING_FUZZ_EXAMPLES", "200"))
EPOCH = datetime(1970, 1, 1)

# Ids: plain, numeric, unicode, padded, quoted, and the implausible kinds.
ids = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True),
    st.integers(0, 10**9).map(str),
    st.text(min_size=1, max_size=12),  # anything, controls and bidi marks included
    st.sampled_from(["", " ", " u1 ", '"u2"', "'x'", "a,b", "new\nline", "x" * 300]),
)


@st.composite
def timestamps(draw) -> tuple[object, datetime | None]:
    """(as written, the instant it means or None when it means none)."""
    moment = draw(st.datetimes(datetime(1900, 1, 1), datetime(2027, 12, 31))).replace(microsecond=0)
    form = draw(st.sampled_from(["iso", "iso_z", "offset", "seconds", "millis", "junk"]))
    seconds = int((moment - EPOCH).total_seconds())
    if form == "iso":
        return moment.isoformat(), moment
    if form == "iso_z":
        return moment.isoformat() + "Z", moment
    if form == "offset":  # the same instant, written in UTC+2
        return (moment + timedelta(hours=2)).isoformat() + "+02:00", moment
    if form == "seconds" and seconds >= 0:
        return seconds, moment
    if form == "millis" and seconds * 1000 > 1e11:
        return seconds * 1000, moment
    return draw(st.sampled_from(["", "yesterday", "2026-13-45", "NaN"])), None


values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 10**6),
    st.sampled_from(["", "abc", "1e400", "-0.0"]),
)
positions = st.one_of(st.none(), st.integers(-3, 500), st.floats(-2, 50), st.just("top"))


@st.composite
def event_rows(draw) -> tuple[list[dict], list[datetime | None]]:
    """Rows as written, and the instant each row's event_timestamp means (None: none)."""
    rows, instants = [], []
    for n in range(draw(st.integers(1, 25))):
        if rows and draw(st.integers(0, 9)) == 0:
            k = draw(st.integers(0, len(rows) - 1))
            rows.append(dict(rows[k]))  # an exact repeat
            instants.append(instants[k])
            continue
        written, instant = draw(timestamps())
        instants.append(instant)
        rows.append(
            {
                "event_id": f"e{n}",
                "user_id": draw(ids),
                "item_id": draw(ids),
                "event_type": draw(st.sampled_from([*TYPES, "CLICK", "hover", ""])),
                "event_timestamp": written,
                "value": draw(values),
                "position": draw(positions),
            }
        )
    return rows, instants


def _write(rows: list[dict], fmt: str, folder: Path) -> Path:
    path = folder / f"events.{fmt}"
    if fmt == "jsonl":  # JSON keeps numbers as numbers: mixed types per column
        text = "\n".join(json.dumps(r, allow_nan=True) for r in rows) + "\n"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    elif fmt == "csv":
        with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    else:  # Parquet columns hold one type: text
        columns = {k: [None if r[k] is None else str(r[k]) for r in rows] for k in rows[0]}
        pq.write_table(pa.table(columns), path)
    return path


def _text(value: object) -> str | None:
    """What the contract keeps of a field: text, spaces, tabs and line breaks trimmed, empty
    as missing."""
    if value is None:
        return None
    text = str(value).strip(" \t\n\r")
    return text or None


def _representable(rows: list[dict], fmt: str) -> bool:
    """Lone surrogates cannot be written as UTF-8; NUL cannot be written to CSV."""
    for row in rows:
        for v in row.values():
            if isinstance(v, str):
                if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
                    return False
                if fmt == "csv" and "\x00" in v:
                    return False
    return True


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(drawn=event_rows(), fmt=st.sampled_from(["csv", "jsonl", "parquet"]))
def test_every_row_lands_in_exactly_one_place_and_accepted_rows_equal_their_source(
    drawn: tuple[list[dict], list[datetime | None]], fmt: str
) -> None:
    rows, instants = drawn
    if not _representable(rows, fmt):
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(rows, fmt, Path(tmp))
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(SCHEMA)
            report = load_events_file(con, path, TYPES, NOW)
            events = con.execute(
                "SELECT event_id, user_id, item_id, event_type, event_timestamp FROM events"
            ).fetchall()
            quarantined = con.execute("SELECT source_row, reason FROM quarantine").fetchall()
        finally:
            con.close()

    # Counts are what the warehouse holds, and they add up.
    assert report.read == len(rows)
    assert report.accepted == len(events)
    assert report.quarantined == len(quarantined)
    assert report.balanced

    # Each source row: accepted (first of its event_id), quarantined, or a duplicate.
    first_row = {}
    for n, row in enumerate(rows, start=1):
        first_row.setdefault(row["event_id"], n)
    accepted_rows = {first_row[e[0]] for e in events}
    quarantined_rows = {r for r, _ in quarantined}
    assert not accepted_rows & quarantined_rows
    duplicates = [n for n in range(1, len(rows) + 1)
                  if n not in accepted_rows and n not in quarantined_rows]  # fmt: skip
    assert len(duplicates) == report.duplicates
    for n in duplicates:  # a repeat of a row that was accepted
        assert first_row[rows[n - 1]["event_id"]] in accepted_rows

    # Every accepted row equals its source: ids verbatim (spaces trimmed), type, instant.
    for event_id, user_id, item_id, event_type, moment in events:
        n = first_row[event_id] - 1
        source = rows[n]
        assert user_id == _text(source["user_id"])
        assert item_id == _text(source["item_id"])
        assert event_type == _text(source["event_type"]).lower()
        assert moment == instants[n]
        assert NOW >= moment >= datetime(1990, 1, 1)
    for n, instant in enumerate(instants, start=1):  # a plausible, well-formed row is kept
        if instant is not None and not datetime(1990, 1, 1) <= instant <= NOW:
            assert n in quarantined_rows
