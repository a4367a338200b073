"""The packed store's bulk write (one statement over three blobs) leaves the rows that
``executemany`` of the row-by-row upsert leaves: keys, features and event times exact,
an upsert replacing what a key held."""

from __future__ import annotations

import sqlite3

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ranking.features.online_store import create_table_sql, upsert_bulk, upsert_sql

_ROW = st.tuples(st.binary(min_size=1, max_size=80), st.binary(max_size=300),
                 st.integers(-(2**62), 2**62))  # fmt: skip


def _tables() -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    for name in ("bulk", "rows"):
        con.execute(create_table_sql(name))
    return con


def _write(con: sqlite3.Connection, rows: list[tuple[bytes, bytes, int]], cut: int,
           key_type: pa.DataType) -> None:  # fmt: skip
    """Both ways; the bulk one in two batches cut out of one Arrow array (offsets not 0)."""
    con.executemany(upsert_sql("rows"), [(k, f, t, None) for k, f, t in rows])
    keys = pa.array([k for k, _, _ in rows], key_type)
    for lo, hi in ((0, cut), (cut, len(rows))):
        part = rows[lo:hi]
        ends = np.cumsum([len(f) for _, f, _ in part], dtype=np.int64)
        upsert_bulk(con, "bulk", keys.slice(lo, hi - lo), b"".join(f for _, f, _ in part), ends,
                    np.array([t for _, _, t in part], dtype=np.int64))  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(_ROW, max_size=40, unique_by=lambda r: r[0]),
       st.lists(_ROW, max_size=40, unique_by=lambda r: r[0]), st.data())  # fmt: skip
def test_bulk_upserts_equal_row_by_row_ones(first, second, data) -> None:
    con = _tables()
    for rows in (first, second + first[: len(first) // 2]):  # the second replaces some
        rows = list({k: (k, f, t) for k, f, t in rows}.values())
        key_type = data.draw(st.sampled_from([pa.binary(), pa.large_binary()]))
        _write(con, rows, data.draw(st.integers(0, len(rows))), key_type)
    read = {name: con.execute(f"SELECT * FROM {name} ORDER BY entity_key").fetchall()
            for name in ("bulk", "rows")}  # fmt: skip
    assert read["bulk"] == read["rows"]
    assert len(read["bulk"]) == len({k for k, _, _ in first + second})
