"""Rolling temporal cut-offs derived from the warehouse's events (ranking.evaluation.protocol)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ranking.errors import NoDataError
from ranking.evaluation.protocol import derive_protocol
from ranking.ingest.contract import ingest
from ranking.ingest.profile import cadence_for, derived_sections
from ranking.settings import Settings
from ranking.times import floor_to
from ranking.training.dataset import SplitTimes
from ranking.warehouse import warehouse
from tests.conftest import NOW

DAY, WEEK, HOUR = timedelta(days=1), timedelta(days=7), timedelta(hours=1)

# Three users, one click each at 12:00 every day from 2026-01-01 to 2026-02-28 (59 days):
# span 58 days -> daily cadence.
DAILY = [(u, datetime(2026, 1, 1, 12) + k * DAY) for k in range(59) for u in ("u1", "u2", "u3")]
# One user, one click at midnight every day from Thursday 2023-01-05 (on the weekly grid:
# 1970-01-01 was a Thursday) to Wednesday 2026-02-25: 1147 days > 730 -> weekly cadence.
WEEKLY = [("u1", datetime(2023, 1, 5) + k * DAY) for k in range(1148)]
# One user, a click every hour at :30 for five days: span 119 h <= 14 days -> hourly.
HOURLY = [("u1", datetime(2026, 2, 20, 0, 30) + k * HOUR) for k in range(120)]


def _build(folder: Path, name: str, rows: list[tuple[str, datetime]]) -> Path:
    csv = folder / f"{name}.csv"
    body = "".join(f"{u},i1,click,{t:%Y-%m-%dT%H:%M:%S}\n" for u, t in rows)
    csv.write_text("user_id,item_id,event_type,event_timestamp\n" + body)
    path = folder / f"{name}.duckdb"
    assert ingest(path, csv, ["click"], NOW)[0].accepted == len(rows)
    return path


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("protocol")
    data = {"daily": DAILY, "weekly": WEEKLY, "hourly": HOURLY}
    return {name: _build(folder, name, rows) for name, rows in data.items()}


def _epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (timedelta(0), timedelta(minutes=10)),
        (timedelta(days=2), timedelta(minutes=10)),  # a log of hours or a day or two
        (timedelta(days=2, seconds=1), HOUR),
        (timedelta(days=14), HOUR),  # the boundary is "above 14 days"
        (timedelta(days=14, seconds=1), DAY),
        (timedelta(days=730), DAY),  # the boundary is "above 730 days"
        (timedelta(days=730, seconds=1), WEEK),
        (timedelta(days=4000), WEEK),
    ],
)
def test_cadence_follows_the_span(span: timedelta, expected: timedelta) -> None:
    assert cadence_for(span) == expected


@pytest.mark.parametrize(
    ("span_days", "window", "decay"),
    [
        (100, 28.0, 7.0),  # 100/20 = 5 -> clamped up to 28; 28/12 = 2.33 -> 7
        (560, 28.0, 7.0),  # 560/20 = 28 exactly
        (1000, 50.0, 7.0),  # 1000/20 = 50; 50/12 = 4.17 -> 7
        (3000, 150.0, 12.5),  # 3000/20 = 150; 150/12 = 12.5
        (7300, 365.0, 365 / 12),  # 7300/20 = 365 exactly; 365/12 = 30.42
        (10000, 365.0, 365 / 12),  # 10000/20 = 500 -> clamped down to 365
    ],
)
def test_derived_sections_follow_the_span(
    settings: Settings, span_days: int, window: float, decay: float
) -> None:
    cadence = cadence_for(timedelta(days=span_days))
    sections = derived_sections(timedelta(days=span_days), cadence)
    horizon = 28.0 if cadence == timedelta(days=7) else 7.0  # four weekly steps, else a week
    assert sections == {
        "training": {"label_horizon_days": pytest.approx(horizon)},
        "features": {"snapshot_every": cadence, "decay_half_life_days": pytest.approx(decay)},
        "retrieval": {
            "window_days": pytest.approx(window),
            "half_life_days": pytest.approx(window / 4),
            "fresh_days": pytest.approx(window),
            "embedding_refresh_days": pytest.approx(decay),  # refitted as features decay
        },
    }
    # A real Settings takes them, validated (get_settings rebuilds the same way), and keeps
    # the sections' other fields and the other sections.
    updated = type(settings)(**settings.updated(**sections).model_dump())
    assert updated.features.snapshot_every == cadence
    assert updated.features.decay_half_life_days == pytest.approx(decay)
    assert updated.retrieval.window_days == pytest.approx(window)
    assert updated.retrieval.half_life_days == pytest.approx(window / 4)
    assert updated.retrieval.fresh_days == pytest.approx(window)
    assert updated.retrieval.embedding_refresh_days == pytest.approx(decay)
    assert updated.retrieval.covisit_budget == settings.retrieval.covisit_budget
    assert updated.features.owner == settings.features.owner
    assert updated.training.valid_window == timedelta(days=5)  # the fixture's
    assert updated.training.label_horizon_days == pytest.approx(horizon)


def test_daily_cutoffs_by_hand(warehouses: dict[str, Path]) -> None:
    p = derive_protocol(warehouses["daily"], cutoffs=4, train_windows=12, valid_windows=1)
    # 177 events; the 0.7 quantile sits at position 176 * 0.7 = 123.2 of the sorted times,
    # between the 124th and 125th events, both on day 123 // 3 = 124 // 3 = 41:
    # 2026-01-01 12:00 + 41 days = 2026-02-11 12:00, floored to 2026-02-11.
    # End: 2026-02-28 12:00 floored, plus a day = 2026-03-01. 18 days // 4 cut-offs = 4.
    assert p.cadence == DAY
    assert p.window == 4 * DAY
    assert p.valid == 4 * DAY and p.train == 48 * DAY
    assert p.cutoffs == [datetime(2026, 2, d) for d in (13, 17, 21, 25)]
    assert p.as_of == datetime(2026, 3, 1)
    # Earliest training start 02-13 - 4 - 48 days = 2025-12-23, before the first event's
    # snapshot 2026-01-01 12:00 floored + 1 day = 2026-01-02: training is clipped there.
    assert p.first_snapshot == datetime(2026, 1, 2)
    assert p.times(datetime(2026, 2, 13)) == SplitTimes(
        datetime(2026, 1, 2), datetime(2026, 2, 9), datetime(2026, 2, 13), datetime(2026, 2, 17)
    )
    # The last cut-off starts 02-25 - 52 days = 01-04, after the clip.
    assert p.times(datetime(2026, 2, 25)).start == datetime(2026, 1, 4)
    assert p.sections["retrieval"]["window_days"] == 28.0  # 58 / 20 = 2.9 -> 28


def test_weekly_cutoffs_by_hand(warehouses: dict[str, Path]) -> None:
    p = derive_protocol(warehouses["weekly"], cutoffs=4, train_windows=2, valid_windows=1)
    # 1148 daily events; 0.7 quantile at 1147 * 0.7 = 802.9 days after 2023-01-05, i.e.
    # 2025-03-17 21:36 (a Monday), floored to Thursday 2025-03-13. End: Wednesday 2026-02-25
    # floored to Thursday 02-19, plus a week = 2026-02-26. 2025-03-13 -> 2026-02-26 is
    # 365 - 15 = 350 days = 50 weeks; 50 // 4 = 12 weeks = 84 days per window.
    assert p.cadence == WEEK
    assert p.window == 84 * DAY
    expected = [datetime(2025, 3, 27), datetime(2025, 6, 19), datetime(2025, 9, 11)]
    assert p.cutoffs == [*expected, datetime(2025, 12, 4)]
    assert p.as_of == datetime(2026, 2, 26)
    # Earliest training start 2025-03-27 - 3 * 84 = 252 days = 2024-07-18, after the first
    # snapshot 2023-01-12: no clipping, and first_snapshot is that start (on the grid).
    assert p.first_snapshot == datetime(2024, 7, 18)
    assert p.times(datetime(2025, 3, 27)) == SplitTimes(
        datetime(2024, 7, 18), datetime(2025, 1, 2), datetime(2025, 3, 27), datetime(2025, 6, 19)
    )
    # 1147 / 20 = 57.35 days of retrieval look-back; 57.35 / 12 = 4.78 -> 7 days of decay.
    assert p.sections["retrieval"]["window_days"] == pytest.approx(57.35)
    assert p.sections["retrieval"]["half_life_days"] == pytest.approx(57.35 / 4)
    assert p.sections["features"] == {"snapshot_every": WEEK, "decay_half_life_days": 7.0}
    assert p.sections["training"] == {"label_horizon_days": 28.0}  # four weekly steps


def test_expanding_training_window_starts_every_cutoff_at_the_first_snapshot(
    warehouses: dict[str, Path],
) -> None:
    sliding = derive_protocol(warehouses["weekly"], cutoffs=4, train_windows=2, valid_windows=1)
    p = derive_protocol(warehouses["weekly"], cutoffs=4, train_windows=None, valid_windows=1)
    assert p.cutoffs == sliding.cutoffs and p.window == sliding.window and p.train is None
    # The first event 2023-01-05 is on the weekly grid: its snapshot is a week later.
    assert p.first_snapshot == datetime(2023, 1, 12)
    for c in p.cutoffs:  # every cut-off trains on all the history before its validation
        assert p.times(c) == SplitTimes(datetime(2023, 1, 12), c - p.valid, c, c + p.window)
        assert p.times(c).start < sliding.times(c).start
    assert p.describe()["train_days"] == "all before validation"


@pytest.mark.parametrize(
    ("name", "rows", "cadence"),
    [("daily", DAILY, DAY), ("weekly", WEEKLY, WEEK), ("hourly", HOURLY, HOUR)],
)
@pytest.mark.parametrize(
    ("cutoffs", "eval_share", "train_windows", "valid_windows"),
    [(1, 0.3, 8, 2), (3, 0.5, 1, 1), (5, 0.25, 30, 3)],
)
def test_cutoff_structure(
    warehouses: dict[str, Path], name: str, rows: list, cadence: timedelta,
    cutoffs: int, eval_share: float, train_windows: int, valid_windows: int,
) -> None:  # fmt: skip
    p = derive_protocol(warehouses[name], cutoffs, eval_share, train_windows, valid_windows)
    step = cadence.total_seconds()
    times = sorted(t for _, t in rows)
    assert p.cadence == cadence
    assert (p.first_event, p.last_event) == (times[0], times[-1])
    # Equally spaced by a whole number of cadences, on the cadence grid.
    assert len(p.cutoffs) == cutoffs
    assert p.window > timedelta(0) and p.window % cadence == timedelta(0)
    assert all(b - a == p.window for a, b in zip(p.cutoffs, p.cutoffs[1:], strict=False))
    assert all(_epoch(c) % step == 0 for c in p.cutoffs)
    # The last test window ends one cadence after the last event's floor.
    assert p.cutoffs[-1] + p.window == floor_to(times[-1], step) + cadence == p.as_of
    # The first cut-off is at or after the floored (1 - eval_share) quantile (numpy's
    # default linear interpolation is DuckDB's quantile_cont), and windows are as long as
    # fit: what is left over is less than one cadence per cut-off.
    quantile = np.quantile([_epoch(t) for t in times], 1 - eval_share)
    eval_start = floor_to(datetime.fromtimestamp(quantile, UTC).replace(tzinfo=None), step)
    assert eval_start <= p.cutoffs[0] < eval_start + cadence * cutoffs
    # Windows, the first snapshot and the clipped training start.
    assert p.valid == p.window * valid_windows and p.train == p.window * train_windows
    assert p.first_snapshot >= floor_to(times[0], step) + cadence
    assert _epoch(p.first_snapshot) % step == 0
    for c in p.cutoffs:
        split = p.times(c)
        assert split.start <= split.valid_start < split.test_start < split.end
        assert (split.valid_start, split.test_start, split.end) == (c - p.valid, c, c + p.window)
        assert split.start == max(c - p.valid - p.train, p.first_snapshot)
    described = json.loads(json.dumps(p.describe()))
    assert described["cutoffs"] == [c.isoformat() for c in p.cutoffs]
    # Durations in days, rounded to 3 decimals (an hour is 0.042).
    assert described["test_window_days"] == round(p.window / DAY, 3)
    assert described["snapshot_every_days"] == round(cadence / DAY, 3)
    assert set(described["settings"]) == {"training", "features", "retrieval"}


def test_an_empty_warehouse_has_no_protocol(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    with warehouse(path):
        pass  # creates the tables, loads nothing
    with pytest.raises(NoDataError, match="no events"):
        derive_protocol(path)


def test_too_many_cutoffs_for_the_span(warehouses: dict[str, Path]) -> None:
    # The last 30% of the daily log is 2026-02-11 to 2026-03-01: 18 days, so 18 cut-offs fit
    # (one day each) and 19 do not.
    assert len(derive_protocol(warehouses["daily"], cutoffs=18).cutoffs) == 18
    with pytest.raises(NoDataError, match="19 cut-offs") as caught:
        derive_protocol(warehouses["daily"], cutoffs=19)
    assert "2026-02-11 00:00 to 2026-03-01 00:00" in str(caught.value)


def test_no_training_time_before_the_first_cutoff(warehouses: dict[str, Path]) -> None:
    # 95% of the daily log (from 2026-01-03) in two windows of 28 days: the first cut-off is
    # 2026-01-04, and two windows of validation reach back to 2025-11-09, before any event.
    with pytest.raises(NoDataError, match="leaves no training time"):
        derive_protocol(warehouses["daily"], cutoffs=2, eval_share=0.95, valid_windows=2)


@pytest.mark.parametrize(
    "kwargs",
    [{"cutoffs": 0}, {"cutoffs": -1}, {"eval_share": 0.0}, {"eval_share": 1.0},
     {"eval_share": -0.2}, {"eval_share": 1.5}],
)  # fmt: skip
def test_invalid_arguments(warehouses: dict[str, Path], kwargs: dict) -> None:
    with pytest.raises(ValueError, match="at least one cut-off") as caught:
        derive_protocol(warehouses["daily"], **kwargs)
    assert not isinstance(caught.value, NoDataError)  # a NoDataError is a ValueError too
