"""Materialize the newest snapshot into Feast's SQLite online store: the rows Feast
writes, written by whole columns, and nothing when nothing changed.

Feast's stock materialize turns every value into a protobuf message in Python and
upserts it alone (``SqliteOnlineStore.online_write_batch``: about 4k entity rows/s
here). This path keeps Feast's parts where they cost nothing: its offline store selects
the latest row of each entity in the window (the same ``pull_latest_from_table_or_query``
its engine calls), its table names are used as they are and its entity-key encoding
(version 3) is reproduced. What changes is the
encoding: each column becomes Feast's ``Value`` protobuf bytes with numpy (the wire
format of one scalar field is a tag byte and the value), and one ``executemany`` upserts
a view. The rows are tested byte for byte against stock materialize.

A view whose selected rows hash to what was last written into this very database, and
whose table still holds the rows counted then, is skipped: the digest is kept in the
online store's own file, so a deleted, replaced or re-created table is written again.
Any other online store (Redis in the shared setup), and a value type this module does
not encode, go through Feast's provider, view by view, as ``FeatureStore.materialize``
does.

Neither path does ``FeatureStore.materialize``'s registry bookkeeping: it appends the
window to each view in the registry, which the repo cannot declare, so from then on
``feast plan`` and ``feast apply`` report every view as updated on an unchanged repo.
Nothing here asks Feast what was materialized: the window is explicit.
"""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
from feast import FeatureStore, FeatureView
from feast.infra.online_stores.sqlite import _table_id
from feast.infra.provider import get_provider
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType
from tqdm import tqdm

#: Value types encoded here -> (ValueProto field, protobuf wire type, numpy dtype).
_SCALARS = {
    ValueType.DOUBLE: ("double_val", 1, "<f8"),
    ValueType.FLOAT: ("float_val", 5, "<f4"),
    ValueType.INT64: ("int64_val", 0, "<i8"),
    ValueType.INT32: ("int32_val", 0, "<i8"),  # a negative int32 is a 10-byte varint too
    ValueType.BOOL: ("bool_val", 0, "<i8"),
    ValueType.STRING: ("string_val", 2, None),
}
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


def _tag(value_field: str, wire_type: int) -> int:
    number = ValueProto.DESCRIPTOR.fields_by_name[value_field].number
    if number >= 16:
        raise ValueError(f"{value_field}: a two-byte tag is not encoded here")
    return (number << 3) | wire_type


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of int64 ``values`` (two's complement, as protobuf does):
    a (n, 10) byte matrix and each one's length."""
    rest = values.astype(np.int64).view(np.uint64).copy()
    out = np.zeros((len(values), 10), dtype=np.uint8)
    lengths = np.ones(len(values), dtype=np.int64)
    for i in range(10):
        out[:, i] = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest >>= np.uint64(7)
        more = rest != 0
        out[more, i] |= 0x80
        lengths += more
    return out, lengths


def _fixed_width(tag: int, column: np.ndarray, dtype: str) -> list[bytes]:
    """tag + little-endian fixed-width value, one ``bytes`` per value."""
    width = np.dtype(dtype).itemsize + 1
    records = np.empty(len(column), dtype=[("tag", "u1"), ("v", dtype)])
    records["tag"], records["v"] = tag, column
    buffer = records.tobytes()
    return [buffer[i : i + width] for i in range(0, len(buffer), width)]


def encode_values(column: pa.Array | pa.ChunkedArray, value_type: ValueType) -> tuple[list, list]:
    """(Feast ``Value`` protobuf bytes, ``value_text``) for each value of ``column``, as
    Feast's ``python_values_to_proto_values`` and ``extract_text_and_num`` give them: a
    null (or a NaN float) is an empty message with no text."""
    value_field, wire_type, dtype = _SCALARS[value_type]
    tag = _tag(value_field, wire_type)
    valid = ~column.is_null().to_numpy(zero_copy_only=False)
    if value_type in (ValueType.DOUBLE, ValueType.FLOAT):
        floats = np.asarray(column.cast(pa.float64()).fill_null(0.0), dtype=np.float64)
        valid &= ~np.isnan(floats)
        blobs = _fixed_width(tag, floats.astype(dtype), dtype)
        shown = floats.astype(dtype).astype(np.float64) if dtype == "<f4" else floats
        texts = [repr(v) for v in shown.tolist()]
    elif value_type == ValueType.STRING:
        blobs, texts = [], []
        for v in column.to_pylist():
            raw = str(v).encode("utf8") if v is not None else b""
            blobs.append(bytes([tag]) + _varint_bytes(len(raw)) + raw)
            texts.append(v if v is not None else None)
    else:  # varints: ints and booleans
        ints = np.asarray(column.cast(pa.int64()).fill_null(0), dtype=np.int64)
        matrix, lengths = _varints(ints)
        rows = np.concatenate([np.full((len(ints), 1), tag, np.uint8), matrix], axis=1)
        flat = rows.tobytes()
        blobs = [flat[i * 11 : i * 11 + 1 + n] for i, n in enumerate(lengths.tolist())]
        texts = (
            [str(bool(v)) for v in ints]
            if value_type == ValueType.BOOL
            else list(map(str, ints.tolist()))
        )
    blobs = [b if ok else b"" for b, ok in zip(blobs, valid.tolist(), strict=True)]
    texts = [t if ok else None for t, ok in zip(texts, valid.tolist(), strict=True)]
    return blobs, texts


def _varint_bytes(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def entity_keys(table: pa.Table, join_keys: dict[str, ValueType]) -> list[bytes]:
    """Feast's entity-key encoding (version 3) of each row: the number of keys, each
    sorted key name, then each value, every part prefixed by its type and length."""
    names = sorted(join_keys)
    head = struct.pack("<I", len(names)) + b"".join(
        struct.pack("<II", ValueType.STRING.value, len(k.encode())) + k.encode() for k in names
    )
    parts = []
    for name in names:
        kind = join_keys[name]
        column = table.column(name).to_pylist()
        if kind == ValueType.STRING:
            encoded = [v.encode("utf8") for v in column]
            parts.append([struct.pack("<II", kind.value, len(v)) + v for v in encoded])
        elif kind == ValueType.INT64:
            parts.append([struct.pack("<IIq", kind.value, 8, v) for v in column])
        else:
            raise ValueError(f"join key {name}: type {kind} is not encoded here")
    return [head + b"".join(p) for p in zip(*parts, strict=True)]


def _digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _epoch_seconds(column: pa.ChunkedArray) -> list[int]:
    """Event times as Feast's SQLite adapter stores them: whole seconds since the epoch."""
    micros = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    return (micros // 1_000_000).tolist()


def _rows(view: FeatureView, table: pa.Table) -> list[tuple]:
    join_keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
    keys = entity_keys(table, join_keys)
    event_ts = _epoch_seconds(table.column(view.batch_source.timestamp_field))
    rows: list[tuple] = []
    for feature in view.features:
        blobs, texts = encode_values(table.column(feature.name), feature.dtype.to_value_type())
        name = feature.name
        rows += [(k, name, b, t, ts) for k, b, t, ts in zip(keys, blobs, texts, event_ts,
                                                           strict=True)]  # fmt: skip
    rows.sort(key=lambda row: (row[0], row[1]))  # the primary key's order: appends, not seeks
    return rows


def _encodable(view: FeatureView) -> bool:
    types = [f.dtype.to_value_type() for f in view.features]
    keys = [e.dtype.to_value_type() for e in view.entity_columns]
    return (
        not view.batch_source.created_timestamp_column
        and all(t in _SCALARS for t in types)
        and all(k in (ValueType.STRING, ValueType.INT64) for k in keys)
    )


def _online_path(fs: FeatureStore) -> Path:
    path = Path(fs.config.online_store.path)
    return path if path.is_absolute() else Path(fs.repo_path) / path


def materialize_newest(
    fs: FeatureStore, start: datetime, end: datetime, force: bool = False
) -> MaterializeReport:
    """Load the latest row of every entity with a snapshot in ``[start, end]`` online
    (what ``FeatureStore.materialize(start, end)`` does), skipping unchanged views unless
    ``force``."""
    report = MaterializeReport()
    views = [v for v in fs.list_feature_views() if v.online]
    sqlite_v3 = (getattr(fs.config.online_store, "type", None) == "sqlite"
                 and fs.config.entity_key_serialization_version == 3)  # fmt: skip
    if not sqlite_v3:
        report.stock = [v.name for v in views]
    else:
        report.stock = [v.name for v in views if not _encodable(v)]
        _write_sqlite(fs, [v for v in views if _encodable(v)], start, end, report, force)
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
    report: MaterializeReport, force: bool,
) -> None:  # fmt: skip
    offline = fs._get_provider().offline_store
    versioning = fs.config.registry.enable_online_feature_view_versioning
    con = sqlite3.connect(_online_path(fs))
    try:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_DIGESTS} (view TEXT PRIMARY KEY, digest TEXT, n INTEGER)"
        )
        for view in views:
            source = view.batch_source
            table = offline.pull_latest_from_table_or_query(
                config=fs.config,
                data_source=source,
                join_key_columns=[e.name for e in view.entity_columns],
                feature_name_columns=[f.name for f in view.features],
                timestamp_field=source.timestamp_field,
                created_timestamp_column=source.created_timestamp_column,
                start_date=start,
                end_date=end,
            ).to_arrow()
            # In entity order: the digest is then the rows', not the scan's order.
            table = table.sort_by([(e.name, "ascending") for e in view.entity_columns])
            name = _table_id(fs.project, view, versioning)
            digest = f"{name}:{_digest(table)}"
            kept = con.execute(f"SELECT digest, n FROM {_DIGESTS} WHERE view = ?", [view.name])
            count = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            if (kept.fetchone() or (None, None)) == (digest, count) and not force:
                report.unchanged.append(view.name)
                continue
            with con:  # one transaction per view: all its rows or none
                con.executemany(
                    f'INSERT INTO "{name}" (entity_key, feature_name, value, value_text, '
                    "event_ts, created_ts) VALUES (?, ?, ?, ?, ?, NULL) "
                    "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
                    "value_text = excluded.value_text, event_ts = excluded.event_ts, "
                    "created_ts = excluded.created_ts",
                    _rows(view, table),
                )
                count = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                con.execute(
                    f"INSERT OR REPLACE INTO {_DIGESTS} VALUES (?, ?, ?)",
                    [view.name, digest, count],
                )
            report.written[view.name] = table.num_rows
    finally:
        con.close()
