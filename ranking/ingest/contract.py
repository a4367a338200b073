"""Checked loading of events and items files into the warehouse (the data contract).

Input follows the data contract (see README): CSV, Parquet or JSON Lines, one file or a
folder of them. Every row read ends up in exactly one of three places, so that
``read == accepted + quarantined + duplicates`` for every load:

* ``events`` (accepted rows, typed),
* ``quarantine`` (rows that break the contract, with the reason and the raw record),
* nowhere, counted as a duplicate (an ``event_id`` already loaded or repeated in the batch).

``event_id`` is derived from the row's content when absent, so loading a file twice adds
nothing. All the work is DuckDB SQL over the file; Python only assembles the statements.
Other layouts (MovieLens, YAML column mappings) plug in as a :data:`Reader`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from ranking.errors import IngestError
from ranking.ingest.readers import (
    SUPPORTED_SUFFIXES,
    FileSource,
    Reader,
    list_input_files,
    plain_reader,
    read_through,
    stage,
)
from ranking.ingest.rules import (
    EVENT_FIELDS,
    ITEM_FIELDS,
    BadOptional,
    count_nulled,
    id_reasons,
    reason_branches,
    served_log_reasons,
    typed_columns,
)
from ranking.schema import (
    EARLIEST_EVENT_TIMESTAMP,
    EVENT_COLUMNS,
    ITEM_COLUMNS,
    is_served_log,
)
from ranking.warehouse import quote, scalar, writing

__all__ = ["SUPPORTED_SUFFIXES", "LoadReport", "Reader", "ingest", "list_input_files",
           "plain_reader"]  # fmt: skip


@dataclass
class LoadReport:
    """What one load did. ``read == accepted + quarantined + duplicates`` always holds."""

    target: str
    files: list[str] = field(default_factory=list)
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    #: Bad optional fields set to NULL in accepted rows, per column (mapped logs).
    nulled: dict[str, int] = field(default_factory=dict)

    def add(self, other: LoadReport) -> None:
        self.files += other.files
        self.read += other.read
        self.accepted += other.accepted
        self.quarantined += other.quarantined
        self.duplicates += other.duplicates
        for reason, n in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + n
        for column, n in other.nulled.items():
            self.nulled[column] = self.nulled.get(column, 0) + n

    @property
    def balanced(self) -> bool:
        return self.read == self.accepted + self.quarantined + self.duplicates

    def summary(self) -> str:
        nulled = sum(self.nulled.values())
        return (
            f"{self.target}: read {self.read:,} = accepted {self.accepted:,} + quarantined "
            f"{self.quarantined:,} + duplicates {self.duplicates:,}"
            + (f" ({nulled:,} bad optional field{'s' * (nulled != 1)} nulled)" if nulled else "")
        )

    def details(self) -> list[str]:
        """One line per quarantine reason and per column with nulled fields."""
        return [f"quarantined: {reason}: {n}" for reason, n in sorted(self.reasons.items())] + [
            f"nulled, row kept: {column}: {n}" for column, n in sorted(self.nulled.items())
        ]


def _quarantine_bad(
    con: duckdb.DuckDBPyConnection,
    target: str,
    source: FileSource,
    columns: list[str],
    now: datetime,
) -> dict[str, int]:
    """Move rows of ``checked`` with a reason into ``quarantine`` (once) and count reasons.

    A row's quarantine id is its file's content digest and its row number, so the same
    file loaded again, through any path spelling, adds nothing."""
    fields = "to_json(struct_pack(" + ", ".join(f"{c} := {c}" for c in columns) + "))"
    record = (f"(CASE WHEN _raw_line IS NULL THEN {fields} "
              "ELSE to_json(struct_pack(csv_line := _raw_line)) END)::VARCHAR")  # fmt: skip
    # a malformed line is keyed by its line number, any other row by its record number
    row_key = "CASE WHEN _raw_line IS NULL THEN _row::VARCHAR ELSE 'line ' || _row END"
    con.execute(
        f"""
        INSERT INTO quarantine
        SELECT q.* FROM (
            SELECT md5({quote(target)} || {quote(source.digest)} || {row_key})
                       AS quarantine_id,
                   {quote(target)}, {quote(source.name)}, _row, reason, {record}, ?::TIMESTAMP
            FROM checked WHERE reason IS NOT NULL
        ) q ANTI JOIN quarantine USING (quarantine_id)
        """,
        [now],
    )
    return dict(
        con.execute(
            "SELECT reason, count(*) FROM checked WHERE reason IS NOT NULL GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )


def _check_balance(report: LoadReport, path: Path) -> LoadReport:
    """Every count is measured; if they do not add up a row went missing: fail the load."""
    if not report.balanced:
        raise IngestError(
            f"{path}: counts do not add up (read {report.read} != accepted {report.accepted}"
            f" + quarantined {report.quarantined} + duplicates {report.duplicates}); "
            "nothing was loaded"
        )
    return report


def load_events_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    event_types: Iterable[str],
    now: datetime,
    reader: Reader = plain_reader,
    served_id_length: int | None = None,
    home: Path | None = None,
    earliest: datetime = EARLIEST_EVENT_TIMESTAMP,
    bad_optional: BadOptional = "quarantine_row",
) -> LoadReport:
    """Load one events file; see the module docstring for what goes where. A served log
    (``served-<day>.jsonl``, see :func:`ranking.schema.is_served_log`) is also checked
    against what the service produces, with ``served_id_length`` its longest id. File
    names inside ``home`` are recorded relative to it. ``bad_optional`` says what a bad
    ``value`` or ``position`` does (:mod:`ranking.ingest.rules`)."""
    source = FileSource.of(path, home)
    stage(con, path, EVENT_COLUMNS, reader)
    types_sql = ", ".join(quote(t) for t in sorted(event_types))
    served = (served_log_reasons(served_id_length)
              if served_id_length is not None and is_served_log(path.name) else "")  # fmt: skip
    rules = reason_branches(EVENT_FIELDS, bad_optional) + served
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE checked AS
        SELECT *,
            lower(event_type) AS event_type_norm,
            {typed_columns(EVENT_FIELDS, bad_optional)},
            CASE
                WHEN _malformed IS NOT NULL THEN _malformed
                WHEN user_id IS NULL THEN 'missing user_id'
                WHEN item_id IS NULL THEN 'missing item_id'{id_reasons(["user_id", "item_id"])}
                WHEN event_type IS NULL THEN 'missing event_type'
                WHEN lower(event_type) NOT IN ({types_sql})
                    THEN 'unknown event_type ' || event_type
                WHEN event_timestamp IS NULL THEN 'missing event_timestamp'
                WHEN _event_timestamp_parsed IS NULL THEN 'unparseable event_timestamp'
                WHEN _event_timestamp_parsed > ?::TIMESTAMP THEN 'future event_timestamp'
                WHEN _event_timestamp_parsed < ?::TIMESTAMP
                    THEN 'event_timestamp before ' || strftime(?::TIMESTAMP, '%Y-%m-%d'){rules}
            END AS reason,
            coalesce(event_id, md5(concat_ws('|', user_id, item_id, lower(event_type),
                     _event_timestamp_parsed::VARCHAR, value, session_id, position))) AS _id
        FROM staged
        """,
        [now, earliest, earliest],
    )
    reasons = _quarantine_bad(con, "events", source, EVENT_COLUMNS, now)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE passed AS
        SELECT *, (row_number() OVER (PARTITION BY _id ORDER BY _row) > 1
                   OR EXISTS (SELECT 1 FROM events e WHERE e.event_id = c._id)) AS _duplicate
        FROM checked c WHERE reason IS NULL
        """
    )
    before = scalar(con, "SELECT count(*) FROM events")
    con.execute(
        """
        INSERT INTO events
        SELECT _id, user_id, item_id, event_type_norm, _event_timestamp_parsed, value_num,
               session_id, position_num, ?, ?::TIMESTAMP
        FROM passed WHERE NOT _duplicate
        """,
        [source.name, now],
    )
    report = LoadReport(
        target="events",
        files=[source.name],
        read=scalar(con, "SELECT count(*) FROM staged"),
        accepted=scalar(con, "SELECT count(*) FROM events") - before,
        quarantined=sum(reasons.values()),
        duplicates=scalar(con, "SELECT count(*) FROM passed WHERE _duplicate"),
        reasons=reasons,
        nulled=count_nulled(con, EVENT_FIELDS, "passed WHERE NOT _duplicate"),
    )
    return _check_balance(report, path)


def load_items_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    now: datetime,
    reader: Reader = plain_reader,
    home: Path | None = None,
    bad_optional: BadOptional = "quarantine_row",
) -> LoadReport:
    """Load one items file; a later row for an ``item_id`` (in the file or a later load)
    replaces the earlier one, which counts as a duplicate. ``bad_optional`` says what a bad
    ``created_at``, ``price`` or ``available`` does (:mod:`ranking.ingest.rules`)."""
    source = FileSource.of(path, home)
    stage(con, path, ITEM_COLUMNS, reader)
    optional = reason_branches(ITEM_FIELDS, bad_optional)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE checked AS
        SELECT *,
            {typed_columns(ITEM_FIELDS, bad_optional)},
            CASE
                WHEN _malformed IS NOT NULL THEN _malformed
                WHEN item_id IS NULL THEN 'missing item_id'{id_reasons(["item_id"])}{optional}
            END AS reason
        FROM staged
        """
    )
    reasons = _quarantine_bad(con, "items", source, ITEM_COLUMNS, now)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE passed AS
        SELECT *, row_number() OVER (PARTITION BY item_id ORDER BY _row DESC) > 1 AS _duplicate
        FROM checked WHERE reason IS NULL
        """
    )
    con.execute(
        """
        INSERT OR REPLACE INTO items
        SELECT item_id, category, split_part(category, '|', 1), created_at_ts, price_num,
               coalesce(avail, true), ?::TIMESTAMP
        FROM passed WHERE NOT _duplicate
        """,
        [now],
    )
    report = LoadReport(
        target="items",
        files=[source.name],
        read=scalar(con, "SELECT count(*) FROM staged"),
        accepted=scalar(con, "SELECT count(*) FROM passed WHERE NOT _duplicate"),
        quarantined=sum(reasons.values()),
        duplicates=scalar(con, "SELECT count(*) FROM passed WHERE _duplicate"),
        reasons=reasons,
        nulled=count_nulled(con, ITEM_FIELDS, "passed WHERE NOT _duplicate"),
    )
    return _check_balance(report, path)


def _files(path: Path | list[Path]) -> list[Path]:
    if isinstance(path, list):
        return [f for p in path for f in list_input_files(p)]
    return list_input_files(path)


def load_events(
    con: duckdb.DuckDBPyConnection,
    path: Path | list[Path],
    event_types: Iterable[str],
    now: datetime,
    reader: Reader = plain_reader,
    served_id_length: int | None = None,
    home: Path | None = None,
    earliest: datetime = EARLIEST_EVENT_TIMESTAMP,
    bad_optional: BadOptional = "quarantine_row",
) -> LoadReport:
    """Load an events file, folder or list of files; unreadable files raise IngestError."""
    report = LoadReport(target="events")
    types = list(event_types)
    for file in _files(path):
        with _naming(file):
            report.add(load_events_file(con, file, types, now, reader, served_id_length, home,
                                        earliest, bad_optional))  # fmt: skip
    return report


def load_items(
    con: duckdb.DuckDBPyConnection,
    path: Path | list[Path],
    now: datetime,
    reader: Reader = plain_reader,
    home: Path | None = None,
    bad_optional: BadOptional = "quarantine_row",
) -> LoadReport:
    """Load an items file, folder or list of files."""
    report = LoadReport(target="items")
    for file in _files(path):
        with _naming(file):
            report.add(load_items_file(con, file, now, reader, home, bad_optional))
    return report


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """A database error while loading ``path`` becomes one line naming the file."""
    try:
        yield
    except duckdb.Error as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise IngestError(f"{path}: cannot be loaded: {first_line}") from None


def ingest(
    warehouse_path: Path,
    events_path: Path | list[Path],
    event_types: Iterable[str],
    now: datetime,
    items_path: Path | list[Path] | None = None,
    events_reader: Reader = plain_reader,
    items_reader: Reader = plain_reader,
    served_id_length: int | None = None,
    earliest: datetime = EARLIEST_EVENT_TIMESTAMP,
    bad_optional: BadOptional = "quarantine_row",
) -> list[LoadReport]:
    """Load items (when given) then events into the warehouse; one report per target.

    One call is one all-or-nothing write (:func:`ranking.warehouse.writing`): if any file
    fails, nothing of any file is kept, and readers see the warehouse as it was.
    ``events_reader`` / ``items_reader`` turn a file into contract columns: the plain
    reader for contract files, a mapping's for other layouts (see ``ranking.ingest.mapping``).
    With ``served_id_length`` (the service's ``max_id_length``), a served log's rows the
    service could not have written are quarantined with the reason. ``bad_optional``:
    a bad optional field quarantines its row (the contract) or is nulled and counted.
    """
    reports = []
    home = warehouse_path.parent
    with writing(warehouse_path) as con:
        if items_path is not None:
            reports.append(load_items(con, items_path, now, items_reader, home, bad_optional))
        reports.append(load_events(con, events_path, event_types, now, events_reader,
                                   served_id_length, home, earliest, bad_optional))  # fmt: skip
    return reports


def check_readable(
    path: Path | list[Path], reader: Reader = plain_reader, columns: Iterable[str] = EVENT_COLUMNS
) -> list[Path]:
    """Fail fast, with one message naming the file, if any input file cannot be read: every
    file is read through as the load will read it (:func:`read_through`)."""
    files = _files(path)
    for file in files:
        read_through(file, columns, reader)
    return files
