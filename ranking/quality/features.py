"""Data checks on the feature snapshots: each family's Parquet file is validated with a
pandera schema built from its :class:`~ranking.features.specs.FeatureSpec` (keys, types,
ranges, unique keys per snapshot), then null rates, constant columns and the newest
snapshot's row count against the earlier ones are measured.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from ranking.checks.report import CheckResult, QualityReport, failure, graded, pct, skipped
from ranking.checks.thresholds import QualityThresholds
from ranking.features.families import FAMILIES
from ranking.features.specs import FeatureFamily, FeatureSpec
from ranking.quality.frames import (
    failure_cases,
    is_value_check,
    schema_problems,
    schema_result,
)

#: Feature names that denote a rate or a share, hence a value in [0, 1].
_RATE_NAME = re.compile(r"_(ctr|rate|share|affinity)_")


# Features --------------------------------------------------------------------------------
def feature_range(spec: FeatureSpec, thresholds: QualityThresholds) -> tuple[float | None, ...]:
    """The (min, max) a feature's values must lie in; None means unbounded."""
    if spec.name in thresholds.feature_ranges:
        return tuple(thresholds.feature_ranges[spec.name])
    return (0.0, 1.0) if _RATE_NAME.search(spec.name) else (0.0, None)


def _range_check(lo: float | None, hi: float | None) -> list[pa.Check]:
    if lo is not None and hi is not None:
        return [pa.Check.in_range(lo, hi)]
    if lo is not None:
        return [pa.Check.ge(lo)]
    if hi is not None:
        return [pa.Check.le(hi)]
    return []


def feature_schema(family: FeatureFamily, thresholds: QualityThresholds) -> pa.DataFrameSchema:
    """The pandera schema of a family's Parquet file (read with nullable dtypes).

    Keys and ``event_timestamp`` are required and non-null, each (keys, snapshot) appears
    once; each feature has its spec's type (``Int64`` / ``Float64``) and lies in its
    range. Feature nulls are allowed here and measured by the null-rate check.
    """
    columns: dict[str, pa.Column] = {key: pa.Column(nullable=False) for key in family.entity_keys}
    columns["event_timestamp"] = pa.Column(nullable=False)
    for spec in family.features:
        lo, hi = feature_range(spec, thresholds)
        columns[spec.name] = pa.Column(spec.dtype, _range_check(lo, hi), nullable=True)
    return pa.DataFrameSchema(
        columns, unique=[*family.entity_keys, "event_timestamp"], name=family.name
    )


def check_features(
    features_dir: Path,
    thresholds: QualityThresholds | None = None,
    families: Iterable[FeatureFamily] = FAMILIES,
    signals: frozenset[str] | None = None,
) -> QualityReport:
    """Schema, null rates, ranges, constant columns and snapshot sizes of each family's file.

    With the log's ``signals`` (``DataProfile.signals``), a feature whose signal the log
    lacks (a CTR without impressions) is not judged for nulls or a constant value.
    """
    t = thresholds or QualityThresholds()
    results: list[CheckResult] = []
    for family in families:
        results += _check_family(family, Path(features_dir), t, signals)
    return QualityReport(results)


def lacking(families: Iterable[FeatureFamily], signals: frozenset[str] | None) -> dict[str, str]:
    """Feature name -> the signal it needs and the log lacks."""
    if signals is None:
        return {}
    return {
        spec.name: spec.needs
        for family in families
        for spec in family.features
        if spec.needs is not None and spec.needs not in signals
    }


def _check_family(
    family: FeatureFamily, features_dir: Path, t: QualityThresholds, signals: frozenset[str] | None
) -> list[CheckResult]:
    target = f"features:{family.name}"
    path = family.parquet_path(features_dir)
    if not path.exists():
        return [failure("file", target, f"{path} does not exist")]
    try:
        frame = pd.read_parquet(path, dtype_backend="numpy_nullable")
    except Exception as exc:  # unreadable file: report it, do not crash the whole report
        return [failure("file", target, f"{path} cannot be read: {exc}")]
    if frame.empty:
        return [failure("row_count", target, f"{path.name} holds no rows")]

    schema = feature_schema(family, t)
    cases = failure_cases(schema, frame)
    value_cases = cases[is_value_check(cases)]
    problems = schema_problems(cases[~is_value_check(cases)], schema.unique)
    results = [schema_result(target, path.name, problems, "keys, types and columns ok")]
    present = [s for s in family.features if s.name in frame.columns]
    snapshots = frame["event_timestamp"] if "event_timestamp" in frame.columns else None
    newest = frame[snapshots == snapshots.max()] if snapshots is not None else frame
    absent = lacking([family], signals)
    for spec in present:
        results.append(_feature_range_result(spec, frame, value_cases, target, t))
        if spec.name in absent:
            why = f"the log has no {absent[spec.name]}"
            results.append(skipped(f"null_rate:{spec.name}", target, t.null_limit(spec.name), why))
            continue
        results.append(_feature_nulls(spec.name, frame, newest, target, t))
        results.append(_feature_constant(spec.name, frame, target, t))
    if snapshots is not None:
        results.append(_snapshot_rows(snapshots, target, path.name, t))
    return results


def _feature_nulls(
    name: str, frame: pd.DataFrame, newest: pd.DataFrame, target: str, t: QualityThresholds
) -> CheckResult:
    whole, latest = float(frame[name].isna().mean()), float(newest[name].isna().mean())
    return graded(
        f"null_rate:{name}",
        target,
        round(max(whole, latest), 6),
        t.null_limit(name),
        f"{target.split(':', 1)[1]}.{name} is NULL in {pct(whole)} of all rows and "
        f"{pct(latest)} of the newest snapshot",
    )


def _feature_range_result(
    spec: FeatureSpec, frame: pd.DataFrame, cases: pd.DataFrame, target: str, t: QualityThresholds
) -> CheckResult:
    lo, hi = feature_range(spec, t)
    bounds = f"[{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"
    mine = cases[cases["column"] == spec.name]
    n_bad = int(mine["index"].nunique()) if len(mine) else 0
    n = int(frame[spec.name].notna().sum())
    share = n_bad / n if n else 0.0
    example = f" (e.g. {mine['failure_case'].iloc[0]})" if len(mine) else ""
    return graded(
        f"range:{spec.name}",
        target,
        round(share, 6),
        t.feature_out_of_range_share,
        f"{target.split(':', 1)[1]}.{spec.name}: {n_bad:,} of {n:,} values outside "
        f"{bounds}{example}",
    )


def _feature_constant(
    name: str, frame: pd.DataFrame, target: str, t: QualityThresholds
) -> CheckResult:
    distinct = int(frame[name].nunique(dropna=True))
    constant = distinct == 1
    value = f" ({frame[name].dropna().iloc[0]})" if constant else ""
    return CheckResult(
        f"constant:{name}",
        target,
        t.feature_constant_level if constant else "ok",
        float(distinct),
        f"{t.feature_constant_level} when exactly 1 distinct value",
        f"{target.split(':', 1)[1]}.{name} has {distinct:,} distinct non-null values{value}",
    )


def _snapshot_rows(
    snapshots: pd.Series, target: str, file_name: str, t: QualityThresholds
) -> CheckResult:
    sizes = snapshots.value_counts().sort_index()
    if len(sizes) < 2:
        return skipped("snapshot_rows_ratio", target, t.snapshot_rows_ratio, "one snapshot")
    newest, earlier = int(sizes.iloc[-1]), float(sizes.iloc[:-1].median())
    ratio = newest / earlier
    return graded(
        "snapshot_rows_ratio",
        target,
        round(ratio, 4),
        t.snapshot_rows_ratio,
        f"{file_name}: newest snapshot ({sizes.index[-1]}) has {newest:,} rows vs a median "
        f"of {earlier:,.0f} over the {len(sizes) - 1} earlier ones ({ratio:.2f}x)",
    )
