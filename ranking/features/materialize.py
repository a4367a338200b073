"""Materialize the newest snapshot into the online store by whole columns, and nothing
when nothing changed.

Feast's stock materialize turns every value into a protobuf message in Python and
writes each entity through the online store's ``online_write_batch``. This path keeps
what Feast decides (which row of each entity is the newest in the window: the same
selection as ``pull_latest_from_table_or_query``, tested equal; its table names; its
entity-key encoding, version 3) and changes how the rows are made: each column becomes
Feast's ``Value`` protobuf bytes with numpy (the wire format of one scalar field is a tag
byte and the value).

- The embedded store (:mod:`ranking.features.online_store`, one row per entity) gets
  each entity's values packed into one ``Map`` protobuf, the bytes its own
  ``online_write_batch`` writes (tested), in the primary key's order, by batches of
  100k rows, each batch one SQL statement over three blobs
  (:func:`ranking.features.online_store.upsert_bulk`).
- Feast's SQLite store (``type: sqlite``, one row per value) gets its rows byte for
  byte, by one ``executemany`` per view.
- Redis (the shared profile) gets Feast's hashes (:mod:`ranking.features.materialize_redis`).

Any other online store, and a value type not encoded here, go through Feast's provider,
view by view, as ``FeatureStore.materialize`` does.

In SQLite, a view whose selected rows hash to what was last written into this very
database, and whose table still holds the rows counted then, is skipped: the digest is
kept in the online store's own file, so a deleted, replaced or re-created table is
written again.

No path does ``FeatureStore.materialize``'s registry bookkeeping: it appends the window
to each view in the registry, which the repo cannot declare, so from then on ``feast
plan`` and ``feast apply`` report every view as updated on an unchanged repo. Nothing
here asks Feast what was materialized: the window is explicit.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureStore, FeatureView
from feast.infra.online_stores.sqlite import _table_id
from feast.infra.provider import get_provider
from feast.value_type import ValueType
from tqdm import tqdm

from ranking.features.materialize_redis import write_redis
from ranking.features.online_rows import (
    column_epoch_micros,
    encodable,
    encode_values,
    entity_key_array,
    entity_keys,
    latest_rows,
    value_matrix,
)
from ranking.features.online_store import (
    STORE_TYPE,
    connect,
    ensure_table,
    pack_matrices_flat,
    pack_rows,
    upsert_bulk,
)
from ranking.features.online_store import table_name as packed_table
from ranking.warehouse import scratch

#: Entity rows packed at once (their byte matrices are a few hundred bytes a row).
_PACK_CHUNK = 100_000

_DIGESTS = "ranking_materialized"  # this module's table: view -> digest of its rows, count


@dataclass
class MaterializeReport:
    """Entity rows written per view, the views skipped as unchanged, and those left to
    Feast's own materialize."""

    written: dict[str, int] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    stock: list[str] = field(default_factory=list)

    def describe(self) -> str:
        written = ", ".join(f"{view} {n:,}" for view, n in self.written.items()) or "nothing"
        line = f"materialized entity rows: {written}; unchanged: {', '.join(self.unchanged) or '-'}"
        return line + (f"; through Feast's materialize: {', '.join(self.stock)}" if self.stock
                       else "")  # fmt: skip


def _digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _epoch_seconds(column: pa.ChunkedArray) -> list[int]:
    """Event times as Feast's SQLite adapter stores them: whole seconds since the epoch."""
    return (column_epoch_micros(column) // 1_000_000).tolist()


def _write_values(con: sqlite3.Connection, name: str, view: FeatureView, table: pa.Table):
    """Feast's SQLite rows: one per (entity, feature)."""
    join_keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
    keys = entity_keys(table, join_keys)
    event_ts = _epoch_seconds(table.column(view.batch_source.timestamp_field))
    rows: list[tuple] = []
    for feature in view.features:
        blobs, texts = encode_values(table.column(feature.name), feature.dtype.to_value_type())
        feature_name = feature.name
        rows += [(k, feature_name, b, t, ts) for k, b, t, ts in zip(keys, blobs, texts, event_ts,
                                                                   strict=True)]  # fmt: skip
    rows.sort(key=lambda row: (row[0], row[1]))  # the primary key's order: appends, not seeks
    con.executemany(
        f'INSERT INTO "{name}" (entity_key, feature_name, value, value_text, event_ts, '
        "created_ts) VALUES (?, ?, ?, ?, ?, NULL) ON CONFLICT(entity_key, feature_name) DO "
        "UPDATE SET value = excluded.value, value_text = excluded.value_text, "
        "event_ts = excluded.event_ts, created_ts = excluded.created_ts",
        rows,
    )


def _packed_features(view: FeatureView, part: pa.Table) -> tuple[bytes, np.ndarray]:
    """Each row's features as one ``Map`` protobuf, back to back, and where each ends."""
    names, types = [f.name for f in view.features], [f.dtype.to_value_type() for f in view.features]
    if ValueType.STRING in types:
        values = [encode_values(part.column(n), t, with_text=False)[0]
                  for n, t in zip(names, types, strict=True)]  # fmt: skip
        packed = pack_rows(names, values)
        return b"".join(packed), np.cumsum([len(p) for p in packed], dtype=np.int64)
    # numbers only: whole byte matrices
    columns = zip(names, types, strict=True)
    return pack_matrices_flat(names, [value_matrix(part.column(n), t)[:2] for n, t in columns])


def _write_packed(con: sqlite3.Connection, name: str, view: FeatureView, table: pa.Table):
    """The packed store's rows: one per entity, in the primary key's order (appends, not
    seeks), a batch at a time (the byte matrices are wide)."""
    join_keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
    keys = entity_key_array(table, join_keys)
    order = pc.sort_indices(keys)
    keys, table = keys.take(order), table.take(order)
    micros = column_epoch_micros(table.column(view.batch_source.timestamp_field))
    for lo in range(0, table.num_rows, _PACK_CHUNK):
        features, ends = _packed_features(view, table.slice(lo, _PACK_CHUNK))
        upsert_bulk(con, name, keys.slice(lo, _PACK_CHUNK), features, ends,
                    micros[lo : lo + _PACK_CHUNK])  # fmt: skip


@dataclass(frozen=True)
class _Layout:
    """How one SQLite online store keeps a view: its table and how rows are written."""

    table: Callable[[FeatureStore, FeatureView], str]
    write: Callable[[sqlite3.Connection, str, FeatureView, pa.Table], None]
    create: Callable[[sqlite3.Connection, str], None] | None = None  # makes the table, if needed


_FEAST_SQLITE = _Layout(
    table=lambda fs, view: _table_id(
        fs.project, view, fs.config.registry.enable_online_feature_view_versioning
    ),
    write=_write_values,
)
_PACKED = _Layout(
    table=lambda fs, view: packed_table(fs.config, view),
    write=_write_packed,
    create=ensure_table,
)


def _online_path(fs: FeatureStore) -> Path:
    path = Path(fs.config.online_store.path)
    return path if path.is_absolute() else Path(fs.repo_path) / path


_LAYOUTS = {"sqlite": _FEAST_SQLITE, STORE_TYPE: _PACKED}
_WRITERS = {*_LAYOUTS, "redis"}


def materialize_newest(
    fs: FeatureStore, start: datetime, end: datetime, force: bool = False
) -> MaterializeReport:
    """Load the latest row of every entity with a snapshot in ``[start, end]`` online
    (what ``FeatureStore.materialize(start, end)`` does), skipping unchanged views unless
    ``force``."""
    report = MaterializeReport()
    views = [v for v in fs.list_feature_views() if v.online]
    kind = getattr(fs.config.online_store, "type", None)
    if fs.config.entity_key_serialization_version != 3 or kind not in _WRITERS:
        report.stock = [v.name for v in views]
    else:
        report.stock = [v.name for v in views if not encodable(v)]
        ours = [v for v in views if encodable(v)]
        if kind != "redis":
            _write_sqlite(fs, ours, start, end, report, force, _LAYOUTS[kind])
        else:  # Feast's own rule skips rows already there: nothing written is unchanged
            for view, written in write_redis(fs, ours, start, end, force).items():
                report.written[view] = written
                if not written:
                    report.unchanged.append(view)
    provider = get_provider(fs.config)
    for view in views:
        if view.name in report.stock:
            provider.materialize_single_feature_view(
                config=fs.config, feature_view=view, start_date=start, end_date=end,
                registry=fs.registry, project=fs.project,
                tqdm_builder=lambda total: tqdm(total=total, disable=True),
            )  # fmt: skip
    return report


def _write_sqlite(
    fs: FeatureStore, views: list[FeatureView], start: datetime, end: datetime,
    report: MaterializeReport, force: bool, layout: _Layout,
) -> None:  # fmt: skip
    con = connect(_online_path(fs))
    try:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_DIGESTS} (view TEXT PRIMARY KEY, digest TEXT, n INTEGER)"
        )
        with scratch() as reader:  # one DuckDB connection reads every view
            tables = {view.name: latest_rows(fs, view, start, end, reader) for view in views}
        for view in views:
            table = tables[view.name]
            name = layout.table(fs, view)
            if layout.create is not None:
                with con:
                    layout.create(con, name)
            digest = f"{name}:{_digest(table)}"
            kept = con.execute(f"SELECT digest, n FROM {_DIGESTS} WHERE view = ?", [view.name])
            count = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            if (kept.fetchone() or (None, None)) == (digest, count) and not force:
                report.unchanged.append(view.name)
                continue
            with con:  # one transaction per view: all its rows or none
                layout.write(con, name, view, table)
                count = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                con.execute(
                    f"INSERT OR REPLACE INTO {_DIGESTS} VALUES (?, ?, ?)",
                    [view.name, digest, count],
                )
            report.written[view.name] = table.num_rows
    finally:
        con.close()
