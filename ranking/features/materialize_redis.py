"""Materialize into Feast's Redis online store (the shared profile): the hashes Feast's
``RedisOnlineStore.online_write_batch`` writes, built by whole columns.

Feast keeps one hash per entity, under the entity key (serialization version 3) followed
by the project: a field ``_ts:<view>`` with the event time as a protobuf ``Timestamp``
and, per feature, the murmur3 hash of ``<view>:<feature>`` with the ``Value`` protobuf.
Feast builds each of those messages in Python; here the values come from
:mod:`ranking.features.online_rows` and the hashes go out in batches, each one Lua call. As in
Feast, a row is written only when it is newer than what the hash holds (so an unchanged
snapshot writes nothing), unless forced. Tested hash for hash against Feast's own
materialize (``tests/shared/test_materialize_redis.py``).
"""

from __future__ import annotations

import struct
from datetime import datetime

import duckdb
import pyarrow as pa
from feast import FeatureStore, FeatureView
from feast.infra.online_stores.helpers import _mmh3
from feast.infra.online_stores.redis import RedisOnlineStore, _versioned_fv_name
from google.protobuf.timestamp_pb2 import Timestamp

from ranking.features.online_rows import (
    column_epoch_micros,
    encode_values,
    entity_keys,
    latest_rows,
)
from ranking.warehouse import scratch

#: Hashes per round trip.
BATCH = 2_000

#: Server-side loops, one call a batch: redis-py's per-command Python cost (packing each
#: HSET, parsing each reply) was most of the time when every hash was its own command.
_READ_TS = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, ARGV[1]) end
return out
"""
#: ARGV[1]: the fields, ARGV[1 + i]: key i's values, each a run of (uint32 length, bytes):
#: one argument per hash, so redis-py packs a few thousand arguments a batch, not 100k.
_WRITE = """
local function split(blob)
    local out, pos = {}, 1
    while pos <= #blob do
        local n, at = struct.unpack('<I4', blob, pos)
        out[#out + 1] = string.sub(blob, at, at + n - 1)
        pos = at + n
    end
    return out
end
local fields = split(ARGV[1])
for i, key in ipairs(KEYS) do
    local values, args = split(ARGV[i + 1]), {}
    for j = 1, #fields do
        args[2 * j - 1], args[2 * j] = fields[j], values[j]
    end
    redis.call('HSET', key, unpack(args))
end
return #KEYS
"""


def _framed(values: list[bytes]) -> list[bytes]:
    """Each value prefixed with its length, as ``_WRITE`` splits them."""
    return [struct.pack("<I", len(v)) + v for v in values]


def _timestamps(column: pa.ChunkedArray) -> tuple[list[bytes], list[int]]:
    """Each event time as Feast stores it (a serialized ``Timestamp``) and in nanoseconds."""
    micros = column_epoch_micros(column).tolist()
    serialized, nanos = [], []
    for us in micros:
        seconds, rest = divmod(us, 1_000_000)
        serialized.append(Timestamp(seconds=seconds, nanos=rest * 1000).SerializeToString())
        nanos.append(us * 1000)
    return serialized, nanos


def _stored_nanos(read_ts, keys: list[bytes], ts_field: str) -> list[int]:
    """The event time (ns) each hash holds for the view, 0 where none."""
    stored = []
    for raw in read_ts(keys=keys, args=[ts_field]):
        if raw is None:
            stored.append(0)
        else:
            ts = Timestamp()
            ts.ParseFromString(raw)
            stored.append(ts.seconds * 1_000_000_000 + ts.nanos)
    return stored


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
    keys = [k + project for k in entity_keys(table, join_keys)]
    name = _versioned_fv_name(view, config)
    ts_field = f"_ts:{name}".encode()
    ts_bytes, ts_nanos = _timestamps(table.column(view.batch_source.timestamp_field))
    fields = b"".join(_framed([ts_field] + [_mmh3(f"{name}:{f.name}") for f in view.features]))
    values = [encode_values(table.column(f.name), f.dtype.to_value_type(), with_text=False)[0]
              for f in view.features]  # fmt: skip
    columns = [_framed(ts_bytes)] + [_framed(v) for v in values]
    blobs = list(map(b"".join, zip(*columns, strict=True)))  # one per hash
    read_ts, write = client.register_script(_READ_TS), client.register_script(_WRITE)
    ttl = config.online_store.key_ttl_seconds
    written = 0
    for lo in range(0, len(keys), BATCH):
        hi = min(lo + BATCH, len(keys))
        stored = [0] * (hi - lo) if force else _stored_nanos(read_ts, keys[lo:hi], ts_field)
        # Feast's rule: only a row newer than the stored one replaces it.
        rows = [i for i in range(lo, hi) if not stored[i - lo] or ts_nanos[i] > stored[i - lo]]
        if not rows:
            continue
        written += write(keys=[keys[i] for i in rows], args=[fields] + [blobs[i] for i in rows])
        if ttl:
            with client.pipeline(transaction=False) as pipe:
                for i in rows:
                    pipe.expire(keys[i], ttl)
                pipe.execute()
    return written


def write_redis(fs: FeatureStore, views: list[FeatureView], start: datetime, end: datetime,
                force: bool) -> dict[str, int]:  # fmt: skip
    """Hashes written per view (0: every row was already there)."""
    client = RedisOnlineStore()._get_client(fs.config.online_store)
    with scratch() as reader:
        return {view.name: write_view(fs, client, view, start, end, force, reader)
                for view in views}  # fmt: skip
