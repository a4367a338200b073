"""The fast materialize writes exactly Feast's rows, and nothing when nothing changed.

The encoders are checked value by value against Feast's own (``type_map`` and the entity
key encoding); the whole path byte for byte against stock ``FeatureStore.materialize``
into the same SQLite online store, on a real home.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from feast import FeatureStore
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

from ranking.features import materialize, online_rows, online_store, store
from ranking.ingest import synth
from tests.integration.homes import applied_home, newest_window

VALUES = {
    ValueType.DOUBLE: [0.1, None, math.nan, -2.5, 1e300, 0.0],
    ValueType.FLOAT: [0.1, None, math.nan, -2.5, 3.4e38, 0.0],
    ValueType.INT64: [3, None, -2, 0, 2**62, -(2**63), 127, 128, 300],
    ValueType.INT32: [5, -1, None, 2**31 - 1, -(2**31), 0],
    ValueType.BOOL: [True, False, None],
    ValueType.STRING: ["a", None, "é", "", "x" * 200],
}
ARROW = {
    ValueType.DOUBLE: pa.float64(),
    ValueType.FLOAT: pa.float32(),
    ValueType.INT64: pa.int64(),
    ValueType.INT32: pa.int32(),
    ValueType.BOOL: pa.bool_(),
    ValueType.STRING: pa.string(),
}


@pytest.mark.parametrize("value_type", list(VALUES))
def test_values_encode_as_feast_encodes_them(value_type: ValueType) -> None:
    values = VALUES[value_type]
    column = pa.array(values, type=ARROW[value_type], from_pandas=True)
    blobs, texts = materialize.encode_values(column, value_type)
    # Feast's path: Arrow -> Python values -> Value protos (a NaN float is a null there too).
    python = [None if isinstance(v, float) and math.isnan(v) else v for v in column.to_pylist()]
    protos = python_values_to_proto_values(python, value_type)
    assert blobs == [p.SerializeToString() for p in protos]
    assert texts == [extract_text_and_num(p, False)[0] for p in protos]


def test_entity_keys_encode_as_feast_encodes_them() -> None:
    table = pa.table({"user_id": ["u1", "ü-2", ""], "category": ["b", "a", "a|c"]})
    both = {"user_id": ValueType.STRING, "category": ValueType.STRING}
    for keys in ({"user_id": ValueType.STRING}, both):
        expected = []
        for row in table.to_pylist():
            proto = EntityKeyProto(
                join_keys=list(keys),
                entity_values=python_values_to_proto_values([row[k] for k in keys],
                                                            ValueType.STRING),
            )  # fmt: skip
            expected.append(serialize_entity_key(proto, entity_key_serialization_version=3))
        assert materialize.entity_keys(table, keys) == expected
    ints = pa.table({"shop_id": [1, -7, 2**40]})
    got = materialize.entity_keys(ints, {"shop_id": ValueType.INT64})
    want = [
        serialize_entity_key(
            EntityKeyProto(
                join_keys=["shop_id"],
                entity_values=python_values_to_proto_values([v], ValueType.INT64),
            ),
            entity_key_serialization_version=3,
        )  # fmt: skip
        for v in [1, -7, 2**40]
    ]
    assert got == want


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, small_data: synth.SynthData):
    """A home with features computed and the repo applied, nothing materialized."""
    settings, build = applied_home(tmp_path_factory.mktemp("home"), small_data)
    return settings, *newest_window(settings, build)


def _online_rows(path: Path, columns: str) -> dict[str, list[tuple]]:
    """Every view table's rows (the digest table aside), in key order."""
    with sqlite3.connect(path) as con:
        tables = [t for (t,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ranking\\_%' "
            "ESCAPE '\\' AND name <> 'ranking_materialized' ORDER BY name")]  # fmt: skip
        return {t: con.execute(f'SELECT {columns} FROM "{t}" ORDER BY 1, 2').fetchall()
                for t in tables}  # fmt: skip


FEAST_COLUMNS = "entity_key, feature_name, value, value_text, vector_value, event_ts, created_ts"
PACKED_COLUMNS = "entity_key, features, event_ts, created_ts"


def _online_reads(settings, fs) -> dict[str, pd.DataFrame]:
    """Feast's online read of every feature of the user and item views, 30 entities each."""
    out = {}
    for view, key in (("user_long_term", "user_id"), ("item_stats", "item_id")):
        ids = pd.read_parquet(settings.features_dir / f"{view}.parquet")[key].unique()[:30]
        refs = [f"{view}:{f.name}" for f in fs.get_feature_view(view).features]
        rows = [{key: v} for v in sorted(ids)]
        out[view] = fs.get_online_features(features=refs, entity_rows=rows).to_df()
        assert out[view].drop(columns=key).notna().any(axis=None), view
    return out


def _empty(path: Path) -> None:
    with sqlite3.connect(path) as con:
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            con.execute(f'DELETE FROM "{table}"')


def _feast_sqlite_twin(settings, tmp: Path) -> FeatureStore:
    """The same repo and registry with Feast's own SQLite online store, in ``tmp``."""
    text = (settings.feature_repo / "feature_store.yaml").read_text()
    text = text.replace(f"type: {online_store.STORE_TYPE}", "type: sqlite")
    text = text.replace("${RANKING_HOME}/feast/online_store.db", str(tmp / "feast_sqlite.db"))
    assert "type: sqlite" in text and "feast_sqlite.db" in text
    (tmp / "feature_store.yaml").write_text(text)
    twin = FeatureStore(repo_path=str(settings.feature_repo),
                        fs_yaml_file=tmp / "feature_store.yaml")  # fmt: skip
    views = twin.list_feature_views()
    twin._get_provider().online_store.update(twin.config, [], views, [], [], partial=False)
    return twin


def test_feast_reads_from_the_packed_store_what_it_reads_from_its_own(home, tmp_path) -> None:
    """The default store: Feast's own materialize into it (its ``online_write_batch``)
    and the column writer leave the same bytes, and ``get_online_features`` returns from
    it exactly what it returns from Feast's SQLite store holding the same snapshot."""
    settings, start, end = home
    fs = store.get_store(settings)
    assert fs.config.online_store.type == online_store.STORE_TYPE
    packed = settings.feast_dir / "online_store.db"
    twin = _feast_sqlite_twin(settings, tmp_path)
    twin.materialize(start_date=start, end_date=end)
    from_feasts_store = _online_reads(settings, twin)

    _empty(packed)
    fs.materialize(start_date=start, end_date=end)  # Feast's path, through the packed store
    stock = _online_rows(packed, PACKED_COLUMNS)
    assert len(stock) == 4 and all(len(rows) > 0 for rows in stock.values())
    for view, frame in _online_reads(settings, fs).items():
        pd.testing.assert_frame_equal(frame, from_feasts_store[view], obj=view)

    _empty(packed)
    report = store.materialize_latest(fs, start, end)
    assert not report.stock and not report.unchanged
    ours = _online_rows(packed, PACKED_COLUMNS)
    assert ours.keys() == stock.keys()
    for table in stock:  # event times: Feast's path keeps whole seconds, the snapshot's are
        assert [r[:2] for r in ours[table]] == [r[:2] for r in stock[table]], table
        assert [r[2] // 1_000_000 for r in ours[table]] == [r[2] // 1_000_000
                                                           for r in stock[table]]  # fmt: skip
    assert report.written["user_long_term"] == len(stock["ranking_user_long_term"])
    for view, frame in _online_reads(settings, fs).items():  # what Feast reads back
        pd.testing.assert_frame_equal(frame, from_feasts_store[view], obj=view)


def test_the_column_writer_writes_feasts_own_sqlite_rows(home, tmp_path) -> None:
    """With ``type: sqlite`` (Feast's store, one row per value), the column writer's rows
    are stock materialize's, byte for byte."""
    settings, start, end = home
    twin = _feast_sqlite_twin(settings, tmp_path)
    twin.materialize(start_date=start, end_date=end)
    stock = _online_rows(tmp_path / "feast_sqlite.db", FEAST_COLUMNS)
    assert len(stock) == 4 and all(len(rows) > 0 for rows in stock.values())
    _empty(tmp_path / "feast_sqlite.db")
    report = store.materialize_latest(twin, start, end)
    assert not report.stock and not report.unchanged
    assert _online_rows(tmp_path / "feast_sqlite.db", FEAST_COLUMNS) == stock
    assert report.written["user_long_term"] == len(stock["ranking_user_long_term"]) // len(
        twin.get_feature_view("user_long_term").features
    )


def test_nothing_is_written_when_nothing_changed(home) -> None:
    settings, start, end = home
    fs = store.get_store(settings)
    packed = settings.feast_dir / "online_store.db"
    first = store.materialize_latest(fs, start, end, force=True)
    assert not first.unchanged and first.written
    rows = _online_rows(packed, PACKED_COLUMNS)
    again = store.materialize_latest(fs, start, end)
    assert again.written == {} and sorted(again.unchanged) == sorted(first.written)
    forced = store.materialize_latest(fs, start, end, force=True)
    assert forced.written == first.written and not forced.unchanged

    # A table emptied behind its back (or re-created by `feast apply`) is written again.
    with sqlite3.connect(packed) as con:
        con.execute('DELETE FROM "ranking_item_stats"')
    healed = store.materialize_latest(fs, start, end)
    assert list(healed.written) == ["item_stats"]
    assert _online_rows(packed, PACKED_COLUMNS) == rows


def test_the_newest_rows_are_those_feasts_offline_store_pulls(home) -> None:
    """DuckDB's read of a Parquet source selects what Feast's ``pull_latest_...`` does,
    over a window of many snapshots (the newest row per key wins) and the newest one."""
    settings, start, end = home
    fs = store.get_store(settings)
    wide = start - 5 * settings.features.snapshot_every
    for view in fs.list_feature_views():
        keys = [e.name for e in view.entity_columns]
        for low, high in ((wide, end), (start, end)):
            ours = online_rows.latest_rows(fs, view, low, high)
            feasts = (
                fs._get_provider()
                .offline_store.pull_latest_from_table_or_query(
                    config=fs.config, data_source=view.batch_source, join_key_columns=keys,
                    feature_name_columns=[f.name for f in view.features],
                    timestamp_field=view.batch_source.timestamp_field,
                    created_timestamp_column=None, start_date=low, end_date=high,
                )
                .to_arrow()
                .sort_by([(k, "ascending") for k in keys])
            )  # fmt: skip
            assert ours.num_rows > 0, view.name
            assert ours.equals(feasts), (view.name, low)
        snapshots = pd.read_parquet(view.batch_source.path, columns=["event_timestamp"])
        held = snapshots["event_timestamp"].between(wide, end).groupby(
            snapshots["event_timestamp"]).any()  # fmt: skip
        assert held.sum() > 1, view.name  # the wide window held several snapshots to choose from


def test_a_store_file_in_feasts_own_layout_is_taken_over(home, tmp_path) -> None:
    """A home made while Feast's own SQLite store was the default holds its tables (one
    row per value) under the names this store uses: they are replaced, and Feast then
    reads the same values as from its own store."""
    settings, start, end = home
    twin = _feast_sqlite_twin(settings, tmp_path)
    twin.materialize(start_date=start, end_date=end)
    packed = settings.feast_dir / "online_store.db"
    for leftover in (packed, packed.with_name(packed.name + "-wal"),
                     packed.with_name(packed.name + "-shm")):  # fmt: skip
        leftover.unlink(missing_ok=True)
    shutil.copy(tmp_path / "feast_sqlite.db", packed)
    fs = store.get_store(settings)
    report = store.materialize_latest(fs, start, end)
    assert sorted(report.written) == sorted(v.name for v in fs.list_feature_views())
    assert set(_online_rows(packed, PACKED_COLUMNS)) == {f"ranking_{v}" for v in report.written}
    for view, frame in _online_reads(settings, fs).items():
        pd.testing.assert_frame_equal(frame, _online_reads(settings, twin)[view], obj=view)
