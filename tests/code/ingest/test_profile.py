"""The profile of a loaded log, and the settings it derives (ranking.ingest.profile)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from ranking.features.build import build_all_families
from ranking.ingest.contract import ingest
from ranking.ingest.profile import (
    MAX_SNAPSHOTS,
    default_as_of,
    fit_settings,
    profile_of,
    what_the_data_decided,
)
from ranking.quality import check_inputs
from ranking.settings import Settings, get_settings
from ranking.times import floor_to
from tests.conftest import NOW

HEADER = "user_id,item_id,event_type,event_timestamp,value,session_id,position\n"


def _load(settings: Settings, rows: list[str], now: datetime = NOW) -> None:
    csv = settings.raw_dir / "events.csv"
    csv.write_text(HEADER + "".join(r + "\n" for r in rows))
    types = list(settings.events.label_weights)
    assert ingest(settings.warehouse_path, csv, types, now)[0].quarantined == 0


def _ratings(start: datetime, days: int, every: int = 3) -> list[str]:
    """Two users rating an item every ``every`` days: no session, no position."""
    return [f"u{u},i{k % 7},rating,{start + timedelta(days=k):%Y-%m-%dT%H:%M:%S},4,,"
            for k in range(0, days, every) for u in (1, 2)]  # fmt: skip


def test_a_ratings_dump_is_historic_and_claims_no_sessions(settings: Settings) -> None:
    _load(settings, _ratings(datetime(2015, 1, 1), 1500))
    profile = profile_of(settings.warehouse_path)
    assert profile.historic  # its last event is years before NOW, when it was loaded
    assert profile.event_types == {"rating": profile.events}
    assert {"ratings", "rating_values"} <= profile.signals
    assert not {"sessions", "positions", "clicks", "impressions"} & profile.signals
    assert profile.claims("value") and not profile.claims("session_id")


def test_a_live_feed_is_judged_at_the_clock_a_historic_log_at_its_end(
    settings: Settings,
) -> None:
    live = [f"u1,i1,click,{NOW - timedelta(hours=h):%Y-%m-%dT%H:%M:%S},,s{h},1"
            for h in range(1, 60)]  # fmt: skip
    _load(settings, live)
    fitted = fit_settings(settings, profile_of(settings.warehouse_path))
    assert not profile_of(settings.warehouse_path).historic
    assert default_as_of(fitted, NOW) == floor_to(NOW, 3600)  # 2.5 days: hourly

    old = get_settings(home=settings.home.parent / "old")
    old.raw_dir.mkdir(parents=True)
    _load(old, _ratings(datetime(2015, 1, 1), 1500))
    fitted_old = fit_settings(old, profile_of(old.warehouse_path))
    last = profile_of(old.warehouse_path).last_event
    as_of = default_as_of(fitted_old, NOW)
    assert last < as_of <= last + fitted_old.features.snapshot_every


def test_unset_settings_follow_the_span_and_set_ones_win(settings: Settings) -> None:
    settings = get_settings(home=settings.home)  # nothing set (the fixture sets windows)
    _load(settings, _ratings(datetime(2000, 1, 1), 365 * 18))  # 18 years
    profile = profile_of(settings.warehouse_path)
    fitted = fit_settings(settings, profile)
    assert fitted.features.snapshot_every == timedelta(days=7)
    history = timedelta(days=fitted.features.history_days)
    assert history == timedelta(days=7) * (MAX_SNAPSHOTS - 1)  # capped, not 18 years
    assert fitted.training.test_window == fitted.training.valid_window
    assert fitted.training.test_window == timedelta(days=7) * int(history.days / 6 // 7)
    assert fitted.retrieval.window_days == pytest.approx(history.days / 20)  # the used span

    mine = get_settings(home=settings.home, features={"snapshot_every": "P1D"},
                        training={"test_window": "PT12H"})  # fmt: skip
    pinned = fit_settings(mine, profile)
    assert pinned.features.snapshot_every == timedelta(days=1)
    assert pinned.training.test_window == timedelta(hours=12)
    assert pinned.training.valid_window != timedelta(hours=12)  # still derived


def test_the_derived_grid_never_exceeds_its_bound(settings: Settings) -> None:
    _load(settings, _ratings(datetime(2000, 1, 1), 365 * 18, every=5))
    fitted = fit_settings(settings, profile_of(settings.warehouse_path))
    build = build_all_families(fitted, default_as_of(fitted, NOW))
    assert len(build.snapshots) == MAX_SNAPSHOTS


def test_checks_judge_what_a_ratings_log_holds(settings: Settings) -> None:
    _load(settings, _ratings(datetime(2015, 1, 1), 1500, every=1))
    fitted = fit_settings(settings, profile_of(settings.warehouse_path))
    as_of = default_as_of(fitted, NOW)
    build_all_families(fitted, as_of)
    report = check_inputs(fitted, as_of).to_frame()
    failed = report[report["level"] == "fail"]
    assert failed.empty, failed.to_dict("records")
    by_check = report.set_index(["target", "check"])["message"]
    assert by_check[("events", "null_rate:session_id")].startswith("skipped: the log has no")
    ctr = by_check[("features:user_long_term", "null_rate:user_ctr_all")]
    assert ctr == "skipped: the log has no impressions"
    rating = by_check[("features:user_long_term", "null_rate:user_avg_rating_all")]
    assert not rating.startswith("skipped")  # the log has ratings: judged


def test_rates_stay_shares_on_a_funnel_without_clicks(settings: Settings, tmp_path: Path) -> None:
    t = "2026-02-{:02d}T10:00:00"
    rows = [f"u1,i1,view,{t.format(d)},30,s{d},1" for d in range(1, 20)]
    rows += [f"u1,i1,purchase,{t.format(d)},9.5,s{d},1" for d in range(1, 20, 2)]
    rows += [f"u2,i1,click,{t.format(d)},,s{d},1" for d in range(1, 5)]  # clicks, no shows
    _load(settings, rows)
    fitted = fit_settings(settings, profile_of(settings.warehouse_path))
    build_all_families(fitted, datetime(2026, 2, 25))
    features = fitted.features_dir
    users = dict(
        duckdb.sql(
            f"SELECT user_id, user_purchase_rate_all FROM '{features / 'user_long_term.parquet'}' "
            "WHERE event_timestamp = (SELECT max(event_timestamp) FROM "
            f"'{features / 'user_long_term.parquet'}') AND user_id = 'u1'"
        ).fetchall()
    )
    assert users["u1"] == pytest.approx(10 / 29)  # 10 purchases of 29 events, no click
    ctr = duckdb.sql(f"SELECT max(user_ctr_all) FROM '{features / 'user_long_term.parquet'}'")
    assert ctr.fetchall()[0][0] == 1.0  # clicks without impressions: a share, not above 1
    conversion = duckdb.sql(
        f"SELECT max(item_conversion_rate_all) FROM '{features / 'item_stats.parquet'}'"
    ).fetchall()[0][0]
    assert 0 < conversion <= 1


def test_the_cli_line_says_what_the_data_decided(settings: Settings) -> None:
    settings = get_settings(home=settings.home)
    _load(settings, _ratings(datetime(2015, 1, 1), 1500))
    profile = profile_of(settings.warehouse_path)
    line = what_the_data_decided(fit_settings(settings, profile), profile, NOW)
    assert line.startswith("snapshots every P7D over the last 1393 days; test and validation")
    assert "runs judged at the log's end (2019-02-" in line
    assert "(historic log); rating 1,000; optional columns: value" in profile.describe()
