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
from datetime import datetime

import numpy as np
import pyarrow as pa
from feast import FeatureStore, FeatureView
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.value_type import ValueType

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


def encodable(view: FeatureView) -> bool:
    types = [f.dtype.to_value_type() for f in view.features]
    keys = [e.dtype.to_value_type() for e in view.entity_columns]
    return (
        not view.batch_source.created_timestamp_column
        and all(t in _SCALARS for t in types)
        and all(k in (ValueType.STRING, ValueType.INT64) for k in keys)
    )


def latest_rows(fs: FeatureStore, view: FeatureView, start: datetime, end: datetime) -> pa.Table:
    """The latest row of every entity of ``view`` with a snapshot in ``[start, end]`` (the
    same ``pull_latest_from_table_or_query`` Feast's materialize calls), in entity order:
    a digest of it is then the rows', not the scan's order."""
    source = view.batch_source
    table = (
        fs._get_provider()
        .offline_store.pull_latest_from_table_or_query(
            config=fs.config,
            data_source=source,
            join_key_columns=[e.name for e in view.entity_columns],
            feature_name_columns=[f.name for f in view.features],
            timestamp_field=source.timestamp_field,
            created_timestamp_column=source.created_timestamp_column,
            start_date=start,
            end_date=end,
        )
        .to_arrow()
    )
    return table.sort_by([(e.name, "ascending") for e in view.entity_columns])
