"""Hand-written anchors for ``pipeline.py --anchors``: each does the least work a stage's
engine needs for the same input and output, written directly against that engine (no
validation, no Feast, no bookkeeping), so a stage's figure can be judged by it.

- ingest: DuckDB reads the events file into a table of a database file;
- features: DuckDB's bucketed GROUP BY of the same events (per user, item and user x
  category, by snapshot bucket), written as Parquet: the aggregation every family starts
  from, without the per-snapshot windows and decays;
- materialize: the same newest rows, one wide row per entity, inserted into SQLite;
- point-in-time: one DuckDB ASOF JOIN per family, ttl applied (Feast's join, by hand);
- train: ``xgb.train`` on a ``QuantileDMatrix`` of float32 arrays, the same parameters
  and number of rounds, no evaluation set.
"""

from __future__ import annotations

import sqlite3
import tempfile
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd


def ingest_anchor(events_file: Path) -> int:
    """Rows DuckDB loaded from ``events_file`` into a table of a fresh database file."""
    with tempfile.TemporaryDirectory() as tmp, duckdb.connect(f"{tmp}/anchor.duckdb") as con:
        con.execute(f"CREATE TABLE events AS SELECT * FROM '{events_file}'")
        return con.execute("SELECT count(*) FROM events").fetchall()[0][0]


def features_anchor(warehouse_path: Path, as_of: datetime, cadence_s: float) -> int:
    """Rows of the three bucketed GROUP BYs (counts per event type, value sums, sessions)
    of the events before ``as_of``, written as Parquet."""
    bucket = f"time_bucket(INTERVAL '{int(cadence_s)} seconds', event_timestamp, " \
             "TIMESTAMP '1970-01-01')"  # fmt: skip
    aggregates = ("count(*) AS n, sum(value) AS value_sum, count(DISTINCT session_id) AS "
                  "sessions, min(event_timestamp) AS first_ts, "
                  "max(event_timestamp) AS last_ts")  # fmt: skip
    rows = 0
    with tempfile.TemporaryDirectory() as tmp, duckdb.connect(str(warehouse_path),
                                                              read_only=True) as con:  # fmt: skip
        con.execute(
            "CREATE TEMP TABLE ev AS SELECT e.*, coalesce(i.primary_category, '') AS category "
            "FROM events e LEFT JOIN items i USING (item_id) WHERE event_timestamp < ?",
            [as_of],
        )
        for name, keys in (("user", "user_id"), ("item", "item_id"),
                           ("user_category", "user_id, category")):  # fmt: skip
            out = f"{tmp}/{name}.parquet"
            con.execute(f"COPY (SELECT {keys}, {bucket} AS bucket, event_type, {aggregates} "
                        f"FROM ev GROUP BY ALL) TO '{out}' (FORMAT parquet)")  # fmt: skip
            rows += con.execute(f"SELECT count(*) FROM '{out}'").fetchall()[0][0]
    return rows


def materialize_anchor(parquet_files: list[Path], start: datetime, stop: datetime) -> int:
    """Entity rows of every file's snapshot in ``[start, stop)``, one wide row per entity,
    inserted into a fresh SQLite file (what an online store must at least write)."""
    rows = 0
    with tempfile.TemporaryDirectory() as tmp, sqlite3.connect(f"{tmp}/online.db") as db:
        for n, path in enumerate(parquet_files):
            result = duckdb.execute(
                f"SELECT * EXCLUDE (event_timestamp) FROM read_parquet('{path}') "
                "WHERE event_timestamp >= ? AND event_timestamp < ?",
                [start, stop],
            )
            names = [d[0] for d in result.description]
            found = result.fetchall()
            db.execute(f"CREATE TABLE t{n} ({', '.join(repr(c) for c in names)})")
            marks = ", ".join("?" * len(names))
            db.executemany(f"INSERT INTO t{n} VALUES ({marks})", found)
            rows += len(found)
    return rows


def asof_features(features_dir: Path, queries: pd.DataFrame) -> pd.DataFrame:
    """Every family's features for each query row, the latest snapshot at or before the
    row's time within the family's ttl: what Feast's point-in-time join returns, as one
    DuckDB ASOF JOIN per family."""
    from ranking.features import families

    con = duckdb.connect()
    keys = sorted({k for f in families.FAMILIES for k in f.entity_keys})
    con.register("queries_df", queries[["group_id", *keys, "event_timestamp"]])
    con.execute("CREATE TABLE q AS SELECT row_number() OVER () AS row_id, * FROM queries_df")
    selects, joins = [], []
    for n, family in enumerate(families.FAMILIES):
        on = " AND ".join(f"q.{k} = f{n}.{k}" for k in family.entity_keys)
        ttl = f"INTERVAL {int(family.ttl.total_seconds())} SECOND"
        joins.append(f"ASOF LEFT JOIN read_parquet('{family.parquet_path(features_dir)}') f{n} "
                     f"ON {on} AND q.event_timestamp >= f{n}.event_timestamp")  # fmt: skip
        selects += [f"CASE WHEN f{n}.event_timestamp >= q.event_timestamp - {ttl} "
                    f"THEN f{n}.{c} END AS {c}" for c in family.feature_names]  # fmt: skip
    sql = (f"SELECT q.group_id, q.item_id, {', '.join(selects)} FROM q {' '.join(joins)} "
           "ORDER BY q.row_id")  # fmt: skip
    return con.execute(sql).df()


def train_anchor(train: pd.DataFrame, features: list[str], model) -> int:
    """Rows XGBoost trained on: the project model's parameters and rounds, its training
    rows as one float32 array (``train`` sorted by group)."""
    import xgboost as xgb

    booster = model.get_booster()
    params = {k: v for k, v in model.get_xgb_params().items() if v is not None}
    params.pop("n_estimators", None)
    data = xgb.QuantileDMatrix(train[features].to_numpy(dtype=np.float32),
                               label=train["label"].to_numpy(),
                               qid=train["group_id"].to_numpy())  # fmt: skip
    xgb.train(params, data, num_boost_round=booster.num_boosted_rounds())
    return len(train)


def pit_differences(feast_frame: pd.DataFrame, asof_frame: pd.DataFrame) -> str:
    """How many feature values of the anchor differ from Feast's (float32, NaN = NaN)."""
    keys = ["group_id", "item_id"]
    a = feast_frame.sort_values(keys, ignore_index=True)
    b = asof_frame.sort_values(keys, ignore_index=True)
    columns = [c for c in b.columns if c not in keys]
    x = a[columns].to_numpy(dtype=np.float32)
    y = b[columns].to_numpy(dtype=np.float32)
    differ = ~((x == y) | (np.isnan(x) & np.isnan(y)))
    return f"{int(differ.sum()):,} of {differ.size:,}"


def rows_differing(a: Path, b: Path, keys: list[str], features: list[str]) -> int:
    """Rows of two feature files that differ: a (keys, timestamp) in one file only, or an
    integer value not equal, or a float value off by more than 1e-9 relative (DuckDB's
    parallel sums add doubles in no fixed order, so two runs of one build differ in the
    last bits): 0 when the files hold the same rows."""
    on = " AND ".join(f"x.{k} IS NOT DISTINCT FROM y.{k}" for k in [*keys, "event_timestamp"])
    unequal = " OR ".join(
        f"(x.{f} IS DISTINCT FROM y.{f} AND NOT coalesce(abs(x.{f} - y.{f}) <= "
        f"1e-9 * greatest(abs(x.{f}), abs(y.{f}), 1e-300), false))"
        for f in features
    )
    con = duckdb.connect()
    try:
        return con.execute(
            f"SELECT count(*) FROM read_parquet(?) x FULL JOIN read_parquet(?) y ON {on} "
            f"WHERE x.event_timestamp IS NULL OR y.event_timestamp IS NULL OR {unequal}",
            [str(a), str(b)],
        ).fetchall()[0][0]
    finally:
        con.close()
