"""The monitor's own decisions: the status of a drift report, capping features that trend
by construction, the current window, and the files a monitoring run writes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ranking.monitoring.drift import DriftReport, FeatureDrift
from ranking.monitoring.monitor import (
    MonitorOutput,
    alarms,
    cap_trending,
    compare_and_report,
    monitor_window,
    status_of,
)
from ranking.settings import Settings

TRENDING = ["*_all", "item_age_days"]


def _verdict(name: str, status: str, reason: str = "PSI 0.400 >= 0.25") -> FeatureDrift:
    return FeatureDrift(
        name=name, kind="numeric", n_ref=500, n_cur=500, status=status, reason=reason
    )  # type: ignore[arg-type]


def _report(*statuses: str) -> DriftReport:
    return DriftReport([_verdict(f"f{i}", s) for i, s in enumerate(statuses)])


# status_of ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (("ok", "warn", "fail"), "breach"),
        (("fail",), "breach"),
        (("not enough data", "fail"), "breach"),
        (("ok", "warn", "ok"), "warn"),
        (("not enough data", "warn"), "warn"),
        (("ok", "ok"), "ok"),
        (("ok", "not enough data"), "ok"),  # some columns judged, none drifted
        (("not enough data",), "not enough data"),
        (("not enough data", "not enough data", "not enough data"), "not enough data"),
    ],
)
def test_status_of_is_the_worst_alarm_or_not_enough_data_for_all(
    statuses: tuple[str, ...], expected: str
) -> None:
    assert status_of(_report(*statuses)) == expected


# cap_trending ---------------------------------------------------------------------------


def test_cap_trending_downgrades_failing_trending_features_to_warn_and_says_why() -> None:
    report = DriftReport(
        [
            _verdict("user_events_all", "fail"),
            _verdict("item_age_days", "fail"),
            _verdict("user_events_7d", "fail"),
        ]
    )
    capped = cap_trending(report, TRENDING)
    by_name = {f.name: f for f in capped.features}
    assert by_name["user_events_all"].status == "warn"
    assert by_name["item_age_days"].status == "warn"
    for name in ("user_events_all", "item_age_days"):
        assert by_name[name].reason == (
            "PSI 0.400 >= 0.25; capped at warn: grows with time by construction"
        )
    assert by_name["user_events_7d"].status == "fail"  # not trending: the alarm stands
    assert by_name["user_events_7d"].reason == "PSI 0.400 >= 0.25"
    assert capped.breached
    assert status_of(capped) == "breach"


@pytest.mark.parametrize(
    "name",
    ["item_age_days_log", "user_all_events", "all", "ITEM_AGE_DAYS", "user_events_all2"],
)
def test_cap_trending_matches_whole_names_only(name: str) -> None:
    """fnmatch patterns match the whole name: a near miss keeps its failure."""
    report = cap_trending(DriftReport([_verdict(name, "fail")]), TRENDING)
    assert report.features[0].status == "fail"
    assert "capped" not in report.features[0].reason


@pytest.mark.parametrize("status", ["ok", "warn", "not enough data"])
def test_cap_trending_leaves_other_statuses_alone(status: str) -> None:
    report = cap_trending(DriftReport([_verdict("user_events_all", status, "why")]), TRENDING)
    assert report.features[0].status == status
    assert report.features[0].reason == "why"


def test_a_report_failing_only_on_trending_features_is_no_breach() -> None:
    report = DriftReport([_verdict("user_events_all", "fail"), _verdict("price", "ok")])
    assert status_of(report) == "breach"
    assert status_of(cap_trending(report, TRENDING)) == "warn"


def test_cap_trending_without_patterns_changes_nothing() -> None:
    report = cap_trending(DriftReport([_verdict("user_events_all", "fail")]), [])
    assert report.breached


# monitor_window ---------------------------------------------------------------------------


@pytest.mark.parametrize("days", [1, 7, 30])
def test_monitor_window_is_the_days_before_as_of(days: int) -> None:
    as_of = datetime(2026, 3, 1, 6, 30)
    start, end = monitor_window(as_of, days)
    assert end == as_of
    assert start == as_of - timedelta(days=days)
    assert start < end


def test_monitor_window_crosses_month_and_leap_day() -> None:
    assert monitor_window(datetime(2028, 3, 2), 2) == (datetime(2028, 2, 29), datetime(2028, 3, 2))


# compare_and_report -------------------------------------------------------------------

CATEGORIES = ["books", "music", "films", "games"]


def _sample(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "category": rng.choice(CATEGORIES, size=n, p=[0.4, 0.3, 0.2, 0.1]),
            "stable": rng.normal(10.0, 2.0, n),
            "shifted": rng.normal(10.0, 2.0, n),
            "user_events_all": rng.poisson(20.0, n).astype(float),
            "score": rng.beta(2.0, 5.0, n),
        }
    )


@pytest.fixture
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current: ``stable``, ``category`` and ``score`` identical, ``shifted``
    and the trending ``user_events_all`` moved by a large constant."""
    reference = _sample(1000, seed=3)
    current = reference.copy()
    current["shifted"] = current["shifted"] + 50.0
    current["user_events_all"] = current["user_events_all"] + 100.0
    return reference, current


FEATURES = ["stable", "shifted", "user_events_all"]


def _run(settings: Settings, frames, tmp_path: Path, features=FEATURES) -> MonitorOutput:
    reference, current = frames
    return compare_and_report(
        settings, reference, current, features, tmp_path / "run", title="Drift of ranker v3 <test>"
    )


def test_compare_and_report_flags_the_shifted_feature_and_keeps_the_identical_ok(
    settings: Settings, frames, tmp_path: Path
) -> None:
    output = _run(settings, frames, tmp_path)
    by_name = {f.name: f for f in output.report.features}
    assert list(by_name) == ["stable", "shifted", "user_events_all", "category", "score"]
    assert by_name["shifted"].status == "fail"
    assert by_name["shifted"].kind == "numeric"
    assert by_name["shifted"].psi > settings.monitoring.drift.psi_fail
    for name in ("stable", "category", "score"):
        assert by_name[name].status == "ok", by_name[name].reason
    assert by_name["stable"].psi == 0.0
    assert by_name["category"].kind == "categorical"
    assert by_name["score"].kind == "score"
    # Trending by construction: reported, capped at warn.
    assert by_name["user_events_all"].status == "warn"
    assert "capped at warn" in by_name["user_events_all"].reason
    assert output.report.breached
    assert status_of(output.report) == "breach"


def test_compare_and_report_writes_strict_json(settings: Settings, frames, tmp_path) -> None:
    """drift.json is valid JSON without NaN or Infinity, and says what the report says."""
    output = _run(settings, frames, tmp_path)
    assert output.json_path == tmp_path / "run" / "drift.json"

    def no_constants(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    data = json.loads(output.json_path.read_text(), parse_constant=no_constants)
    assert data["breached"] is True
    assert data["counts"] == {"ok": 3, "not enough data": 0, "warn": 1, "fail": 1}
    statuses = {f["name"]: f["status"] for f in data["features"]}
    assert statuses == {
        "stable": "ok",
        "shifted": "fail",
        "user_events_all": "warn",
        "category": "ok",
        "score": "ok",
    }
    assert data["thresholds"]["psi_fail"] == settings.monitoring.drift.psi_fail


def test_compare_and_report_writes_a_self_contained_html_page(
    settings: Settings, frames, tmp_path: Path
) -> None:
    output = _run(settings, frames, tmp_path)
    assert output.html_path == tmp_path / "run" / "drift.html"
    page = output.html_path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Drift of ranker v3 &lt;test&gt;</title>" in page  # the title, escaped
    assert "BREACHED" in page
    # One embedded chart per drifted column (shifted and the capped trending one) ...
    assert page.count('src="data:image/png;base64,') == 2
    # ... and nothing to fetch from elsewhere.
    for external in ("http://", "https://", "<script", "<link"):
        assert external not in page


def test_compare_and_report_checks_only_features_the_reference_has(
    settings: Settings, frames, tmp_path: Path
) -> None:
    """A feature the reference lacks (added since training) is not compared; one the
    current sample lacks (dropped) is all-null there, which fails."""
    reference, current = frames
    current = current.drop(columns="stable").assign(brand_new=1.0)
    output = compare_and_report(
        settings, reference, current, [*FEATURES, "brand_new"], tmp_path / "run", title="t"
    )
    by_name = {f.name: f for f in output.report.features}
    assert "brand_new" not in by_name
    assert by_name["stable"].status == "fail"
    assert by_name["stable"].null_rate_cur == 1.0
    assert "column missing from current" in by_name["stable"].reason
    json.loads(output.json_path.read_text(), parse_constant=lambda t: pytest.fail(t))


def test_compare_and_report_on_small_samples_is_not_enough_data(
    settings: Settings, tmp_path: Path
) -> None:
    """Too few rows to judge: no alarm, even for a large shift, and JSON without NaN."""
    reference = _sample(50, seed=1)
    current = reference.assign(shifted=reference["shifted"] + 50.0)
    output = compare_and_report(
        settings, reference, current, FEATURES, tmp_path / "small", title="small"
    )
    assert status_of(output.report) == "not enough data"
    assert not output.report.breached
    json.loads(output.json_path.read_text(), parse_constant=lambda t: pytest.fail(t))
    assert (tmp_path / "small" / "drift.html").exists()


def test_compare_and_report_overwrites_a_previous_run(
    settings: Settings, frames, tmp_path: Path
) -> None:
    """Same folder, new data: the files describe the latest comparison only."""
    _run(settings, frames, tmp_path)
    reference, _ = frames
    output = _run(settings, (reference, reference.copy()), tmp_path)
    data = json.loads(output.json_path.read_text())
    assert data["breached"] is False
    assert data["counts"]["ok"] == 5
    assert "BREACHED" not in output.html_path.read_text()


def test_the_report_puts_the_worst_first_explains_its_rule_and_never_overwrites(
    settings: Settings, frames, tmp_path: Path
) -> None:
    first, second = _run(settings, frames, tmp_path), _run(settings, frames, tmp_path)
    assert first.html_path.parent != second.html_path.parent  # the same time, twice
    assert second.html_path.parent.name == "run-2" and first.html_path.exists()
    page = first.html_path.read_text(encoding="utf-8")
    order = [page.index(f"<td>{name}</td>") for name in ("shifted", "user_events_all", "stable")]
    assert order == sorted(order)  # fail, then warn, then ok
    assert f"fails at PSI &gt;= {settings.monitoring.drift.psi_fail:g}" in page
    assert alarms(first.report)[0].startswith("shifted: fail (")
    assert [a.split(":")[0] for a in alarms(first.report)] == ["shifted", "user_events_all"]
