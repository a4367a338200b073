"""The DuckDB warehouse: its tables, how to open it, and the small helpers every stage uses.

Tables: ``events`` (accepted rows, typed), ``items`` (the catalogue, newest row per item)
and ``quarantine`` (rows that broke the data contract, with the reason and the raw record).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb

from ranking.settings import Settings

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id VARCHAR NOT NULL,
    user_id VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL,
    event_timestamp TIMESTAMP NOT NULL,  -- UTC
    value DOUBLE,
    session_id VARCHAR,
    position INTEGER,
    source_file VARCHAR,
    loaded_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS items (
    item_id VARCHAR PRIMARY KEY,
    category VARCHAR,
    primary_category VARCHAR,
    created_at TIMESTAMP,
    price DOUBLE,
    available BOOLEAN,
    loaded_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS quarantine (
    quarantine_id VARCHAR,
    target VARCHAR,         -- 'events' or 'items'
    source_file VARCHAR,
    source_row BIGINT,      -- 1-based row of the record in its file
    reason VARCHAR,
    record VARCHAR,         -- the raw record, as JSON
    quarantined_at TIMESTAMP
);
"""

TABLES = ("events", "items", "quarantine")


@contextmanager
def warehouse(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse (creating its tables) and close it afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        con.execute("SET TimeZone = 'UTC'")
        if not read_only:
            con.execute(SCHEMA)
        yield con
    finally:
        con.close()


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None):
    """The single value a query returns (DuckDB 2 wants every result fetched whole)."""
    return con.execute(sql, params or []).fetchall()[0][0]


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def warehouse_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Row counts of the warehouse tables."""
    return {t: scalar(con, f"SELECT count(*) FROM {t}") for t in TABLES}


def event_time_range(warehouse_path: Path) -> tuple[datetime, datetime] | None:
    """Oldest and newest accepted event time (naive UTC), or None for an empty warehouse."""
    with warehouse(warehouse_path, read_only=True) as con:
        row = con.execute(
            "SELECT min(event_timestamp), max(event_timestamp) FROM events"
        ).fetchall()
    return None if row[0][0] is None else (row[0][0], row[0][1])


def most_active_user(warehouse_path: Path) -> str:
    """The user with the most events (ties: the smallest id), e.g. for a sample ranking."""
    with warehouse(warehouse_path, read_only=True) as con:
        return con.execute(
            "SELECT user_id FROM events GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1"
        ).fetchall()[0][0]


def positive_sql(settings: Settings, alias: str = "e") -> str:
    """SQL predicate: the event counts as relevant (same rule as the labels)."""
    weights = [t for t, w in settings.events.label_weights.items() if w > 0]
    kinds = ", ".join(f"'{t}'" for t in sorted(weights)) or "NULL"
    return (
        f"({alias}.event_type IN ({kinds}) OR ({alias}.event_type = 'rating' AND "
        f"floor(coalesce({alias}.value, 0)) - {float(settings.events.rating_label_offset)} > 0))"
    )


def data_before_key(con: duckdb.DuckDBPyConnection, before: datetime) -> tuple:
    """What a point-in-time computation at ``before`` depends on, for in-process caches:
    the database files behind ``con``, the events before ``before`` (count and newest; rows
    are only ever added) and a hash of the catalogue (items are replaced in place)."""
    files = con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal").fetchall()
    events = con.execute(
        """
        SELECT count(*), max(event_timestamp),
               (SELECT (count(*), sum(hash(item_id, available, primary_category, created_at)))
                FROM items)
        FROM events WHERE event_timestamp < ?::TIMESTAMP
        """,
        [before],
    ).fetchall()[0]
    return (tuple(sorted(str(f) for (f,) in files)), *events)
