"""Drift detection: quiet on stable data, loud on injected faults, honest on small samples."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ranking.checks.thresholds import DriftThresholds
from ranking.monitoring import drift
from ranking.monitoring.drift import detect_drift, psi
from ranking.monitoring.html_report import write_html_report

CATEGORIES = [f"cat{i:02d}" for i in range(12)]
CAT_P = np.linspace(1.0, 3.0, len(CATEGORIES)) / np.linspace(1.0, 3.0, len(CATEGORIES)).sum()
NUMERIC = ["amount", "clicks", "dwell"]
CATEGORICAL = ["category"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    """One sample of a stable population: a normal, a count, a skewed rate with 20% nulls,
    a categorical column and a model score in (0, 1)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(50.0, 10.0, n),
            "clicks": rng.poisson(3.0, n),
            "dwell": np.where(rng.random(n) < 0.2, np.nan, rng.lognormal(3.0, 0.7, n)),
            "category": rng.choice(CATEGORIES, size=n, p=CAT_P),
            "score": rng.beta(2.0, 5.0, n),
        }
    )


def _check(reference: pd.DataFrame, current: pd.DataFrame) -> drift.DriftReport:
    return detect_drift(reference, current, NUMERIC, CATEGORICAL, score_column="score")


def _by_name(report: drift.DriftReport) -> dict[str, drift.FeatureDrift]:
    return {f.name: f for f in report.features}


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return _frame(3000, seed=1)


@pytest.fixture(scope="module")
def current() -> pd.DataFrame:
    return _frame(3000, seed=2)


def test_psi_matches_a_hand_computed_example() -> None:
    # Reference 1..8 in 4 quantile bins: cuts 2.75, 4.5, 6.25 -> {1,2} {3,4} {5,6} {7,8}.
    ref = [1, 2, 3, 4, 5, 6, 7, 8]
    np.testing.assert_allclose(drift.quantile_cuts(np.array(ref, float), 4), [2.75, 4.5, 6.25])
    # Current shares 4/8, 2/8, 1/8, 1/8 against 1/4 each.
    cur = [1, 2, 1, 3, 4, 5, 7, 2]
    expected = (
        (0.5 - 0.25) * math.log(0.5 / 0.25)
        + (0.25 - 0.25) * 0.0
        + 2 * (0.125 - 0.25) * math.log(0.125 / 0.25)
    )  # = 0.25 ln 2 + 0.25 ln 2 = 0.5 ln 2
    assert psi(ref, cur, bins=4) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.5 * math.log(2))
    # An empty bin is floored at EPS: shares 6/8, 0, 1/8, 1/8.
    cur_empty = [1, 1, 1, 2, 2, 2, 5, 8]
    eps = drift.EPS
    expected_empty = (
        (0.75 - 0.25) * math.log(0.75 / 0.25)
        + (eps - 0.25) * math.log(eps / 0.25)
        + 2 * (0.125 - 0.25) * math.log(0.125 / 0.25)
    )
    assert psi(ref, cur_empty, bins=4) == pytest.approx(expected_empty, rel=1e-12)
    assert psi(ref, ref, bins=4) == 0.0


def test_psi_excludes_nulls_and_handles_ties() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=1000)
    with_nulls = np.concatenate([values, [np.nan] * 300, [np.inf]])
    assert psi(values, with_nulls) == pytest.approx(0.0)  # nulls are not a bin
    assert math.isnan(psi(values, [np.nan, np.nan]))
    # 70% zeros: the tie gets its own bin, so moving it to 1 is seen.
    zeros = np.where(rng.random(2000) < 0.7, 0.0, rng.exponential(5.0, 2000))
    assert psi(zeros, zeros) == 0.0
    assert psi(zeros, np.where(zeros == 0, 1.0, zeros)) > 1.0
    # A constant reference still detects a move off the constant, either way.
    assert psi(np.zeros(500), np.zeros(500)) == 0.0
    assert psi(np.zeros(500), np.full(500, -1.0)) > 1.0
    assert psi(np.zeros(500), np.full(500, 1.0)) > 1.0


@pytest.mark.parametrize("seed", [10, 20, 30, 40, 50])
def test_stable_data_raises_no_alarm(seed: int) -> None:
    report = _check(_frame(3000, seed), _frame(3000, seed + 1))
    assert not report.breached
    assert report.drifted == [], report.to_frame()[["name", "status", "reason"]]
    assert {f.status for f in report.features} == {"ok"}


def test_mean_shift_is_caught(reference: pd.DataFrame, current: pd.DataFrame) -> None:
    small, large = current.copy(), current.copy()
    small["amount"] += 0.5  # 0.05 sd: noise-sized
    large["amount"] += 10.0  # one standard deviation
    assert _by_name(_check(reference, small))["amount"].status == "ok"
    verdict = _by_name(report := _check(reference, large))["amount"]
    assert verdict.status == "fail" and report.breached
    assert verdict.psi is not None and verdict.psi >= 0.25
    assert verdict.ks_pvalue is not None and verdict.ks_pvalue < 1e-10
    assert [f.name for f in report.drifted] == ["amount"]


def test_feature_that_goes_null_fails(reference: pd.DataFrame, current: pd.DataFrame) -> None:
    gone = current.assign(dwell=np.nan, clicks=None)
    found = _by_name(report := _check(reference, gone))
    assert report.breached
    assert found["dwell"].status == "fail" and found["clicks"].status == "fail"
    assert found["dwell"].null_rate_cur == 1.0
    assert "null share" in found["dwell"].reason
    # A partial outage: 30% more nulls than usual.
    rng = np.random.default_rng(4)
    partial = current.copy()
    partial.loc[rng.random(len(partial)) < 0.3, "amount"] = np.nan
    assert _by_name(_check(reference, partial))["amount"].status == "fail"
    # A column dropped from the current frame counts as all-null.
    dropped = _by_name(_check(reference, current.drop(columns=["category"])))["category"]
    assert dropped.status == "fail" and "missing from current" in dropped.reason


def test_unit_change_is_caught(reference: pd.DataFrame, current: pd.DataFrame) -> None:
    scaled = current.assign(dwell=current["dwell"] * 1000)
    verdict = _by_name(_check(reference, scaled))["dwell"]
    assert verdict.status == "fail"
    assert verdict.psi is not None and verdict.psi > 1.0


def test_renamed_category_is_caught(reference: pd.DataFrame, current: pd.DataFrame) -> None:
    top = current["category"].value_counts().index[0]
    renamed = current.assign(category=current["category"].replace(top, top.upper()))
    verdict = _by_name(_check(reference, renamed))["category"]
    assert verdict.status == "fail"
    assert verdict.js is not None and verdict.js >= 0.2
    assert top.upper() in verdict.reason and top in verdict.reason
    # A rare category renamed is smaller but still seen.
    rare = current["category"].value_counts().index[-1]
    verdict = _by_name(_check(reference, current.replace({"category": {rare: "new"}})))
    assert verdict["category"].status in ("warn", "fail")


def test_score_shift_is_caught(reference: pd.DataFrame, current: pd.DataFrame) -> None:
    rng = np.random.default_rng(5)
    shifted = current.assign(score=rng.beta(3.0, 4.0, len(current)))
    verdict = _by_name(_check(reference, shifted))["score"]
    assert verdict.kind == "score" and verdict.status == "fail"


def test_small_samples_say_not_enough_data(reference: pd.DataFrame) -> None:
    tiny = _frame(50, seed=6)
    tiny["amount"] *= 1000  # even a huge change is not an alarm on 50 rows
    tiny["dwell"] = np.nan
    report = _check(reference, tiny)
    assert {f.status for f in report.features} == {"not enough data"}
    assert not report.breached and report.drifted == []
    assert all("50" in f.reason for f in report.features)


def test_huge_samples_need_a_real_effect() -> None:
    # On 200k rows a 0.03 sd shift is "significant" for KS but PSI says it is tiny.
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"x": rng.normal(0.0, 1.0, 200_000)})
    cur = pd.DataFrame({"x": rng.normal(0.03, 1.0, 200_000)})
    verdict = detect_drift(ref, cur, ["x"], []).features[0]
    assert verdict.ks_pvalue is not None and verdict.ks_pvalue < 0.01
    assert verdict.status == "ok"


def test_thresholds_are_validated_and_used(reference: pd.DataFrame, current: pd.DataFrame) -> None:
    with pytest.raises(ValueError):
        DriftThresholds(psi_warn=0.3, psi_fail=0.2)
    moved = current.assign(amount=current["amount"] + 3.0)  # moderate shift
    default = _by_name(_check(reference, moved))["amount"]
    strict = detect_drift(
        reference, moved, ["amount"], [], DriftThresholds(psi_warn=0.02, psi_fail=0.05)
    )
    assert default.status != "fail" and strict.features[0].status == "fail"
    with pytest.raises(ValueError, match="neither"):
        detect_drift(reference, current, ["nope"], [])
    with pytest.raises(ValueError, match="more than once"):
        detect_drift(reference, current, ["amount"], ["amount"])


def test_report_serialises(reference: pd.DataFrame, current: pd.DataFrame) -> None:
    report = _check(reference, current.assign(dwell=np.nan))
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["breached"] is True
    assert data["counts"]["fail"] == 1 and data["counts"]["ok"] == 4
    assert [f["name"] for f in data["features"]] == NUMERIC + CATEGORICAL + ["score"]
    frame = report.to_frame()
    assert list(frame["name"]) == NUMERIC + CATEGORICAL + ["score"]
    assert {"psi", "ks_pvalue", "js", "chi2_pvalue", "status", "reason"} <= set(frame.columns)


def test_html_report_has_one_image_per_drifted_feature(
    reference: pd.DataFrame, current: pd.DataFrame, tmp_path: Path
) -> None:
    faulty = current.assign(
        amount=current["amount"] + 10.0,
        category=current["category"].replace("cat11", "CAT11"),
        dwell=np.nan,
    )
    report = _check(reference, faulty)
    assert sorted(f.name for f in report.drifted) == ["amount", "category", "dwell"]
    path = write_html_report(report, reference, faulty, tmp_path / "out" / "drift.html")
    page = path.read_text(encoding="utf-8")
    assert page.count("<img ") == 3
    assert page.count('src="data:image/png;base64,') == 3
    assert "http://" not in page and "https://" not in page  # self-contained
    for name in NUMERIC + CATEGORICAL + ["score"]:
        assert f"<td>{name}</td>" in page  # every feature in the summary table
    quiet = write_html_report(_check(reference, current), reference, current, path)
    assert "<img " not in quiet.read_text(encoding="utf-8")
