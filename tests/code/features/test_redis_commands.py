"""The Redis writer's bytes laid out by column equal what redis-py and protobuf give one
value at a time (the writer itself is tested against Feast on a real Redis in
``tests/shared/test_materialize_redis.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import PythonRespSerializer

from ranking.features.materialize_redis import _decimal, _Layout, _strings, _timestamps


def _resp(*args: bytes) -> bytes:
    return b"".join(PythonRespSerializer(1_000_000, lambda a: a).pack(*args))


@given(st.lists(st.integers(0, 2**62), min_size=1, max_size=50))
def test_decimals_are_python_ints_as_text(numbers: list[int]) -> None:
    matrix, mask = _decimal(np.array(numbers))
    texts = [bytes(row[keep]) for row, keep in zip(matrix, mask, strict=True)]
    assert texts == [str(n).encode() for n in numbers]


def test_a_time_before_1970_is_refused() -> None:
    with pytest.raises(ValueError, match="before 1970"):
        _decimal(np.array([3, -1]))


@given(st.lists(st.integers(0, 2**41), min_size=1, max_size=50))
def test_timestamps_are_protobufs_serialization(micros: list[int]) -> None:
    matrix, mask = _timestamps(np.array(micros, dtype=np.int64))
    ours = [bytes(row[keep]) for row, keep in zip(matrix, mask, strict=True)]
    theirs = []
    for us in micros:
        seconds, rest = divmod(us, 1_000_000)
        theirs.append(Timestamp(seconds=seconds, nanos=rest * 1000).SerializeToString())
    assert ours == theirs


@given(st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=20)), min_size=1,
                max_size=30))  # fmt: skip
def test_rows_of_bulk_strings_are_redis_pys_commands(pairs: list[tuple[bytes, bytes]]) -> None:
    keys, values = zip(*pairs, strict=True)
    rows = _Layout()
    rows.text(b"*4\r\n$4\r\nHSET\r\n")
    rows.bulk(*_strings(list(keys)))
    rows.text(b"$1\r\nf\r\n")
    rows.bulk(*_strings(list(values)))
    commands = [_resp(b"HSET", k, b"f", v) for k, v in pairs]
    cut = len(pairs) // 2  # a batch is any run of rows
    assert rows.flat(0, len(pairs)) == b"".join(commands)
    assert rows.flat(cut, len(pairs)) == b"".join(commands[cut:])
