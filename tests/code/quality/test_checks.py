"""Data-quality checks: clean generated data passes, each injected fault is caught at its level."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ranking.checks.limits import Band, MaxLimit, MinLimit
from ranking.checks.report import CheckResult, QualityError, QualityReport
from ranking.checks.thresholds import QualityThresholds
from ranking.features.families import FAMILIES
from ranking.features.snapshots import compute_features
from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.quality import check_events, check_features, check_training_set
from ranking.schema import DEFAULT_LABEL_WEIGHTS
from ranking.warehouse import warehouse
from tests.conftest import END, NOW

TYPES = sorted(DEFAULT_LABEL_WEIGHTS)
NEWEST_DAY = END - timedelta(days=1)  # the generated data's last day: 2026-02-28


@dataclass(frozen=True)
class Clean:
    warehouse: Path
    features: Path
    training: pd.DataFrame


def _training_frame(warehouse_path: Path, seed: int = 0) -> pd.DataFrame:
    """A training frame shaped like ``dataset.build_entity_frame``'s, without Feast.

    Session query groups with at least one positive, graded labels, five random negatives
    per group, a time split of the last 5 / 5 days.
    """
    with warehouse(warehouse_path, read_only=True) as con:
        groups = con.execute(
            """
            WITH l AS (
                SELECT user_id, session_id, item_id, event_timestamp,
                       CASE event_type WHEN 'purchase' THEN 3 WHEN 'add_to_cart' THEN 2
                            WHEN 'click' THEN 1 WHEN 'play' THEN 1 ELSE 0 END::DOUBLE AS label
                FROM events
            ), g AS (
                SELECT user_id, session_id, min(event_timestamp) AS ts FROM l
                GROUP BY ALL HAVING max(label) > 0
            )
            SELECT g.ts, g.user_id, g.session_id, l.item_id, max(l.label) AS label
            FROM l JOIN g USING (user_id, session_id) GROUP BY ALL
            """
        ).df()
        items = [r[0] for r in con.execute("SELECT item_id FROM items ORDER BY 1").fetchall()]
    groups["group_id"] = groups.groupby(["ts", "user_id", "session_id"], sort=True).ngroup()
    keys = groups.drop_duplicates("group_id")[["group_id", "user_id", "ts"]]
    rng = np.random.default_rng(seed)
    negatives = keys.loc[keys.index.repeat(5)].assign(
        item_id=rng.choice(items, size=5 * len(keys)), label=0.0
    )
    frame = pd.concat(
        [groups.drop(columns="session_id").assign(sampled=False), negatives.assign(sampled=True)],
        ignore_index=True,
    )
    frame = frame.drop_duplicates(["group_id", "item_id"]).sort_values(
        ["group_id", "item_id"], ignore_index=True
    )
    ts = frame.pop("ts")
    frame["split"] = np.select(
        [ts < END - timedelta(days=10), ts < END - timedelta(days=5)], ["train", "valid"], "test"
    )
    frame["event_timestamp"] = ts
    return frame


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, small_data: synth.SynthData) -> Clean:
    """Generated data (with its dirty late batch) ingested, and its features built."""
    root = tmp_path_factory.mktemp("quality")
    paths = synth.write(small_data, root / "raw")
    wh = root / "warehouse.duckdb"
    ingest(wh, paths["events"], TYPES, NOW, items_path=paths["items"])
    with warehouse(wh) as con:
        compute_features(con, root / "features", as_of=END)
    return Clean(wh, root / "features", _training_frame(wh))


@pytest.fixture
def wh(clean: Clean, tmp_path: Path) -> Path:
    """A private copy of the clean warehouse, free to damage."""
    return Path(shutil.copy(clean.warehouse, tmp_path / "warehouse.duckdb"))


@pytest.fixture
def feats(clean: Clean, tmp_path: Path) -> Path:
    """A private copy of the clean feature files, free to damage."""
    return Path(shutil.copytree(clean.features, tmp_path / "features"))


def _sql(path: Path, sql: str) -> None:
    with warehouse(path) as con:
        con.execute(sql)


def _edit(features_dir: Path, family: str, change) -> None:
    """Rewrite one family's Parquet file through ``change(frame) -> frame``."""
    path = features_dir / f"{family}.parquet"
    frame = pd.read_parquet(path, dtype_backend="numpy_nullable")
    change(frame).to_parquet(path, index=False)


def _level(report: QualityReport, check: str, target: str | None = None) -> str:
    return report.get(check, target).level


# Clean data ------------------------------------------------------------------------------
def test_clean_generated_data_has_no_failure(clean: Clean) -> None:
    events = check_events(clean.warehouse, NOW)
    features = check_features(clean.features)
    training = check_training_set(clean.training)
    for report in (events, features, training):
        assert report.failed == [], report.summary()
    assert events.warnings == [], events.summary()
    # The one hover row of the late batch is seen, and tolerated.
    unknown = events.get("unknown_event_type_share")
    assert 0 < unknown.observed < 0.001 and "hover" in unknown.message
    assert events.get("volume_ratio").observed == pytest.approx(1.0, abs=0.4)
    # Every family was checked; the only warning is the rating feature (no ratings generated).
    assert {r.target for r in features.results} == {f"features:{f.name}" for f in FAMILIES}
    assert [r.name for r in features.warnings] == [
        "features:user_long_term/null_rate:user_avg_rating_all"
    ]
    assert training.warnings == []
    assert {r.target for r in training.results} >= {
        "training_set",
        "training_set:train",
        "training_set:valid",
        "training_set:test",
    }
    (events + features + training).raise_if_failed()


# Events ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("kept_tenths", "level"), [(10, "ok"), (3, "warn"), (1, "fail")])
def test_volume_drop_on_the_newest_day(wh: Path, kept_tenths: int, level: str) -> None:
    _sql(
        wh,
        f"DELETE FROM events WHERE event_timestamp >= '{NEWEST_DAY}' "
        f"AND hash(event_id) % 10 >= {kept_tenths}",
    )
    report = check_events(wh, NOW)
    volume = report.get("volume_ratio")
    assert volume.level == level, volume.describe()
    assert "2026-02-28" in volume.message
    assert _level(report, "freshness_hours") == "ok"


def test_a_partial_newest_day_is_not_a_volume_drop(wh: Path) -> None:
    cut = NEWEST_DAY + timedelta(hours=12)
    _sql(wh, f"DELETE FROM events WHERE event_timestamp >= '{cut}'")
    report = check_events(wh, cut + timedelta(minutes=30))
    volume = report.get("volume_ratio")
    assert volume.level == "ok" and "2026-02-27" in volume.message  # the last complete day
    # The same data seen a day later: the half day is now complete, and low.
    later = check_events(wh, END + timedelta(hours=1))
    assert later.get("volume_ratio").level == "warn"


@pytest.mark.parametrize(("days_later", "level"), [(0, "ok"), (2, "warn"), (10, "fail")])
def test_stale_events(clean: Clean, days_later: int, level: str) -> None:
    report = check_events(clean.warehouse, NOW + timedelta(days=days_later))
    freshness = report.get("freshness_hours")
    assert freshness.level == level, freshness.describe()
    assert freshness.observed == pytest.approx(12.2 + 24 * days_later, abs=0.1)
    assert _level(report, "volume_ratio") == "ok"  # staleness is freshness's business


@pytest.mark.parametrize(("hover_rows", "level"), [(0, "ok"), (40, "warn"), (400, "fail")])
def test_unknown_event_types_in_quarantine(
    wh: Path, tmp_path: Path, hover_rows: int, level: str
) -> None:
    batch = pd.DataFrame(
        {
            "event_id": [f"h{i}" for i in range(hover_rows)],
            "user_id": "u000001",
            "item_id": "i000001",
            "event_type": "hover",
            "event_timestamp": "2026-02-28T10:00:00Z",
        }
    )
    batch.to_csv(tmp_path / "hover.csv", index=False)
    if hover_rows:
        ingest(wh, tmp_path / "hover.csv", TYPES, NOW)
    report = check_events(wh, NOW)
    unknown = report.get("unknown_event_type_share")
    assert unknown.level == level, unknown.describe()
    assert f"hover ({hover_rows + 1:,})" in unknown.message


@pytest.mark.parametrize(("since", "level"), [(NEWEST_DAY, "warn"), (END - timedelta(8), "fail")])
def test_optional_event_column_going_null(wh: Path, since: datetime, level: str) -> None:
    _sql(wh, f"UPDATE events SET session_id = NULL WHERE event_timestamp >= '{since}'")
    report = check_events(wh, NOW)
    assert _level(report, "null_rate:session_id") == level
    assert "events.session_id" in report.get("null_rate:session_id").message
    assert _level(report, "null_rate:position") == "ok"


def test_duplicated_events_under_new_ids(wh: Path) -> None:
    _sql(
        wh,
        "INSERT INTO events SELECT 'copy-' || event_id, * EXCLUDE (event_id) FROM events "
        f"WHERE event_timestamp >= '{END - timedelta(days=3)}' AND hash(event_id) % 20 = 0",
    )
    report = check_events(wh, NOW)
    dup = report.get("duplicate_rate")
    assert dup.level == "fail" and 0.01 < dup.observed < 0.03, dup.describe()


def test_missing_or_empty_warehouse_fails(tmp_path: Path) -> None:
    assert _level(check_events(tmp_path / "none.duckdb", NOW), "warehouse") == "fail"
    with warehouse(tmp_path / "empty.duckdb"):
        pass
    report = check_events(tmp_path / "empty.duckdb", NOW)
    assert [r.check for r in report.failed] == ["row_count"]


def test_aware_now_is_read_as_utc(clean: Clean) -> None:
    aware = NOW.replace(tzinfo=UTC) + timedelta(days=2)
    naive = check_events(clean.warehouse, NOW + timedelta(days=2))
    assert check_events(clean.warehouse, aware).to_dict() == naive.to_dict()


# Features --------------------------------------------------------------------------------
def test_feature_column_going_all_null_fails(feats: Path) -> None:
    _edit(feats, "item_stats", lambda f: f.assign(item_ctr_7d=pd.NA).astype(f.dtypes))
    report = check_features(feats)
    assert [r.name for r in report.failed] == ["features:item_stats/null_rate:item_ctr_7d"]
    assert "item_stats.item_ctr_7d" in report.failed[0].message


def test_feature_going_null_in_the_newest_snapshot_only_fails(feats: Path) -> None:
    def blank_newest(f: pd.DataFrame) -> pd.DataFrame:
        f.loc[f["event_timestamp"] == f["event_timestamp"].max(), "user_clicks_7d"] = pd.NA
        return f

    _edit(feats, "user_short_term", blank_newest)
    result = check_features(feats).get("null_rate:user_clicks_7d")
    assert result.level == "fail" and result.observed == 1.0
    assert "100% of the newest snapshot" in result.message


def test_values_out_of_range_fail(feats: Path) -> None:
    def corrupt(f: pd.DataFrame) -> pd.DataFrame:
        f.loc[3, "user_ctr_all"] = 1.5  # a rate above 1
        f.loc[5, "user_clicks_all"] = -2  # a negative count
        return f

    _edit(feats, "user_long_term", corrupt)
    report = check_features(feats)
    assert {r.check for r in report.failed} == {"range:user_ctr_all", "range:user_clicks_all"}
    ctr = report.get("range:user_ctr_all")
    assert "outside [0, 1]" in ctr.message and "1.5" in ctr.message
    assert ctr.observed == pytest.approx(1 / 2106, rel=0.05)


def test_constant_feature_warns(feats: Path) -> None:
    _edit(feats, "user_category", lambda f: f.assign(user_category_ctr_all=0.25).astype(f.dtypes))
    report = check_features(feats)
    assert report.failed == []
    assert _level(report, "constant:user_category_ctr_all") == "warn"
    custom = QualityThresholds(feature_constant_level="fail")
    assert _level(check_features(feats, custom), "constant:user_category_ctr_all") == "fail"


@pytest.mark.parametrize(("kept_rows", "level"), [(120, "ok"), (70, "warn"), (30, "fail")])
def test_newest_snapshot_row_drop(feats: Path, kept_rows: int, level: str) -> None:
    def shrink(f: pd.DataFrame) -> pd.DataFrame:
        newest = f.index[f["event_timestamp"] == f["event_timestamp"].max()]
        return f.drop(index=newest[kept_rows:])

    _edit(feats, "user_long_term", shrink)
    result = check_features(feats).get("snapshot_rows_ratio", "features:user_long_term")
    assert result.level == level, result.describe()


def test_feature_schema_problems_fail(feats: Path) -> None:
    _edit(feats, "item_stats", lambda f: f.drop(columns="item_price"))
    _edit(feats, "user_category", lambda f: pd.concat([f, f.head(3)], ignore_index=True))
    _edit(
        feats,
        "user_short_term",
        lambda f: f.assign(user_events_1d=f["user_events_1d"].astype("string")),
    )
    (feats / "user_long_term.parquet").unlink()
    report = check_features(feats)
    failed = {r.name: r.message for r in report.failed}
    assert "missing column item_price" in failed["features:item_stats/schema"]
    keys = "6 rows share their (user_id, category, event_timestamp)"
    assert keys in failed["features:user_category/schema"]
    assert "user_events_1d has type string" in failed["features:user_short_term/schema"]
    assert "does not exist" in failed["features:user_long_term/file"]


# Training sets ---------------------------------------------------------------------------
def test_all_zero_labels_fail(clean: Clean) -> None:
    report = check_training_set(clean.training.assign(label=0.0))
    failed = {r.name for r in report.failed}
    assert {
        "training_set/positive_share",
        "training_set:test/positive_share",
        "training_set/groups_without_positive_share",
    } <= failed
    assert report.get("groups_without_positive_share").observed == 1.0


@pytest.mark.parametrize(("share", "level"), [(0.02, "warn"), (0.2, "fail")])
def test_groups_without_positive(clean: Clean, share: float, level: str) -> None:
    frame = clean.training.copy()
    groups = frame["group_id"].unique()
    emptied = groups[: int(len(groups) * share)]
    frame.loc[frame["group_id"].isin(emptied), "label"] = 0.0
    result = check_training_set(frame).get("groups_without_positive_share")
    assert result.level == level and result.observed == pytest.approx(share, abs=0.002)


def test_tiny_and_unsorted_groups(clean: Clean) -> None:
    tiny = clean.training.groupby("group_id").head(1)
    report = check_training_set(tiny)
    assert _level(report, "group_size_min") == "fail"
    assert _level(report, "group_size_median") == "fail"
    shuffled = clean.training.sample(frac=1.0, random_state=0)
    assert _level(check_training_set(shuffled), "groups_sorted") == "fail"


def test_training_schema_problems(clean: Clean) -> None:
    frame = clean.training.copy()
    frame.loc[0, "label"] = -1.0
    frame.loc[1, "split"] = "holdout"
    schema = check_training_set(frame).get("schema")
    assert schema.level == "fail"
    assert "label fails greater_than_or_equal_to(0)" in schema.message
    assert "split fails isin" in schema.message
    no_label = check_training_set(clean.training.drop(columns="label"))
    assert [r.check for r in no_label.results] == ["schema"]
    assert "missing column label" in no_label.results[0].message
    assert _level(check_training_set(clean.training.head(0)), "row_count") == "fail"


def test_training_feature_null_rates(clean: Clean) -> None:
    frame = clean.training.assign(item_ctr_7d=np.nan, user_ctr_all=0.1)
    report = check_training_set(frame, features=["item_ctr_7d", "user_ctr_all"])
    assert [r.check for r in report.failed] == ["null_rate:item_ctr_7d"]
    missing = check_training_set(clean.training, features=["user_ctr_all"])
    assert "missing column user_ctr_all" in missing.get("schema").message


# Report and thresholds -------------------------------------------------------------------
def test_report_lists_every_failing_check(clean: Clean) -> None:
    stale = check_events(clean.warehouse, NOW + timedelta(days=10))
    zero = check_training_set(clean.training.assign(label=0.0))
    report = stale + zero
    with pytest.raises(QualityError) as caught:
        report.raise_if_failed()
    text = str(caught.value)
    assert text.startswith(f"{len(report.failed)} data-quality check(s) failed:")
    for result in report.failed:
        assert result.name in text
    assert "events/freshness_hours" in text and "warn > 24, fail > 72" in text
    assert caught.value.report is report

    summary = report.summary()
    assert "\n" not in summary and summary.startswith("data quality FAIL:")
    frame = report.to_frame()
    assert list(frame.columns) == ["target", "check", "level", "observed", "threshold", "message"]
    assert len(frame) == len(report) and (frame["level"] == "fail").sum() == len(report.failed)
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["level"] == "fail" and as_dict["failed"] == len(report.failed)


def test_levels_and_threshold_validation() -> None:
    assert MaxLimit(warn=1, fail=2).grade(1.5) == "warn"
    assert MinLimit(warn=0.5, fail=0.2).grade(0.1) == "fail"
    assert Band(fail_low=0, warn_low=0.1, warn_high=0.5, fail_high=0.9).grade(0.95) == "fail"
    with pytest.raises(ValidationError):
        MaxLimit(warn=0.5, fail=0.2)
    with pytest.raises(ValidationError):
        MinLimit(warn=0.2, fail=0.5)
    with pytest.raises(ValidationError):
        Band(fail_low=0.2, warn_low=0.1, warn_high=0.5, fail_high=0.9)
    with pytest.raises(ValidationError):
        QualityThresholds(events_null_rate={"user_id": MaxLimit(warn=0, fail=0)})
    with pytest.raises(ValidationError):
        QualityThresholds(freshnes_hours=MaxLimit(warn=1, fail=2))  # a typo is an error
    assert QualityReport().level == "ok" and QualityReport().summary().startswith("data quality OK")
    ok = CheckResult("c", "t", "ok", 1.0, "x", "m")
    QualityReport([ok]).raise_if_failed()


def test_custom_thresholds_change_the_level(clean: Clean) -> None:
    strict = QualityThresholds(freshness_hours=MaxLimit(warn=1, fail=6))
    assert _level(check_events(clean.warehouse, NOW, strict), "freshness_hours") == "fail"
