"""Materialize into Feast's Redis online store (the shared profile): the hashes Feast's
``RedisOnlineStore.online_write_batch`` writes, built by whole columns.

Feast keeps one hash per entity, under the entity key (serialization version 3) followed
by the project: a field ``_ts:<view>`` with the event time as a protobuf ``Timestamp``
and, per feature, the murmur3 hash of ``<view>:<feature>`` with the ``Value`` protobuf.
Feast builds each of those messages in Python and sends one HSET per entity; here the
values come from :mod:`ranking.features.online_rows` and each batch of entities is one
EVALSHA of a small Lua script that runs their HSETs in the server. The command's bytes
(Redis's protocol, as its mass-insertion guide has clients generate it) are laid out
in numpy, column by column, and sent over redis-py's connection, so Python touches
neither each value nor each reply: redis-py packing a few thousand arguments a batch
and its pure-Python reply parser were most of the time before. As in Feast, a row is
written only when it is newer than the event time its hash holds (so an unchanged
snapshot writes nothing), unless forced; the script compares them, so no read goes back
and forth. Tested hash for hash against Feast's own materialize
(``tests/shared/test_materialize_redis.py``).
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
from feast import FeatureStore, FeatureView
from feast.infra.online_stores.helpers import _mmh3
from feast.infra.online_stores.redis import RedisOnlineStore, _versioned_fv_name
from feast.value_type import ValueType

from ranking.features.online_rows import (
    column_epoch_micros,
    decimal_matrix,
    encode_values,
    entity_keys,
    latest_rows,
    value_matrix,
    varint_matrix,
)
from ranking.warehouse import scratch

#: Entities per EVALSHA: a few MB of arguments, one reply.
BATCH = 5_000

#: KEYS: the hashes. ARGV[1]: seconds to live (0: none); ARGV[2]: '1' writes every row,
#: else a row only when its event time is newer than the hash's (Feast's rule, on
#: (seconds, nanos)); then, per key, its event time's seconds and nanos and its HSET
#: arguments (field, value, ...), the event time's field first.
_WRITE = """
local ttl, force = tonumber(ARGV[1]), ARGV[2] == '1'
local per = (#ARGV - 2) / #KEYS
local function varint(s, pos)
    local value, scale = 0, 1
    while true do
        local byte = string.byte(s, pos)
        value, pos = value + (byte % 128) * scale, pos + 1
        if byte < 128 then return value, pos end
        scale = scale * 128
    end
end
local function stored_time(raw)
    local seconds, nanos, pos = 0, 0, 1
    while pos <= #raw do
        local tag, value = string.byte(raw, pos), 0
        value, pos = varint(raw, pos + 1)
        if tag == 8 then seconds = value elseif tag == 16 then nanos = value end
    end
    return seconds, nanos
end
local written = 0
for i, key in ipairs(KEYS) do
    local at = 3 + (i - 1) * per
    local newer = force
    if not newer then
        local raw = redis.call('HGET', key, ARGV[at + 2])
        if not raw then
            newer = true
        else
            local seconds, nanos = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
            local old_seconds, old_nanos = stored_time(raw)
            newer = (old_seconds == 0 and old_nanos == 0) or seconds > old_seconds
                or (seconds == old_seconds and nanos > old_nanos)
        end
    end
    if newer then
        redis.call('HSET', key, unpack(ARGV, at + 2, at + per - 1))
        if ttl > 0 then redis.call('EXPIRE', key, ttl) end
        written = written + 1
    end
end
return written
"""


class _Layout:
    """Byte strings of every row laid out side by side: constant text, and parts that are
    a byte matrix with a mask of the bytes each row holds (laid out once for all rows);
    a batch of rows is flattened row by row at once."""

    def __init__(self) -> None:
        self.parts: list[bytes | tuple[np.ndarray, np.ndarray]] = []

    def text(self, data: bytes) -> None:
        if self.parts and isinstance(self.parts[-1], bytes):
            self.parts[-1] += data
        else:
            self.parts.append(data)

    def bytes_(self, matrix: np.ndarray, mask: np.ndarray) -> None:
        self.parts.append((matrix, mask))

    def bulk(self, matrix: np.ndarray, mask: np.ndarray) -> None:
        """A bulk string of Redis's protocol: ``$<length>\\r\\n<bytes>\\r\\n``."""
        self.text(b"$")
        self.bytes_(*_decimal(mask.sum(axis=1)))
        self.text(b"\r\n")
        self.bytes_(matrix, mask)
        self.text(b"\r\n")

    def flat(self, lo: int, hi: int) -> bytes:
        """Rows ``lo`` to ``hi`` (excluded), back to back."""
        data, masks = [], []
        for part in self.parts:
            if isinstance(part, bytes):
                row = np.frombuffer(part, dtype=np.uint8)
                data.append(np.broadcast_to(row, (hi - lo, len(row))))
                masks.append(np.broadcast_to(True, (hi - lo, len(row))))
            else:
                data.append(part[0][lo:hi])
                masks.append(part[1][lo:hi])
        return np.hstack(data)[np.hstack(masks)].tobytes()


def _bulk_text(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _decimal(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative integers in decimal: a digit matrix and the mask of each one's digits."""
    numbers = np.asarray(numbers, dtype=np.int64)
    if len(numbers) and numbers.min() < 0:
        raise ValueError("an event time before 1970 is not written to Redis here")
    return decimal_matrix(numbers)


def _strings(values: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings as a left-aligned matrix and the mask of each one's bytes."""
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    width = max(1, int(lengths.max(initial=0)))
    matrix = np.array(values, dtype=f"S{width}").view(np.uint8).reshape(len(values), width)
    return matrix, np.arange(width) < lengths[:, None]


def _column(column: pa.ChunkedArray, value_type: ValueType) -> tuple[np.ndarray, np.ndarray]:
    """Each value's ``Value`` protobuf (empty for a null) as a matrix and mask."""
    if value_type == ValueType.STRING:
        return _strings(encode_values(column, value_type, with_text=False)[0])
    matrix, lengths, _ = value_matrix(column, value_type)
    return matrix, np.arange(matrix.shape[1]) < lengths[:, None]


def _timestamps(micros: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each event time as Feast stores it, a serialized ``Timestamp`` (seconds, and nanos
    unless 0, as varints after their tags), as a matrix and mask."""
    seconds, nanos = np.divmod(micros, 1_000_000)
    nanos = nanos * 1000
    parts = []
    for tag, numbers, shown in ((0x08, seconds, seconds != 0), (0x10, nanos, nanos != 0)):
        varints, lengths = varint_matrix(numbers)
        matrix = np.hstack([np.full((len(numbers), 1), tag, np.uint8), varints])
        parts.append((matrix, shown[:, None] & (np.arange(matrix.shape[1]) <= lengths[:, None])))
    return np.hstack([m for m, _ in parts]), np.hstack([k for _, k in parts])


def write_view(fs: FeatureStore, client, view: FeatureView, start: datetime, end: datetime,
               force: bool, reader: duckdb.DuckDBPyConnection | None = None) -> int:  # fmt: skip
    """Write the latest rows of ``view`` in ``[start, end]`` (read with ``reader``, a DuckDB
    connection); returns the hashes written."""
    config = fs.config
    table = latest_rows(fs, view, start, end, reader)
    if table.num_rows == 0:
        return 0
    join_keys = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
    project = config.project.encode("utf-8")
    keys = _strings([k + project for k in entity_keys(table, join_keys)])
    name = _versioned_fv_name(view, config)
    micros = column_epoch_micros(table.column(view.batch_source.timestamp_field))
    seconds, nanos = np.divmod(micros, 1_000_000)
    hashes = _Layout()
    hashes.bulk(*keys)
    rows = _Layout()  # per key: its event time's seconds and nanos, then the HSET's fields
    rows.bulk(*_decimal(seconds))
    rows.bulk(*_decimal(nanos * 1000))
    fields = [f"_ts:{name}".encode()] + [_mmh3(f"{name}:{f.name}") for f in view.features]
    values = [_column(table.column(f.name), f.dtype.to_value_type()) for f in view.features]
    for field, (matrix, mask) in zip(fields, [_timestamps(micros), *values], strict=True):
        rows.text(_bulk_text(field))
        rows.bulk(matrix, mask)
    arguments = 2 + 2 * len(fields)  # per key
    sha = client.script_load(_WRITE).encode()
    ttl = str(config.online_store.key_ttl_seconds or 0).encode()
    connection = client.connection_pool.get_connection()
    written, pending = 0, False
    try:
        for lo in range(0, table.num_rows, BATCH):
            hi = min(lo + BATCH, table.num_rows)
            n = hi - lo
            head = b"*%d\r\n" % (3 + n + 2 + n * arguments) + _bulk_text(b"EVALSHA")
            head += _bulk_text(sha) + _bulk_text(b"%d" % n)
            argv = _bulk_text(ttl) + _bulk_text(b"1" if force else b"0")
            connection.send_packed_command([head + hashes.flat(lo, hi) + argv,
                                            rows.flat(lo, hi)])  # fmt: skip
            if pending:  # the previous batch ran while this one was laid out
                written += connection.read_response()
            pending = True
        written += connection.read_response()
    except BaseException:
        connection.disconnect()  # a reply may be left unread
        raise
    finally:
        client.connection_pool.release(connection)
    return written


def write_redis(fs: FeatureStore, views: list[FeatureView], start: datetime, end: datetime,
                force: bool) -> dict[str, int]:  # fmt: skip
    """Hashes written per view (0: every row was already there)."""
    client = RedisOnlineStore()._get_client(fs.config.online_store)
    with scratch() as reader:
        return {view.name: write_view(fs, client, view, start, end, force, reader)
                for view in views}  # fmt: skip
