"""Feast's online rows computed by whole columns: the latest row of each entity in a
window, its entity key (serialization version 3) and each value's ``Value`` protobuf.

What Feast's ``materialize`` does one value at a time in Python
(``python_values_to_proto_values``, ``serialize_entity_key``), done here with numpy per
column; the bytes are Feast's (tested value by value). The online store writers
(:mod:`ranking.features.materialize` for SQLite, :mod:`ranking.features.materialize_redis`)
store them the way each Feast store does.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureStore, FeatureView, FileSource
from feast.data_format import ParquetFormat
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

from ranking.warehouse import scratch

#: Value types encoded here -> (ValueProto field, protobuf wire type, numpy dtype).
_SCALARS = {
    ValueType.DOUBLE: ("double_val", 1, "<f8"),
    ValueType.FLOAT: ("float_val", 5, "<f4"),
    ValueType.INT64: ("int64_val", 0, "<i8"),
    ValueType.INT32: ("int32_val", 0, "<i8"),  # a negative int32 is a 10-byte varint too
    ValueType.BOOL: ("bool_val", 0, "<i8"),
    ValueType.STRING: ("string_val", 2, None),
}


def _tag(value_field: str, wire_type: int) -> int:
    number = ValueProto.DESCRIPTOR.fields_by_name[value_field].number
    if number >= 16:
        raise ValueError(f"{value_field}: a two-byte tag is not encoded here")
    return (number << 3) | wire_type


def varint_matrix(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def _fixed_width(tag: int, column: np.ndarray, dtype: str) -> np.ndarray:
    """tag + little-endian fixed-width value: an (n, 1 + width) byte matrix."""
    records = np.empty(len(column), dtype=[("tag", "u1"), ("v", dtype)])
    records["tag"], records["v"] = tag, column
    return records.view(np.uint8).reshape(len(column), records.dtype.itemsize)


def value_matrix(
    column: pa.Array | pa.ChunkedArray, value_type: ValueType
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each numeric or boolean value's ``Value`` protobuf bytes, left-aligned in the rows
    of a byte matrix, each one's length (0 for a null or a NaN float: Feast's empty
    message) and the values as numbers (for the texts Feast's SQLite store keeps)."""
    value_field, wire_type, dtype = _SCALARS[value_type]
    if dtype is None:
        raise ValueError(f"{value_type}: no fixed-width matrix")
    tag = _tag(value_field, wire_type)
    valid = ~column.is_null().to_numpy(zero_copy_only=False)
    if value_type in (ValueType.DOUBLE, ValueType.FLOAT):
        numbers = np.asarray(column.cast(pa.float64()).fill_null(0.0), dtype=np.float64)
        valid &= ~np.isnan(numbers)
        matrix = _fixed_width(tag, numbers.astype(dtype), dtype)
        lengths = np.full(len(numbers), matrix.shape[1], dtype=np.int64)
    else:  # varints: ints and booleans
        numbers = np.asarray(column.cast(pa.int64()).fill_null(0), dtype=np.int64)
        varints, lengths = varint_matrix(numbers)
        matrix = np.concatenate([np.full((len(numbers), 1), tag, np.uint8), varints], axis=1)
        lengths = lengths + 1
    return matrix, np.where(valid, lengths, 0), numbers


def _split_rows(matrix: np.ndarray, lengths: np.ndarray) -> list[bytes]:
    """The first ``lengths[i]`` bytes of each row ``i`` of ``matrix``."""
    flat, width = matrix.tobytes(), matrix.shape[1]
    return [flat[i * width : i * width + n] for i, n in enumerate(lengths.tolist())]


def encode_values(
    column: pa.Array | pa.ChunkedArray, value_type: ValueType, with_text: bool = True
) -> tuple[list, list | None]:
    """(Feast ``Value`` protobuf bytes, ``value_text``) for each value of ``column``, as
    Feast's ``python_values_to_proto_values`` and ``extract_text_and_num`` give them: a
    null (or a NaN float) is an empty message with no text. Without ``with_text`` (a
    store that keeps no text), None in place of the texts."""
    if value_type == ValueType.STRING:
        strings = column.to_pylist()
        tag = _tag(*_SCALARS[value_type][:2])
        blobs = [b"" if v is None else bytes([tag]) + varint_bytes(len(v.encode("utf8")))
                 + v.encode("utf8") for v in strings]  # fmt: skip
        return blobs, (strings if with_text else None)
    matrix, lengths, numbers = value_matrix(column, value_type)
    blobs = _split_rows(matrix, lengths)
    if not with_text:
        return blobs, None
    if value_type == ValueType.BOOL:
        shown = [str(bool(v)) for v in numbers.tolist()]
    elif value_type in (ValueType.DOUBLE, ValueType.FLOAT):
        dtype = _SCALARS[value_type][2]
        stored = numbers.astype(dtype).astype(np.float64) if dtype == "<f4" else numbers
        shown = [repr(v) for v in stored.tolist()]
    else:
        shown = list(map(str, numbers.tolist()))
    for i in np.flatnonzero(lengths == 0).tolist():
        shown[i] = None
    return blobs, shown


def column_epoch_micros(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Each timestamp of ``column`` as whole microseconds since the epoch (UTC)."""
    return column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()


def decimal_matrix(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The decimal digits of each number's magnitude as ASCII, zero-padded to the widest
    (an (n, width) byte matrix), and the mask of the digits each one needs (at least one)."""
    magnitude = np.abs(np.asarray(numbers, dtype=np.int64))
    digits = len(str(int(magnitude.max(initial=0))))
    powers = 10 ** np.arange(digits - 1, -1, -1, dtype=np.int64)
    matrix = (magnitude[:, None] // powers % 10 + ord("0")).astype(np.uint8)
    return matrix, (magnitude[:, None] >= powers) | (powers == 1)


def varint_bytes(n: int) -> bytes:
    """``n`` as a protobuf varint."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _length_prefixed(kind: ValueType, values: pa.Array) -> list[pa.Array]:
    """Feast's (type, length) header of each value, then the value: as Arrow binaries."""
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False).astype("<u4")
    heads = np.empty((len(values), 2), dtype="<u4")
    heads[:, 0], heads[:, 1] = kind.value, lengths
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(8), len(values), [None, pa.py_buffer(heads.tobytes())]
    )
    return [fixed.cast(pa.binary()), values]


def entity_keys(table: pa.Table, join_keys: dict[str, ValueType]) -> list[bytes]:
    """Feast's entity-key encoding (version 3) of each row (see :func:`entity_key_array`)."""
    return entity_key_array(table, join_keys).to_pylist()


def entity_key_array(table: pa.Table, join_keys: dict[str, ValueType]) -> pa.BinaryArray:
    """Feast's entity-key encoding (version 3) of each row: the number of keys, each
    sorted key name, then each value, every part prefixed by its type and length
    (joined by Arrow, column by column)."""
    names = sorted(join_keys)
    head = struct.pack("<I", len(names)) + b"".join(
        struct.pack("<II", ValueType.STRING.value, len(k.encode())) + k.encode() for k in names
    )
    parts: list[pa.Array] = []
    for name in names:
        kind = join_keys[name]
        column = table.column(name).combine_chunks()
        if kind == ValueType.STRING:
            parts += _length_prefixed(kind, column.cast(pa.binary()))
        elif kind == ValueType.INT64:
            ints = np.asarray(column.to_numpy(zero_copy_only=False), dtype="<i8")
            parts += _length_prefixed(kind, pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(8), len(ints), [None, pa.py_buffer(ints.tobytes())]
            ).cast(pa.binary()))  # fmt: skip
        else:
            raise ValueError(f"join key {name}: type {kind} is not encoded here")
    if table.num_rows == 0:
        return pa.array([], pa.binary())
    return pc.binary_join_element_wise(pa.scalar(head, pa.binary()), *parts, b"")


def encodable(view: FeatureView) -> bool:
    types = [f.dtype.to_value_type() for f in view.features]
    keys = [e.dtype.to_value_type() for e in view.entity_columns]
    return (
        not view.batch_source.created_timestamp_column
        and all(t in _SCALARS for t in types)
        and all(k in (ValueType.STRING, ValueType.INT64) for k in keys)
    )


def _plain_parquet(source) -> bool:
    """A local Parquet ``FileSource`` (what this repo declares): DuckDB reads it as Feast's
    offline store would, without Feast's query planning."""
    return (
        isinstance(source, FileSource)
        and isinstance(source.file_format, ParquetFormat | None)
        and str(source.path).endswith(".parquet")
        and "://" not in str(source.path)
        and not source.created_timestamp_column
    )


def latest_rows(
    fs: FeatureStore, view: FeatureView, start: datetime, end: datetime,
    con: duckdb.DuckDBPyConnection | None = None,
) -> pa.Table:  # fmt: skip
    """The latest row of every entity of ``view`` with a snapshot in ``[start, end]`` (what
    Feast's ``pull_latest_from_table_or_query`` selects for materialize: tested equal), in
    entity order: a digest of it is then the rows', not the scan's order.

    A local Parquet source is read by one DuckDB query: Feast's pull builds the same
    query through ibis and converts its result, about 0.2 s a view on the newest
    snapshot of 1M events here (most of the column writer's time). Other sources go
    through Feast. ``con``: a DuckDB connection to read with (one is opened if None:
    about 25 ms here, worth sharing across views)."""
    source = view.batch_source
    keys = [e.name for e in view.entity_columns]
    features = [f.name for f in view.features]
    if _plain_parquet(source):
        if con is None:
            with scratch() as own:
                return _latest_by_duckdb(own, source.path, keys, features,
                                         source.timestamp_field, start, end)  # fmt: skip
        return _latest_by_duckdb(con, source.path, keys, features, source.timestamp_field,
                                 start, end)  # fmt: skip
    table = (
        fs._get_provider()
        .offline_store.pull_latest_from_table_or_query(
            config=fs.config,
            data_source=source,
            join_key_columns=keys,
            feature_name_columns=features,
            timestamp_field=source.timestamp_field,
            created_timestamp_column=source.created_timestamp_column,
            start_date=start,
            end_date=end,
        )
        .to_arrow()
    )
    return table.sort_by([(k, "ascending") for k in keys])


def _latest_by_duckdb(con: duckdb.DuckDBPyConnection, path: str, keys: list[str],
                      features: list[str], timestamp: str, start: datetime,
                      end: datetime) -> pa.Table:  # fmt: skip
    """Feast's selection (the window's bounds inclusive, in UTC; the newest row per key)
    as one query over the Parquet file. The bounds are compared as instants, not by
    casting every timestamp to a naive one as Feast's query does (the same rows in the
    connection's UTC), so that DuckDB skips the row groups outside the window."""
    quoted = lambda names: ", ".join(f'"{n}"' for n in names)  # noqa: E731
    return con.sql(
        f"""
        SELECT {quoted([*keys, *features, timestamp])} FROM read_parquet(?)
        WHERE "{timestamp}" BETWEEN ? AND ?
        QUALIFY row_number() OVER (PARTITION BY {quoted(keys)} ORDER BY "{timestamp}" DESC) = 1
        ORDER BY {quoted(keys)}
        """,
        params=[str(path), *(t.astimezone(UTC) for t in (start, end))],
    ).to_arrow_table()
