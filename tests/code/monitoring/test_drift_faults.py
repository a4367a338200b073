"""Injected faults in generated data are caught by the drift checks; clean data is not."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from ranking.checks.thresholds import DriftThresholds
from ranking.ingest import synth
from ranking.monitoring.drift import check_categorical, check_numeric

END = datetime(2026, 3, 1)


def _halves(cfg: synth.SynthConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clicks with their item's category, split at the middle of the window."""
    data = synth.generate(cfg)
    events = data.events.to_pandas()
    clicks = events[events["event_type"].astype(str) == "click"].copy()
    primary = data.items.set_index("item_id")["category"].str.split("|").str[0]
    clicks["category"] = clicks["item_id"].astype(str).map(primary)
    ts = pd.to_datetime(clicks["event_timestamp"]).dt.tz_localize(None)
    middle = pd.Timestamp(cfg.start) + (pd.Timestamp(cfg.end) - pd.Timestamp(cfg.start)) / 2
    return clicks[ts < middle], clicks[ts >= middle]


def test_a_taste_shift_in_generated_users_is_caught() -> None:
    cfg = synth.SynthConfig(events=60_000, days=14, end=END, seed=4, drifting_user_share=0.6,
                            taste_shift_to="horror")  # fmt: skip
    first, second = _halves(cfg)
    result = check_categorical("clicked_category", first["category"], second["category"])
    assert result.status == "fail", result.reason
    assert (second["category"] == "horror").mean() > (first["category"] == "horror").mean()


def test_the_same_generated_users_without_the_shift_raise_nothing() -> None:
    cfg = synth.SynthConfig(events=60_000, days=14, end=END, seed=4, drifting_user_share=0.0)
    first, second = _halves(cfg)
    result = check_categorical("clicked_category", first["category"], second["category"])
    assert result.status == "ok", result.reason


def test_a_unit_change_on_generated_dwell_is_caught() -> None:
    cfg = synth.SynthConfig(events=60_000, days=14, end=END, seed=5, drifting_user_share=0.0)
    data = synth.generate(cfg).events.to_pandas()
    views = data[data["event_type"].astype(str) == "view"]["value"].reset_index(drop=True)
    half = len(views) // 2
    before, after = views[:half], views[half:] * 1000  # seconds became milliseconds
    assert check_numeric("dwell", before, views[half:], DriftThresholds()).status == "ok"
    assert check_numeric("dwell", before, after, DriftThresholds()).status == "fail"
