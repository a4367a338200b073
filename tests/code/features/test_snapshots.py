"""Point-in-time correctness of the feature snapshots, on adversarial and generated data."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ranking.features.families import FAMILIES
from ranking.features.snapshots import compute_features
from ranking.ingest import synth
from ranking.ingest.contract import ingest, load_events
from ranking.warehouse import warehouse
from tests.conftest import END, NOW

TYPES = ["impression", "click", "view", "play", "skip", "add_to_cart", "purchase", "rating"]
DAY = timedelta(days=1)


def _events(rows: list[tuple[str, str, str, datetime]], path: Path) -> Path:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "event_timestamp"])
    frame["event_timestamp"] = frame["event_timestamp"].map(lambda t: t.isoformat() + "Z")
    frame.to_csv(path, index=False)
    return path


def _read(out: Path, family: str) -> pd.DataFrame:
    frame = pd.read_parquet(out / f"{family}.parquet")
    frame["event_timestamp"] = frame["event_timestamp"].dt.tz_convert(None)
    return frame


@pytest.fixture
def adversarial(tmp_path: Path) -> Path:
    """Events placed right after, and exactly at, snapshot boundaries."""
    d1, d2, d3 = datetime(2026, 2, 1), datetime(2026, 2, 2), datetime(2026, 2, 3)
    rows = [
        ("u1", "i1", "click", d1 + timedelta(hours=10)),
        ("u1", "i1", "click", d2 + timedelta(microseconds=1)),  # just after snapshot d2
        ("u1", "i2", "click", d3),  # exactly at snapshot d3: belongs to the next one
        ("u2", "i1", "impression", d1 + timedelta(hours=23, minutes=59, seconds=59)),
    ]
    path = _events(rows, tmp_path / "events.csv")
    with warehouse(tmp_path / "w.duckdb") as con:
        load_events(con, path, TYPES, NOW)
        compute_features(con, tmp_path / "features", as_of=datetime(2026, 2, 5))
    return tmp_path / "features"


def test_event_just_after_a_snapshot_is_not_in_it(adversarial: Path) -> None:
    users = _read(adversarial, "user_long_term").set_index(["user_id", "event_timestamp"])
    clicks = users.loc["u1", "user_clicks_all"]
    assert clicks[datetime(2026, 2, 2)] == 1  # the d2 + 1us click is not in snapshot d2
    assert clicks[datetime(2026, 2, 3)] == 2  # ...it is in d3; the click at d3 is not
    assert clicks[datetime(2026, 2, 4)] == 3
    assert clicks[datetime(2026, 2, 5)] == 3
    # No snapshot before the first event's bucket closes.
    assert users.index.get_level_values("event_timestamp").min() == datetime(2026, 2, 2)


def test_windows_and_decay_follow_the_snapshot(adversarial: Path) -> None:
    short = _read(adversarial, "user_short_term").set_index(["user_id", "event_timestamp"])
    u1 = short.loc["u1"]
    assert u1.loc[datetime(2026, 2, 3), "user_clicks_1d"] == 1
    assert u1.loc[datetime(2026, 2, 4), "user_clicks_1d"] == 1
    assert u1.loc[datetime(2026, 2, 5), "user_clicks_1d"] == 0
    assert u1.loc[datetime(2026, 2, 5), "user_clicks_7d"] == 3
    # Decay uses bucket age: buckets of 2/1, 2/2, 2/3 seen from 2/5 are 4, 3, 2 days old.
    expected = sum(0.5 ** (age / 7.0) for age in (4, 3, 2))
    assert u1.loc[datetime(2026, 2, 5), "user_clicks_decayed_7d"] == pytest.approx(expected)
    assert u1.loc[datetime(2026, 2, 5), "user_days_since_last_event"] == pytest.approx(2.0)


def test_user_category_rows_only_where_the_user_engaged(adversarial: Path) -> None:
    affinity = _read(adversarial, "user_category")
    assert set(affinity["user_id"]) == {"u1"}  # u2 only saw an impression
    assert (affinity["user_category_share_all"] == 1.0).all()  # one category: 'unknown'


def test_parquet_types_and_timestamps_are_what_feast_needs(adversarial: Path) -> None:
    for family in FAMILIES:
        schema = duckdb.sql(
            f"DESCRIBE SELECT * FROM '{adversarial / family.name}.parquet'"
        ).fetchall()
        types = {name: dtype for name, dtype, *_ in schema}
        assert types["event_timestamp"] == "TIMESTAMP WITH TIME ZONE"
        for spec in family.features:
            assert types[spec.name] == {"Int64": "BIGINT", "Float64": "DOUBLE"}[spec.dtype]


def test_snapshots_of_generated_data_match_a_brute_force_count(tmp_path: Path) -> None:
    data = synth.generate(synth.SynthConfig(events=8_000, days=10, end=END, seed=3))
    paths = synth.write(data, tmp_path / "raw")
    ingest(tmp_path / "w.duckdb", paths["events"], TYPES, NOW, paths["items"])
    with warehouse(tmp_path / "w.duckdb") as con:
        compute_features(con, tmp_path / "f", as_of=END)
        mismatches = con.execute(
            f"""
            WITH f AS (
                SELECT user_id, (event_timestamp AT TIME ZONE 'UTC') AS ts, user_events_all,
                       user_events_7d
                FROM '{tmp_path / "f" / "user_long_term.parquet"}'
                JOIN '{tmp_path / "f" / "user_short_term.parquet"}' USING (user_id, event_timestamp)
            )
            SELECT count(*) FROM f
            WHERE user_events_all <> (SELECT count(*) FROM events e
                                      WHERE e.user_id = f.user_id AND e.event_timestamp < f.ts)
               OR user_events_7d <> (SELECT count(*) FROM events e WHERE e.user_id = f.user_id
                    AND e.event_timestamp < f.ts AND e.event_timestamp >= f.ts - INTERVAL 7 DAY)
            """
        ).fetchall()[0][0]
        rows = con.execute(
            f"SELECT count(*) FROM '{tmp_path / 'f' / 'user_long_term.parquet'}'"
        ).fetchall()[0][0]
    assert rows > 300
    assert mismatches == 0
