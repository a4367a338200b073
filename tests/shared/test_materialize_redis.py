"""Materialize into Redis writes exactly Feast's hashes, and nothing when nothing changed."""

from __future__ import annotations

import time

import pytest
import redis

from ranking.features import store
from ranking.ingest import synth
from tests.integration.homes import applied_home, newest_window
from tests.shared.conftest import Services

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def home(shared_env, tmp_path_factory: pytest.TempPathFactory, small_data: synth.SynthData):
    """A shared-profile home with features computed and the repo applied."""
    settings, build = applied_home(tmp_path_factory.mktemp("redis-home"), small_data)
    assert settings.profile == "shared"
    return settings, *newest_window(settings, build)


def _hashes(r: redis.Redis) -> dict[bytes, dict[bytes, bytes]]:
    return {key: r.hgetall(key) for key in r.scan_iter(count=10_000)}


def test_the_column_writer_writes_feasts_hashes_and_skips_what_is_there(
    home, services: Services
) -> None:
    settings, start, end = home
    r = redis.Redis(host=services.config.host, port=services.config.redis_port)
    fs = store.get_store(settings)
    r.flushdb()
    started = time.perf_counter()
    fs.materialize(start_date=start, end_date=end)  # Feast's own path
    stock_seconds = time.perf_counter() - started
    stock = _hashes(r)
    assert len(stock) > 100

    r.flushdb()
    started = time.perf_counter()
    report = store.materialize_latest(fs, start, end)
    ours_seconds = time.perf_counter() - started
    assert _hashes(r) == stock  # byte for byte: every key, field and value
    assert not report.stock and not report.unchanged
    assert sum(report.written.values()) > len(stock) / 2
    rows = sum(report.written.values())
    print(f"\n{rows:,} entity rows into Redis: Feast {stock_seconds:.2f} s, "
          f"columns {ours_seconds:.2f} s")  # fmt: skip

    again = store.materialize_latest(fs, start, end)
    assert set(again.written.values()) == {0} and sorted(again.unchanged) == sorted(report.written)

    # One user's hash lost: both user views write that one entity again, nothing else.
    user_key = next(k for k, fields in stock.items() if b"_ts:user_long_term" in fields)
    r.delete(user_key)
    healed = store.materialize_latest(fs, start, end)
    assert healed.written == {view: int(view.startswith("user_") and view != "user_category")
                              for view in report.written}  # fmt: skip
    assert _hashes(r) == stock

    forced = store.materialize_latest(fs, start, end, force=True)
    assert forced.written == report.written and _hashes(r) == stock

    # The snapshot before: older than every stored row, it replaces none (Feast's rule).
    step = end - start
    older = store.materialize_latest(fs, start - step, end - step)
    assert set(older.written.values()) == {0} and _hashes(r) == stock
    # Written first, its rows are replaced by the newest snapshot's.
    r.flushdb()
    first = store.materialize_latest(fs, start - step, end - step)
    assert sum(first.written.values()) > 0 and _hashes(r) != stock
    store.materialize_latest(fs, start, end)
    now = _hashes(r)
    assert {key: now[key] for key in stock} == stock

    # Feast's key_ttl_seconds: every hash written gets it.
    fs.config.online_store.key_ttl_seconds = 3600
    try:
        store.materialize_latest(fs, start, end, force=True)
    finally:
        fs.config.online_store.key_ttl_seconds = None
    assert all(0 < r.ttl(key) <= 3600 for key in stock)
