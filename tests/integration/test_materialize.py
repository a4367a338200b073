"""The fast materialize writes exactly Feast's rows, and nothing when nothing changed.

The encoders are checked value by value against Feast's own (``type_map`` and the entity
key encoding); the whole path byte for byte against stock ``FeatureStore.materialize``
into the same SQLite online store, on a real home.
"""

from __future__ import annotations

import math
import sqlite3

import pandas as pd
import pyarrow as pa
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

from ranking.features import materialize, store
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


def _online_rows(settings) -> dict[str, list[tuple]]:
    with sqlite3.connect(settings.feast_dir / "online_store.db") as con:
        tables = [t for (t,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ranking\\_%' "
            "ESCAPE '\\' AND name <> 'ranking_materialized' ORDER BY name")]  # fmt: skip
        return {
            t: con.execute(
                f"SELECT entity_key, feature_name, value, value_text, vector_value, event_ts, "
                f'created_ts FROM "{t}" ORDER BY entity_key, feature_name'
            ).fetchall()
            for t in tables
        }


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


def _empty_online_store(settings) -> None:
    with sqlite3.connect(settings.feast_dir / "online_store.db") as con:
        for table in _online_rows(settings):
            con.execute(f'DELETE FROM "{table}"')


def test_the_fast_path_writes_feasts_rows_and_skips_what_is_there(home) -> None:
    settings, start, end = home
    fs = store.get_store(settings)
    _empty_online_store(settings)
    fs.materialize(start_date=start, end_date=end)  # Feast's own path
    stock = _online_rows(settings)
    assert len(stock) == 4 and all(len(rows) > 0 for rows in stock.values())
    online_stock = _online_reads(settings, fs)

    _empty_online_store(settings)
    report = store.materialize_latest(fs, start, end)
    assert _online_rows(settings) == stock  # byte for byte, every table
    assert not report.stock and not report.unchanged
    assert report.written["user_long_term"] == len(stock["ranking_user_long_term"]) // len(
        fs.get_feature_view("user_long_term").features
    )
    for view, frame in _online_reads(settings, fs).items():  # what Feast reads back
        pd.testing.assert_frame_equal(frame, online_stock[view], obj=view)

    again = store.materialize_latest(fs, start, end)
    assert again.written == {} and sorted(again.unchanged) == sorted(report.written)
    forced = store.materialize_latest(fs, start, end, force=True)
    assert forced.written == report.written and not forced.unchanged

    # A table emptied behind its back (or re-created by `feast apply`) is written again.
    with sqlite3.connect(settings.feast_dir / "online_store.db") as con:
        con.execute('DELETE FROM "ranking_item_stats"')
    healed = store.materialize_latest(fs, start, end)
    assert list(healed.written) == ["item_stats"]
    assert _online_rows(settings) == stock
