"""Point-in-time feature snapshots, computed with DuckDB SQL and written as Parquet.

A snapshot at time ``s`` describes each entity using only events strictly before ``s``:
events are bucketed by the snapshot cadence (``time_bucket``), and a bucket starting at
``b`` feeds snapshot ``s`` only when ``b < s``, i.e. when the whole bucket lies before ``s``.
Snapshots are taken at every cadence boundary from the first event (or the start of the
history window) to ``as_of``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from ranking import progress
from ranking.features.families import FAMILIES
from ranking.features.specs import FeatureFamily, FeatureSpec, Partition
from ranking.schema import POSITIVE_SQL_LIST, UNKNOWN_CATEGORY
from ranking.warehouse import scalar, warehouse

#: Buckets count from the Unix epoch, as ``ranking.times.floor_to`` does (DuckDB's own
#: origin, a Monday in 2000, would put weekly snapshots on other days than as-of times).
_ORIGIN = "TIMESTAMP '1970-01-01'"

#: Events before ``as_of`` with their cadence bucket and the item's primary category.
_EVENTS_SQL = f"""
CREATE OR REPLACE TEMP TABLE ev AS
SELECT e.user_id, e.item_id, e.event_type, e.event_timestamp, e.value, e.session_id,
       time_bucket(INTERVAL '{{cadence_s}} seconds', e.event_timestamp, {_ORIGIN}) AS bucket,
       coalesce(i.primary_category, '{UNKNOWN_CATEGORY}') AS category
FROM events e LEFT JOIN items i USING (item_id)
WHERE e.event_timestamp < ?::TIMESTAMP {{partition}}
"""

#: The snapshot grid: every cadence boundary after the first bucket of all events (a
#: partition's own first bucket may be later) or from the start of the history window,
#: up to ``as_of``.
_SNAPSHOTS_SQL = """
CREATE OR REPLACE TEMP TABLE snapshots AS
SELECT unnest(generate_series(
    greatest(time_bucket(INTERVAL '{cadence_s} seconds', ?::TIMESTAMP, TIMESTAMP '1970-01-01')
                 + INTERVAL '{cadence_s} seconds',
             time_bucket(INTERVAL '{cadence_s} seconds', ?::TIMESTAMP, TIMESTAMP '1970-01-01')),
    ?::TIMESTAMP, INTERVAL '{cadence_s} seconds')) AS ts
"""

#: What every bucket counts, per entity.
_BUCKET_COUNTS = f"""
    count(*) AS n_events,
    count(*) FILTER (WHERE event_type = 'impression') AS n_impressions,
    count(*) FILTER (WHERE event_type = 'click') AS n_clicks,
    count(*) FILTER (WHERE event_type = 'play') AS n_plays,
    count(*) FILTER (WHERE event_type = 'skip') AS n_skips,
    count(*) FILTER (WHERE event_type = 'purchase') AS n_purchases,
    count(*) FILTER (WHERE event_type IN {POSITIVE_SQL_LIST}) AS n_positive,
    sum(value) FILTER (WHERE event_type IN ('view', 'play')) AS dwell_sum,
    count(value) FILTER (WHERE event_type IN ('view', 'play')) AS dwell_n,
    sum(value) FILTER (WHERE event_type = 'rating') AS rating_sum,
    count(value) FILTER (WHERE event_type = 'rating') AS rating_n,
    count(DISTINCT session_id) AS n_sessions,
    min(event_timestamp) AS first_ts,
    max(event_timestamp) AS last_ts
"""

#: One table of per-bucket counts per entity: what the families of that entity read.
_BUCKET_TABLES = {
    "user_buckets": f"""
CREATE OR REPLACE TEMP TABLE user_buckets AS
WITH firsts AS (  -- the bucket in which the user first met each item (shown is not met)
    SELECT user_id, item_id, min(bucket) AS bucket FROM ev
    WHERE event_type <> 'impression' GROUP BY user_id, item_id
), new_items AS (
    SELECT user_id, bucket, count(*) AS n_new_items FROM firsts GROUP BY ALL
)
SELECT a.*, coalesce(n.n_new_items, 0) AS n_new_items
FROM (SELECT user_id, bucket, {_BUCKET_COUNTS} FROM ev GROUP BY user_id, bucket) a
LEFT JOIN new_items n USING (user_id, bucket)
""",
    "item_buckets": f"""
CREATE OR REPLACE TEMP TABLE item_buckets AS
SELECT item_id, bucket, {_BUCKET_COUNTS} FROM ev GROUP BY item_id, bucket
""",
    "user_category_buckets": f"""
CREATE OR REPLACE TEMP TABLE user_category_buckets AS
SELECT user_id, category, bucket, {_BUCKET_COUNTS} FROM ev GROUP BY user_id, category, bucket
""",
}

#: The bucket table each entity's families read.
BUCKETS_OF_ENTITY = {"user": "user_buckets", "item": "item_buckets",
                     "user_category": "user_category_buckets"}  # fmt: skip

#: Each bucket joined to every snapshot it lies wholly before, with its age and decay.
_AT_SNAPSHOT_SQL = """
CREATE OR REPLACE TEMP VIEW {table}_at AS
SELECT b.*, s.ts,
       (epoch(s.ts) - epoch(b.bucket)) / 86400.0 AS age_days,
       pow(0.5, (epoch(s.ts) - epoch(b.bucket)) / 86400.0 / {half_life}) AS decay
FROM {table} b JOIN snapshots s ON b.bucket < s.ts
"""


def prepare_buckets(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    cadence: timedelta,
    half_life_days: float = 7.0,
    first_snapshot: datetime | None = None,
    partition: Partition | None = None,
    first_event: datetime | None = None,
    tables: set[str] | None = None,
) -> None:
    """Bucket events, lay out the snapshot grid and the ``*_buckets_at`` views (of
    ``tables``; None: all three).

    Snapshots start at ``first_snapshot`` (aligned to the cadence) or one cadence after
    the first event (``first_event``; None: the first event read); aggregates always use
    the whole history before each snapshot. With ``partition``, only the events (and, for
    the item entity, the catalogue items) whose key hashes to it are read: the grid must
    then come from ``first_event`` of all events.
    """
    cadence_s = int(cadence.total_seconds())
    if cadence_s <= 0:
        raise ValueError("snapshot cadence must be positive")
    where = "" if partition is None else f"AND {partition.condition('e')}"
    con.execute(_EVENTS_SQL.format(cadence_s=cadence_s, partition=where), [as_of])
    if partition is not None and partition.entity == "item":
        # The item family lays its grid over the catalogue: only this partition's items.
        db = scalar(con, "SELECT current_database()")
        con.execute(f'CREATE OR REPLACE TEMP VIEW items AS SELECT * FROM "{db}".main.items i '
                    f"WHERE {partition.condition('i')}")  # fmt: skip
    if first_event is None:
        first_event = scalar(con, "SELECT min(event_timestamp) FROM ev")
    start = first_snapshot or datetime(1970, 1, 1)
    con.execute(_SNAPSHOTS_SQL.format(cadence_s=cadence_s), [first_event, start, as_of])
    for table, sql in _BUCKET_TABLES.items():
        if tables is None or table in tables:
            con.execute(sql)
            con.execute(_AT_SNAPSHOT_SQL.format(table=table, half_life=float(half_life_days)))


def _typed(spec: FeatureSpec) -> str:
    sql_type = {"Int64": "BIGINT", "Float64": "DOUBLE"}[spec.dtype]
    return f"CAST({spec.name} AS {sql_type}) AS {spec.name}"


def snapshot_times(con: duckdb.DuckDBPyConnection) -> list[datetime]:
    """Snapshot times laid out by the last :func:`compute_features` on this connection."""
    return [r[0] for r in con.execute("SELECT ts FROM snapshots ORDER BY ts").fetchall()]


def compute_features(
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    as_of: datetime,
    cadence: timedelta = timedelta(days=1),
    half_life_days: float = 7.0,
    families: tuple[FeatureFamily, ...] = FAMILIES,
    first_snapshot: datetime | None = None,
    partition: Partition | None = None,
    first_event: datetime | None = None,
) -> dict[str, int]:
    """Compute every family's snapshots up to ``as_of`` and write one Parquet file each.

    ``as_of`` is naive UTC; events at or after it are ignored. Files are replaced
    atomically (written aside, then renamed). Returns the row count of each family.
    With ``partition`` (see :func:`prepare_buckets`), ``families`` are those of its entity.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {BUCKETS_OF_ENTITY[f.entity] for f in families}
    prepare_buckets(con, as_of, cadence, half_life_days, first_snapshot, partition, first_event,
                    tables)  # fmt: skip
    if scalar(con, "SELECT count(*) FROM snapshots") == 0:
        raise ValueError(f"no events before {as_of:%Y-%m-%d %H:%M}: nothing to snapshot")
    rows: dict[str, int] = {}
    for done, family in enumerate(families):
        progress.advance("feature families", done, len(families))
        keys = ", ".join(family.entity_keys)
        target = family.parquet_path(out_dir)
        tmp = target.with_suffix(".parquet.tmp")
        try:  # an interrupted or failed write leaves no temporary file behind
            # Microsecond UTC timestamps: what Feast's DuckDB store can materialize.
            con.execute(
                f"""
                COPY (
                    SELECT {keys}, (snapshot_ts AT TIME ZONE 'UTC') AS event_timestamp,
                           {", ".join(_typed(f) for f in family.features)}
                    FROM ({family.sql}) ORDER BY snapshot_ts, {keys}
                ) TO '{tmp}' (FORMAT parquet)
                """
            )
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        rows[family.name] = scalar(con, f"SELECT count(*) FROM read_parquet('{target}')")
    progress.advance("feature families", len(families), len(families))
    return rows


def first_snapshot(as_of: datetime, history_days: int | None) -> datetime | None:
    """Where the snapshot grid starts for a history window of ``history_days`` (None: all)."""
    return None if history_days is None else as_of - timedelta(days=history_days)


@dataclass
class FeatureBuild:
    """What :func:`build_feature_tables` wrote."""

    rows: dict[str, int]
    snapshots: list[datetime]
    reused: bool = False  # True: the inputs were unchanged and nothing was written
    inputs: str = ""  # the digest of what the build read (``features.build.build_inputs``)


def build_feature_tables(
    warehouse_path: Path,
    out_dir: Path,
    as_of: datetime,
    cadence: timedelta,
    half_life_days: float,
    first_snapshot: datetime | None = None,
) -> FeatureBuild:
    """Open the warehouse, compute every family up to ``as_of``, return counts and snapshots."""
    with warehouse(warehouse_path, read_only=True) as con:  # temp tables only: never blocks
        rows = compute_features(
            con, out_dir, as_of, cadence, half_life_days, first_snapshot=first_snapshot
        )
        return FeatureBuild(rows=rows, snapshots=snapshot_times(con))
