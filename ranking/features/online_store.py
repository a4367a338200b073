"""The embedded online store: SQLite with one row per entity, registered with Feast.

Feast's own SQLite store keeps one row per feature value (entity key, feature name,
``Value`` protobuf, text, timestamps), so a view of 12 features costs 12 upserts per
entity, each with six values bound from Python: materializing the newest snapshot of 1M
events (44k entities, 321k values) took 2 to 3 s in ``executemany`` alone here, whatever
encoded the values. This store keeps one row per entity: its key (Feast's serialization),
every feature of the view as one Feast ``Map`` protobuf (feature name -> ``Value``), and
the event time. Feast reads and writes it through the ``OnlineStore`` interface (the
``type:`` in ``feature_store.yaml`` names this class), so ``get_online_features``,
``feast materialize`` and the feature server use it as any online store; the packed rows
the column writer (:mod:`ranking.features.materialize`) builds are the bytes
:meth:`online_write_batch` writes (tested).

The file is in write-ahead-log mode, so readers go on while a materialization writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from feast import Entity, FeatureView, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.online_stores.sqlite import _table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Map as MapProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel
from pydantic import StrictStr

from ranking.features.online_rows import decimal_matrix, varint_bytes

#: What ``feature_store.yaml`` names as the online store's ``type``.
STORE_TYPE = "ranking.features.online_store.PackedSqliteOnlineStore"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: SQLite page size of a new store file.
PAGE_SIZE = 16_384

#: Entity keys per ``IN (...)`` query: under SQLite's bound-parameter limit.
_READ_CHUNK = 900


class PackedSqliteOnlineStoreConfig(FeastConfigBaseModel):
    """``online_store:`` of ``feature_store.yaml`` for :class:`PackedSqliteOnlineStore`."""

    type: Literal["ranking.features.online_store.PackedSqliteOnlineStore"] = STORE_TYPE
    path: StrictStr = "data/online_store.db"
    """The SQLite file; relative paths are taken from the repo folder, as Feast does."""


class EntryPacker:
    """The bytes of one feature's entry in a ``Map`` protobuf, by the length of its
    ``Value`` bytes: the map field's tag and length, the key (the feature name), the
    value's tag and length. ``Map.FromString`` of the concatenated entries gives the
    features back."""

    def __init__(self, name: str) -> None:
        self.key = b"\x0a" + varint_bytes(len(name.encode())) + name.encode()
        self._heads: dict[int, bytes] = {}

    def head(self, value_length: int) -> bytes:
        head = self._heads.get(value_length)
        if head is None:
            entry = len(self.key) + 1 + len(varint_bytes(value_length)) + value_length
            head = b"\x0a" + varint_bytes(entry) + self.key + b"\x12" + varint_bytes(value_length)
            self._heads[value_length] = head
        return head

    def entries(self, values: list[bytes]) -> list[bytes]:
        return [self.head(len(v)) + v for v in values]


def pack_rows(names: list[str], columns: list[list[bytes]]) -> list[bytes]:
    """Each row's ``Map`` of ``names`` -> its ``Value`` bytes, from one list of value
    bytes per feature (all of one length)."""
    entries = [EntryPacker(n).entries(c) for n, c in zip(names, columns, strict=True)]
    return list(map(b"".join, zip(*entries, strict=True)))


def pack_matrices_flat(
    names: list[str], matrices: list[tuple[np.ndarray, np.ndarray]]
) -> tuple[bytes, np.ndarray]:
    """Every row's ``Map`` of ``names`` -> its ``Value`` bytes, back to back, and where
    each row ends; from each feature's ``Value`` bytes as a byte matrix and lengths
    (:func:`ranking.features.online_rows.value_matrix`). Every entry's head is laid out
    in numpy (its lengths fit one varint byte: checked) and the valid bytes of all
    features are gathered row by row at once."""
    parts, masks = [], []
    for name, (matrix, lengths) in zip(names, matrices, strict=True):
        key = EntryPacker(name).key
        if len(key) + 2 + matrix.shape[1] >= 0x80:
            raise ValueError(f"{name}: an entry this long needs a two-byte length")
        head = np.empty((len(lengths), len(key) + 4), dtype=np.uint8)
        head[:, 0] = 0x0A
        head[:, 1] = len(key) + 2 + lengths
        head[:, 2 : 2 + len(key)] = np.frombuffer(key, dtype=np.uint8)
        head[:, -2] = 0x12
        head[:, -1] = lengths
        parts += [head, matrix]
        masks += [np.ones(head.shape, dtype=bool), np.arange(matrix.shape[1]) < lengths[:, None]]
    chosen = np.hstack(masks)
    return np.hstack(parts)[chosen].tobytes(), np.cumsum(chosen.sum(axis=1))


#: The numbers a bulk write's index holds per row.
_INDEX_FIELDS = ("key_start", "key_length", "features_start", "features_length", "event_ts")


def _index_bytes(columns: list[np.ndarray]) -> tuple[bytes, list[int]]:
    """Each row's numbers as decimal text, each column as wide as its widest number
    (zero-padded, with a sign where a column has a negative number), row after row:
    what SQLite's ``CAST(substr(...) AS INTEGER)`` reads back; and each column's width."""
    parts, widths = [], []
    for column in columns:
        numbers = np.asarray(column, dtype=np.int64)
        digits = decimal_matrix(numbers)[0]
        if len(numbers) and numbers.min() < 0:
            sign = np.where(numbers < 0, ord("-"), ord("+")).astype(np.uint8)[:, None]
            digits = np.hstack([sign, digits])
        parts.append(digits)
        widths.append(digits.shape[1])
    return np.hstack(parts).tobytes(), widths


def bulk_upsert_sql(name: str, widths: list[int]) -> str:
    """One statement that upserts a whole batch of rows handed over as three blobs: the
    entity keys back to back, the packed features back to back, and an index of where
    each row's key and features start, their lengths and the event time (numbers of
    ``widths`` characters). A recursive row counter cuts the rows out with ``substr``:
    ``executemany`` spent about 2 s of 3.3 s on binding 440k rows one by one here, the
    B-tree about 1 s."""
    row = sum(widths)

    def number(field: str) -> str:
        i = _INDEX_FIELDS.index(field)
        at = sum(widths[:i]) + 1
        return f"CAST(substr(:index, n * {row} + {at}, {widths[i]}) AS INTEGER)"

    return (
        "WITH RECURSIVE batch(n) AS (SELECT 0 WHERE :rows > 0 "
        "UNION ALL SELECT n + 1 FROM batch WHERE n + 1 < :rows) "
        f'INSERT INTO "{name}" (entity_key, features, event_ts, created_ts) '
        f"SELECT substr(:keys, {number('key_start')}, {number('key_length')}), "
        # A zero-length blob bound from Python reads as NULL: every row's features empty.
        f"coalesce(substr(:features, {number('features_start')}, {number('features_length')}), "
        "x''), "
        f"{number('event_ts')}, NULL FROM batch WHERE true "
        "ON CONFLICT(entity_key) DO UPDATE SET features = excluded.features, "
        "event_ts = excluded.event_ts, created_ts = excluded.created_ts"
    )


def upsert_bulk(
    con: sqlite3.Connection, name: str, keys: pa.BinaryArray, features: bytes,
    feature_ends: np.ndarray, event_micros: np.ndarray,
) -> None:  # fmt: skip
    """Upsert rows into the view's table ``name`` in one statement (rows in the primary
    key's order write fastest): each row's entity key, its packed features (``features``
    back to back, row ``i`` ending at ``feature_ends[i]``) and its event time (µs)."""
    if len(keys) == 0:
        return
    if keys.type != pa.binary():  # 32-bit offsets are read below
        keys = keys.cast(pa.binary())
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int32)[keys.offset : keys.offset
                                                               + len(keys) + 1]  # fmt: skip
    key_data = memoryview(keys.buffers()[2])[offsets[0] : offsets[-1]]
    starts = np.concatenate([[0], feature_ends[:-1]])
    index, widths = _index_bytes([offsets[:-1] - offsets[0] + 1, np.diff(offsets),
                                  starts + 1, feature_ends - starts, event_micros])  # fmt: skip
    con.execute(bulk_upsert_sql(name, widths), {"rows": len(keys), "keys": bytes(key_data),
                                                "features": features, "index": index})  # fmt: skip


def epoch_micros(when: datetime) -> int:
    """A timestamp as stored: whole microseconds since the epoch (naive means UTC)."""
    aware = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    delta = aware - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def table_name(config: RepoConfig, view: FeatureView) -> str:
    """The view's table: Feast's name for it (project, view, version)."""
    return _table_id(config.project, view, config.registry.enable_online_feature_view_versioning)


def create_table_sql(name: str) -> str:
    return (
        f'CREATE TABLE IF NOT EXISTS "{name}" (entity_key BLOB PRIMARY KEY, '
        "features BLOB NOT NULL, event_ts INTEGER NOT NULL, created_ts INTEGER) WITHOUT ROWID"
    )


def ensure_table(con: sqlite3.Connection, name: str) -> None:
    """Create the view's table; a table of Feast's own SQLite layout under that name (a
    home made before this store was the default) is dropped first: materialize refills it."""
    columns = {row[1] for row in con.execute(f'PRAGMA table_info("{name}")')}
    if columns and "features" not in columns:
        con.execute(f'DROP TABLE "{name}"')
    con.execute(create_table_sql(name))


def upsert_sql(name: str) -> str:
    return (
        f'INSERT INTO "{name}" (entity_key, features, event_ts, created_ts) '
        "VALUES (?, ?, ?, ?) ON CONFLICT(entity_key) DO UPDATE SET "
        "features = excluded.features, event_ts = excluded.event_ts, "
        "created_ts = excluded.created_ts"
    )


def db_path(config: RepoConfig) -> Path:
    path = Path(config.online_store.path)
    if config.repo_path and not path.is_absolute():
        return Path(config.repo_path) / path
    return path


def connect(path: Path) -> sqlite3.Connection:
    """The store's file, in write-ahead-log mode. A new file gets 16 KiB pages: rows of a
    few hundred bytes fill 4 KiB ones fast, and writing 440k of them into an empty table
    took 3.1 s instead of 5.0 s here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, check_same_thread=False, timeout=30)
    con.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # no effect once the file has tables
    con.execute("PRAGMA journal_mode = WAL")
    # In WAL mode, NORMAL syncs at checkpoints, not at every commit: a power cut may lose
    # the last materialization (which a rerun writes again), never the file's integrity.
    con.execute("PRAGMA synchronous = NORMAL")
    return con


class PackedSqliteOnlineStore(OnlineStore):
    """One SQLite row per entity; see the module's docstring."""

    _conn: sqlite3.Connection | None = None
    _path: Path | None = None

    def _connection(self, config: RepoConfig) -> sqlite3.Connection:
        path = db_path(config)
        if self._conn is None or self._path != path:
            self._conn, self._path = connect(path), path
        return self._conn

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        con = self._connection(config)
        order = [f.name for f in table.features]
        packers = {name: EntryPacker(name) for name in order}
        rows = []
        for entity_key, values, event_ts, created_ts in data:
            names = [n for n in order if n in values] + sorted(set(values) - set(order))
            blobs = [values[n].SerializeToString() for n in names]
            packed = b"".join(
                packers.setdefault(n, EntryPacker(n)).head(len(b)) + b
                for n, b in zip(names, blobs, strict=True)
            )  # fmt: skip
            key = serialize_entity_key(
                entity_key,
                entity_key_serialization_version=config.entity_key_serialization_version,
            )
            created = epoch_micros(created_ts) if created_ts is not None else None
            rows.append((key, packed, epoch_micros(event_ts), created))
        with con:
            ensure_table(con, table_name(config, table))
            con.executemany(upsert_sql(table_name(config, table)), rows)
        if progress:
            progress(len(rows))

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        con = self._connection(config)
        keys = [
            serialize_entity_key(
                k, entity_key_serialization_version=config.entity_key_serialization_version
            )
            for k in entity_keys
        ]
        found: dict[bytes, tuple[bytes, int]] = {}
        name = table_name(config, table)
        distinct = list(dict.fromkeys(keys))
        for lo in range(0, len(distinct), _READ_CHUNK):
            chunk = distinct[lo : lo + _READ_CHUNK]
            marks = ", ".join("?" * len(chunk))
            for key, features, event_ts in con.execute(
                f'SELECT entity_key, features, event_ts FROM "{name}" '
                f"WHERE entity_key IN ({marks})",
                chunk,
            ):
                found[key] = (features, event_ts)
        wanted = set(requested_features) if requested_features is not None else None
        result: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
        for key in keys:
            row = found.get(key)
            if row is None:
                result.append((None, None))
                continue
            values = MapProto.FromString(row[0]).val
            picked = {n: v for n, v in values.items() if wanted is None or n in wanted}
            when = _EPOCH + timedelta(microseconds=row[1])
            result.append((when, picked))
        return result

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        con = self._connection(config)
        with con:
            for view in tables_to_keep:
                ensure_table(con, table_name(config, view))
            for view in tables_to_delete:
                con.execute(f'DROP TABLE IF EXISTS "{table_name(config, view)}"')

    def teardown(
        self, config: RepoConfig, tables: Sequence[FeatureView], entities: Sequence[Entity]
    ) -> None:
        con = self._connection(config)
        with con:
            for view in tables:
                con.execute(f'DROP TABLE IF EXISTS "{table_name(config, view)}"')
