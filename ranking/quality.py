"""Data-quality checks on the warehouse, the feature snapshots and training sets.

Every check measures one number (a null rate, a share, a ratio, a lag in hours) and grades
it against a warn and a fail level from :class:`QualityThresholds`, giving a
:class:`CheckResult`. The results of one call make a :class:`QualityReport`, which a flow
can log, publish as an artifact, or turn into an exception with
:meth:`QualityReport.raise_if_failed`.

- :func:`check_events` profiles the warehouse in DuckDB SQL (10M events never leave it):
  freshness, the newest day's volume against the days before it, null rates of the
  optional columns, duplicated rows, unknown event types and quarantined rows.
- :func:`check_features` validates each feature family's Parquet snapshots with a pandera
  schema built from its :class:`~ranking.features.FeatureSpec` (keys, types, ranges,
  unique keys per snapshot), then measures null rates, constant columns and the newest
  snapshot's row count against the earlier ones.
- :func:`check_training_set` validates a training frame (pandera) and measures its label
  distribution, query-group sizes and groups without a positive.

Nothing here reads the clock or imports Prefect: callers pass ``now`` in.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import pandas as pd
import pandera.pandas as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ranking.events import warehouse
from ranking.features import FAMILIES, FeatureFamily, FeatureSpec

Level = Literal["ok", "warn", "fail"]
_RANK: dict[str, int] = {"ok": 0, "warn": 1, "fail": 2}

#: Optional columns of the events table whose null rate can be checked.
OPTIONAL_EVENT_COLUMNS = ("value", "session_id", "position")
#: Columns that identify an event's content (everything but its id and load bookkeeping).
_CONTENT_COLUMNS = (
    "user_id", "item_id", "event_type", "event_timestamp", "value", "session_id", "position",
)  # fmt: skip
#: Training-set splits (the same names as ``ranking.dataset.SPLITS``; importing that module
#: would import Feast).
SPLITS = ("train", "valid", "test")
#: Feature names that denote a rate or a share, hence a value in [0, 1].
_RATE_NAME = re.compile(r"_(ctr|rate|share|affinity)_")
_DAY = timedelta(days=1)


# Thresholds ------------------------------------------------------------------------------
class MaxLimit(BaseModel):
    """Upper limits: an observed value above ``warn`` warns, above ``fail`` fails."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warn: float
    fail: float

    @model_validator(mode="after")
    def _ordered(self) -> MaxLimit:
        if self.warn > self.fail:
            raise ValueError(f"warn ({self.warn}) must not be above fail ({self.fail})")
        return self

    def grade(self, value: float) -> Level:
        return "fail" if value > self.fail else "warn" if value > self.warn else "ok"

    def describe(self) -> str:
        return f"warn > {self.warn:g}, fail > {self.fail:g}"


class MinLimit(BaseModel):
    """Lower limits: an observed value below ``warn`` warns, below ``fail`` fails."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warn: float
    fail: float

    @model_validator(mode="after")
    def _ordered(self) -> MinLimit:
        if self.warn < self.fail:
            raise ValueError(f"warn ({self.warn}) must not be below fail ({self.fail})")
        return self

    def grade(self, value: float) -> Level:
        return "fail" if value < self.fail else "warn" if value < self.warn else "ok"

    def describe(self) -> str:
        return f"warn < {self.warn:g}, fail < {self.fail:g}"


class Band(BaseModel):
    """A healthy band: outside [warn_low, warn_high] warns, outside [fail_low, fail_high] fails."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fail_low: float
    warn_low: float
    warn_high: float
    fail_high: float

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if not self.fail_low <= self.warn_low <= self.warn_high <= self.fail_high:
            raise ValueError("need fail_low <= warn_low <= warn_high <= fail_high")
        return self

    def grade(self, value: float) -> Level:
        if value < self.fail_low or value > self.fail_high:
            return "fail"
        if value < self.warn_low or value > self.warn_high:
            return "warn"
        return "ok"

    def describe(self) -> str:
        return (
            f"warn outside [{self.warn_low:g}, {self.warn_high:g}], "
            f"fail outside [{self.fail_low:g}, {self.fail_high:g}]"
        )


Limit = MaxLimit | MinLimit | Band


def _default_event_null_rates() -> dict[str, MaxLimit]:
    return {
        # Only views, plays, carts, purchases and ratings carry a value.
        "value": MaxLimit(warn=0.95, fail=0.999),
        # Query groups are sessions: without session_id they fall back to whole days.
        "session_id": MaxLimit(warn=0.05, fail=0.5),
        "position": MaxLimit(warn=0.2, fail=0.9),
    }


def _default_feature_null_overrides() -> dict[str, MaxLimit]:
    # Fed by optional inputs: a feed without ratings, or without an items file, leaves
    # these all-null. Worth a warning, not a stop (a fail level of 1.0 never trips).
    return {
        "user_avg_rating_all": MaxLimit(warn=0.99, fail=1.0),
        "item_price": MaxLimit(warn=0.99, fail=1.0),
    }


class QualityThresholds(BaseModel):
    """Warn and fail levels of every check. Shares and rates are fractions (0.01 = 1%)."""

    model_config = ConfigDict(extra="forbid")

    # Events (warehouse)
    events_window_days: int = Field(
        default=7,
        ge=1,
        description="Null and duplicate rates cover the events of the last N days before the "
        "newest event, so a feed that breaks today is not diluted by months of history.",
    )
    events_null_rate: dict[str, MaxLimit] = Field(
        default_factory=_default_event_null_rates,
        description="Share of NULLs per optional events column, in the window.",
    )
    duplicate_rate: MaxLimit = Field(
        default=MaxLimit(warn=0.001, fail=0.01),
        description="Share of events in the window identical to another apart from event_id.",
    )
    unknown_event_type_share: MaxLimit = Field(
        default=MaxLimit(warn=0.001, fail=0.01),
        description="Rows quarantined for an unknown event_type / (accepted + quarantined).",
    )
    quarantine_share: MaxLimit = Field(
        default=MaxLimit(warn=0.01, fail=0.05),
        description="Rows quarantined for any reason / (accepted + quarantined).",
    )
    freshness_hours: MaxLimit = Field(
        default=MaxLimit(warn=24.0, fail=72.0),
        description="Hours from the newest event_timestamp to now.",
    )
    volume_ratio: MinLimit = Field(
        default=MinLimit(warn=0.5, fail=0.2),
        description="Events on the newest complete day / mean of the baseline days before it.",
    )
    volume_baseline_days: int = Field(default=7, ge=1, description="Days averaged as baseline.")

    # Feature snapshots
    feature_null_rate: MaxLimit = Field(
        default=MaxLimit(warn=0.5, fail=0.99),
        description="Share of NULLs of a feature: the higher of the whole file's and the "
        "newest snapshot's.",
    )
    feature_null_rate_overrides: dict[str, MaxLimit] = Field(
        default_factory=_default_feature_null_overrides,
        description="Per-feature null-rate limits that replace feature_null_rate.",
    )
    feature_ranges: dict[str, tuple[float | None, float | None]] = Field(
        default_factory=dict,
        description="Per-feature (min, max) replacing the rule: rates and shares (names with "
        "_ctr_, _rate_, _share_, _affinity_) in [0, 1], every other feature >= 0.",
    )
    feature_out_of_range_share: MaxLimit = Field(
        default=MaxLimit(warn=0.0, fail=0.0),
        description="Share of a feature's non-null values outside its range (default: any fails).",
    )
    feature_constant_level: Level = Field(
        default="warn", description="Level of a feature with one distinct non-null value."
    )
    snapshot_rows_ratio: MinLimit = Field(
        default=MinLimit(warn=0.8, fail=0.5),
        description="Rows of the newest snapshot / median rows of the earlier snapshots.",
    )

    # Training sets
    positive_share: Band = Field(
        default=Band(fail_low=0.005, warn_low=0.02, warn_high=0.5, fail_high=0.9),
        description="Share of rows with label > 0, overall and per split.",
    )
    group_size_min: MinLimit = Field(
        default=MinLimit(warn=3, fail=2), description="Rows of the smallest query group."
    )
    group_size_median: MinLimit = Field(
        default=MinLimit(warn=5, fail=2), description="Median rows per query group."
    )
    groups_without_positive_share: MaxLimit = Field(
        default=MaxLimit(warn=0.0, fail=0.05),
        description="Share of query groups with no label > 0 (they teach a ranker nothing).",
    )

    @field_validator("events_null_rate")
    @classmethod
    def _known_event_columns(cls, value: dict[str, MaxLimit]) -> dict[str, MaxLimit]:
        unknown = sorted(set(value) - set(OPTIONAL_EVENT_COLUMNS))
        if unknown:
            raise ValueError(f"not optional events columns: {unknown}")
        return value

    def null_limit(self, feature: str) -> MaxLimit:
        """The null-rate limits of one feature (its override, else the default)."""
        return self.feature_null_rate_overrides.get(feature, self.feature_null_rate)


# Results ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one target."""

    check: str  # e.g. "freshness_hours", "null_rate:item_ctr_7d"
    target: str  # "events", "features:item_stats", "training_set", "training_set:test"
    level: Level
    observed: float | None  # None when the check could not measure anything
    threshold: str  # the limits, in words: "warn > 24, fail > 72"
    message: str  # names the table / file and column

    @property
    def name(self) -> str:
        return f"{self.target}/{self.check}"

    def describe(self) -> str:
        observed = "n/a" if self.observed is None else f"{self.observed:.6g}"
        return f"{self.name}: {self.message} (observed {observed}; {self.threshold})"


class QualityError(Exception):
    """Raised by :meth:`QualityReport.raise_if_failed`; carries the report."""

    def __init__(self, report: QualityReport) -> None:
        self.report = report
        failed = report.failed
        lines = [f"{len(failed)} data-quality check(s) failed:"]
        lines += [f"  - {r.describe()}" for r in failed]
        super().__init__("\n".join(lines))


@dataclass
class QualityReport:
    """The results of one or more checks, in the order they ran."""

    results: list[CheckResult] = field(default_factory=list)

    def __add__(self, other: QualityReport) -> QualityReport:
        return QualityReport(self.results + other.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.level == "fail"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if r.level == "warn"]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return not self.failed

    @property
    def level(self) -> Level:
        """The worst level of any result ("ok" for an empty report)."""
        return max((r.level for r in self.results), key=_RANK.__getitem__, default="ok")

    def get(self, check: str, target: str | None = None) -> CheckResult:
        """The result of ``check`` (on ``target`` when given); KeyError if none."""
        for r in self.results:
            if r.check == check and (target is None or r.target == target):
                return r
        raise KeyError(f"no result for check {check!r}" + (f" on {target!r}" if target else ""))

    def to_frame(self) -> pd.DataFrame:
        columns = ["target", "check", "level", "observed", "threshold", "message"]
        return pd.DataFrame([asdict(r) for r in self.results], columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: overall level, counts and every result."""
        return {
            "level": self.level,
            "checks": len(self.results),
            "failed": len(self.failed),
            "warnings": len(self.warnings),
            "results": [asdict(r) for r in self.results],
        }

    def summary(self) -> str:
        """One line: overall level, counts, and the names of failing (else warning) checks."""
        n_fail, n_warn = len(self.failed), len(self.warnings)
        line = (
            f"data quality {self.level.upper()}: {len(self.results)} checks, "
            f"{len(self.results) - n_fail - n_warn} ok, {n_warn} warn, {n_fail} fail"
        )
        worst = self.failed or self.warnings
        if worst:
            names = [r.name for r in worst[:5]]
            more = f" (+{len(worst) - 5} more)" if len(worst) > 5 else ""
            line += f"; {'failed' if self.failed else 'warned'}: {', '.join(names)}{more}"
        return line

    def raise_if_failed(self) -> None:
        """Raise :class:`QualityError` listing every failing check, if any failed."""
        if self.failed:
            raise QualityError(self)


def _graded(check: str, target: str, observed: float, limit: Limit, message: str) -> CheckResult:
    return CheckResult(check, target, limit.grade(observed), observed, limit.describe(), message)


def _fail(check: str, target: str, message: str, threshold: str = "must hold") -> CheckResult:
    return CheckResult(check, target, "fail", None, threshold, message)


def _skipped(check: str, target: str, limit: Limit, message: str) -> CheckResult:
    return CheckResult(check, target, "ok", None, limit.describe(), f"skipped: {message}")


def _naive_utc(moment: datetime) -> datetime:
    """Naive UTC, the warehouse's convention."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _pct(share: float) -> str:
    """A share as a percentage with 3 significant digits: 0.0000475 -> '0.00475%'."""
    return f"{share * 100:.3g}%"


# Events ----------------------------------------------------------------------------------
def check_events(
    warehouse_path: Path, now: datetime, thresholds: QualityThresholds | None = None
) -> QualityReport:
    """Freshness, volume, null rates, duplicates and quarantine shares of the warehouse.

    ``now`` is the caller's clock (naive UTC, or aware and converted). The warehouse is
    opened read-only; a missing warehouse or an empty events table is a failure.
    """
    t = thresholds or QualityThresholds()
    now = _naive_utc(now)
    path = Path(warehouse_path)
    if not path.exists():
        return QualityReport([_fail("warehouse", "events", f"warehouse {path} does not exist")])
    with warehouse(path, read_only=True) as con:
        total, oldest, newest = con.execute(
            "SELECT count(*), min(event_timestamp), max(event_timestamp) FROM events"
        ).fetchall()[0]
        if total == 0:
            return QualityReport(
                [_fail("row_count", "events", f"events table in {path.name} holds no rows")]
            )
        results = [_freshness(newest, now, t)]
        results += _volume(con, oldest, newest, now, t)
        results += _null_rates(con, newest, t)
        results.append(_duplicates(con, newest, t))
        results += _quarantine(con, total, t)
    return QualityReport(results)


def _freshness(newest: datetime, now: datetime, t: QualityThresholds) -> CheckResult:
    lag_h = (now - newest).total_seconds() / 3600.0
    return _graded(
        "freshness_hours",
        "events",
        round(lag_h, 3),
        t.freshness_hours,
        f"newest events.event_timestamp {newest:%Y-%m-%d %H:%M:%S} is {lag_h:.1f} h before "
        f"now ({now:%Y-%m-%d %H:%M:%S})",
    )


def _volume(
    con: duckdb.DuckDBPyConnection,
    oldest: datetime,
    newest: datetime,
    now: datetime,
    t: QualityThresholds,
) -> list[CheckResult]:
    """Events of the newest complete day vs the mean of the baseline days before it.

    The newest day is the day of the newest event, or the day before it while that day is
    still running at ``now`` (a partial day is not a volume drop). Baseline days before
    the first event's day do not count; days without events inside the baseline count 0.
    """
    newest_day = datetime(newest.year, newest.month, newest.day)
    day = newest_day if newest_day + _DAY <= now else newest_day - _DAY
    first_day = datetime(oldest.year, oldest.month, oldest.day)
    base_start = max(first_day, day - t.volume_baseline_days * _DAY)
    if base_start >= day:
        return [_skipped("volume_ratio", "events", t.volume_ratio, "no complete day of history")]
    counts = dict(
        con.execute(
            """
            SELECT date_trunc('day', event_timestamp)::TIMESTAMP AS day, count(*) FROM events
            WHERE event_timestamp >= ?::TIMESTAMP AND event_timestamp < ?::TIMESTAMP
            GROUP BY 1
            """,
            [base_start, day + _DAY],
        ).fetchall()
    )
    n_base = (day - base_start).days
    baseline = sum(counts.get(base_start + i * _DAY, 0) for i in range(n_base)) / n_base
    observed = counts.get(day, 0)
    if baseline == 0:
        return [_skipped("volume_ratio", "events", t.volume_ratio, "no events in the baseline")]
    ratio = observed / baseline
    return [
        _graded(
            "volume_ratio",
            "events",
            round(ratio, 4),
            t.volume_ratio,
            f"events on {day:%Y-%m-%d}: {observed:,} vs {baseline:,.1f} a day on average over "
            f"the {n_base} days before ({ratio:.2f}x)",
        )
    ]


def _window_start(newest: datetime, t: QualityThresholds) -> datetime:
    return newest - t.events_window_days * _DAY


def _null_rates(
    con: duckdb.DuckDBPyConnection, newest: datetime, t: QualityThresholds
) -> list[CheckResult]:
    columns = [c for c in OPTIONAL_EVENT_COLUMNS if c in t.events_null_rate]
    if not columns:
        return []
    start = _window_start(newest, t)
    counts = ", ".join(f"count({c})" for c in columns)
    row = con.execute(
        f"SELECT count(*), {counts} FROM events WHERE event_timestamp > ?::TIMESTAMP", [start]
    ).fetchall()[0]
    n = row[0]
    results = []
    for col, non_null in zip(columns, row[1:], strict=True):
        rate = 1.0 - non_null / n
        results.append(
            _graded(
                f"null_rate:{col}",
                "events",
                round(rate, 6),
                t.events_null_rate[col],
                f"events.{col} is NULL in {n - non_null:,} of {n:,} events "
                f"({_pct(rate)}) of the last {t.events_window_days} days",
            )
        )
    return results


def _duplicates(
    con: duckdb.DuckDBPyConnection, newest: datetime, t: QualityThresholds
) -> CheckResult:
    cols = ", ".join(_CONTENT_COLUMNS)
    n, distinct = con.execute(
        f"""
        SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT {cols} FROM events
                          WHERE event_timestamp > ?::TIMESTAMP))
        FROM events WHERE event_timestamp > ?::TIMESTAMP
        """,
        [_window_start(newest, t)] * 2,
    ).fetchall()[0]
    dup = n - distinct
    rate = dup / n
    return _graded(
        "duplicate_rate",
        "events",
        round(rate, 6),
        t.duplicate_rate,
        f"{dup:,} of {n:,} events of the last {t.events_window_days} days repeat another "
        f"event's ({cols}) under a different event_id ({_pct(rate)})",
    )


def _quarantine(
    con: duckdb.DuckDBPyConnection, accepted: int, t: QualityThresholds
) -> list[CheckResult]:
    rows = con.execute(
        """
        SELECT reason, count(*) AS n FROM quarantine WHERE target = 'events'
        GROUP BY reason ORDER BY n DESC, reason
        """
    ).fetchall()
    quarantined = sum(n for _, n in rows)
    seen = accepted + quarantined
    unknown = [(r, n) for r, n in rows if r.startswith("unknown event_type")]
    n_unknown = sum(n for _, n in unknown)
    types = ", ".join(
        f"{r.removeprefix('unknown event_type').strip()} ({n:,})" for r, n in unknown[:5]
    )
    share_unknown = n_unknown / seen
    share_q = quarantined / seen
    top = ", ".join(f"{r} ({n:,})" for r, n in rows[:3])
    return [
        _graded(
            "unknown_event_type_share",
            "events",
            round(share_unknown, 6),
            t.unknown_event_type_share,
            f"{n_unknown:,} of {seen:,} event rows in quarantine for an unknown event_type "
            f"({_pct(share_unknown)})" + (f": {types}" if types else ""),
        ),
        _graded(
            "quarantine_share",
            "events",
            round(share_q, 6),
            t.quarantine_share,
            f"{quarantined:,} of {seen:,} event rows in the quarantine table ({_pct(share_q)})"
            + (f"; most common: {top}" if top else ""),
        ),
    ]


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


def _failure_cases(schema: pa.DataFrameSchema, frame: pd.DataFrame) -> pd.DataFrame:
    """Pandera's failure cases (empty when the frame is valid), every check run (lazy)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases
    return pd.DataFrame(
        columns=["schema_context", "column", "check", "check_number", "failure_case", "index"]
    )


def _is_value_check(cases: pd.DataFrame) -> pd.Series:
    """Rows of failure cases from a column's value checks (ranges), not schema structure."""
    return (cases["schema_context"] == "Column") & cases["check_number"].notna()


def _schema_problems(cases: pd.DataFrame, unique: Sequence[str] | None = None) -> list[str]:
    """Structural failures (missing columns, types, nulls, duplicates), one phrase each."""
    problems = []
    dup = cases["check"] == "multiple_fields_uniqueness"
    if dup.any():
        keys = ", ".join(unique or dict.fromkeys(cases.loc[dup, "column"].astype(str)))
        problems.append(f"{cases.loc[dup, 'index'].nunique():,} rows share their ({keys})")
    for (column, check), part in cases[~dup].groupby(["column", "check"], dropna=False):
        if check == "column_in_dataframe":
            problems += [f"missing column {c}" for c in part["failure_case"]]
        elif check == "not_nullable":
            problems.append(f"{column} is NULL in {part['index'].nunique():,} rows")
        elif str(check).startswith("dtype"):
            problems.append(f"{column} has type {part['failure_case'].iloc[0]}, expected {check}")
        else:
            problems.append(f"{column}: {check} ({len(part):,} cases)")
    return problems


def check_features(
    features_dir: Path,
    thresholds: QualityThresholds | None = None,
    families: Iterable[FeatureFamily] = FAMILIES,
) -> QualityReport:
    """Schema, null rates, ranges, constant columns and snapshot sizes of each family's file."""
    t = thresholds or QualityThresholds()
    results: list[CheckResult] = []
    for family in families:
        results += _check_family(family, Path(features_dir), t)
    return QualityReport(results)


def _check_family(
    family: FeatureFamily, features_dir: Path, t: QualityThresholds
) -> list[CheckResult]:
    target = f"features:{family.name}"
    path = family.parquet_path(features_dir)
    if not path.exists():
        return [_fail("file", target, f"{path} does not exist")]
    try:
        frame = pd.read_parquet(path, dtype_backend="numpy_nullable")
    except Exception as exc:  # unreadable file: report it, do not crash the whole report
        return [_fail("file", target, f"{path} cannot be read: {exc}")]
    if frame.empty:
        return [_fail("row_count", target, f"{path.name} holds no rows")]

    schema = feature_schema(family, t)
    cases = _failure_cases(schema, frame)
    value_cases = cases[_is_value_check(cases)]
    problems = _schema_problems(cases[~_is_value_check(cases)], schema.unique)
    results = [
        CheckResult(
            "schema",
            target,
            "fail" if problems else "ok",
            float(len(problems)),
            "no structural problem",
            f"{path.name}: " + ("; ".join(problems) if problems else "keys, types and columns ok"),
        )
    ]
    present = [s for s in family.features if s.name in frame.columns]
    snapshots = frame["event_timestamp"] if "event_timestamp" in frame.columns else None
    newest = frame[snapshots == snapshots.max()] if snapshots is not None else frame
    for spec in present:
        results.append(_feature_nulls(spec.name, frame, newest, target, t))
        results.append(_feature_range_result(spec, frame, value_cases, target, t))
        results.append(_feature_constant(spec.name, frame, target, t))
    if snapshots is not None:
        results.append(_snapshot_rows(snapshots, target, path.name, t))
    return results


def _feature_nulls(
    name: str, frame: pd.DataFrame, newest: pd.DataFrame, target: str, t: QualityThresholds
) -> CheckResult:
    whole, latest = float(frame[name].isna().mean()), float(newest[name].isna().mean())
    return _graded(
        f"null_rate:{name}",
        target,
        round(max(whole, latest), 6),
        t.null_limit(name),
        f"{target.split(':', 1)[1]}.{name} is NULL in {_pct(whole)} of all rows and "
        f"{_pct(latest)} of the newest snapshot",
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
    return _graded(
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
        return _skipped("snapshot_rows_ratio", target, t.snapshot_rows_ratio, "one snapshot")
    newest, earlier = int(sizes.iloc[-1]), float(sizes.iloc[:-1].median())
    ratio = newest / earlier
    return _graded(
        "snapshot_rows_ratio",
        target,
        round(ratio, 4),
        t.snapshot_rows_ratio,
        f"{file_name}: newest snapshot ({sizes.index[-1]}) has {newest:,} rows vs a median "
        f"of {earlier:,.0f} over the {len(sizes) - 1} earlier ones ({ratio:.2f}x)",
    )


# Training sets ---------------------------------------------------------------------------
_NUMERIC = pa.Check(lambda s: pd.api.types.is_numeric_dtype(s), element_wise=False, name="numeric")

TRAINING_SCHEMA = pa.DataFrameSchema(
    {
        "group_id": pa.Column(nullable=False),
        "user_id": pa.Column(nullable=False),
        "item_id": pa.Column(nullable=False),
        "label": pa.Column(checks=[_NUMERIC, pa.Check.ge(0)], nullable=False),
        "split": pa.Column(checks=pa.Check.isin(SPLITS), nullable=False, required=False),
    },
    unique=["group_id", "item_id"],
    name="training_set",
)


def check_training_set(
    frame: pd.DataFrame,
    thresholds: QualityThresholds | None = None,
    features: Sequence[str] | None = None,
) -> QualityReport:
    """Schema, label distribution, query-group sizes and groups without a positive.

    ``frame`` is a training frame (``group_id``, ``user_id``, ``item_id``, ``label``,
    ``split``...). With ``features``, each feature column's null rate is checked too.
    """
    t = thresholds or QualityThresholds()
    target = "training_set"
    if frame.empty:
        return QualityReport([_fail("row_count", target, "training set has no rows")])
    schema = TRAINING_SCHEMA
    if features:
        extra = {f: pa.Column(nullable=True) for f in features}
        schema = schema.add_columns(extra)
    cases = _failure_cases(schema, frame)
    problems = _schema_problems(cases[~_is_value_check(cases)], schema.unique)
    for (column, check), part in cases[_is_value_check(cases)].groupby(["column", "check"]):
        problems.append(f"{column} fails {check} in {len(part):,} rows")
    results = [
        CheckResult(
            "schema",
            target,
            "fail" if problems else "ok",
            float(len(problems)),
            "no structural problem",
            "training set: " + ("; ".join(problems) if problems else "columns and values ok"),
        )
    ]
    usable = {"group_id", "label"} <= set(frame.columns) and pd.api.types.is_numeric_dtype(
        frame["label"]
    )
    if not usable:
        return QualityReport(results)

    positive = frame["label"] > 0
    results.append(_positive_share(positive, target, t))
    if "split" in frame.columns:
        for split in [s for s in SPLITS if (frame["split"] == s).any()]:
            in_split = frame["split"] == split
            results.append(_positive_share(positive[in_split], f"{target}:{split}", t))
    results += _groups(frame, positive, target, t)
    for name in features or ():
        if name in frame.columns:
            rate = float(frame[name].isna().mean())
            results.append(
                _graded(
                    f"null_rate:{name}",
                    target,
                    round(rate, 6),
                    t.null_limit(name),
                    f"training set column {name} is NULL in {_pct(rate)} of rows",
                )
            )
    return QualityReport(results)


def _positive_share(positive: pd.Series, target: str, t: QualityThresholds) -> CheckResult:
    share = float(positive.mean())
    return _graded(
        "positive_share",
        target,
        round(share, 6),
        t.positive_share,
        f"{int(positive.sum()):,} of {len(positive):,} rows of {target} have label > 0 "
        f"({_pct(share)})",
    )


def _groups(
    frame: pd.DataFrame, positive: pd.Series, target: str, t: QualityThresholds
) -> list[CheckResult]:
    sizes = frame.groupby("group_id", sort=False).size()
    without = ~positive.groupby(frame["group_id"], sort=False).any()
    share = float(without.mean())
    sorted_ok = bool(frame["group_id"].is_monotonic_increasing)
    return [
        _graded(
            "group_size_min",
            target,
            float(sizes.min()),
            t.group_size_min,
            f"smallest of {len(sizes):,} query groups (group_id {sizes.idxmin()}) has "
            f"{int(sizes.min())} rows",
        ),
        _graded(
            "group_size_median",
            target,
            float(sizes.median()),
            t.group_size_median,
            f"query groups have {sizes.median():g} rows at the median "
            f"(min {int(sizes.min())}, max {int(sizes.max())})",
        ),
        _graded(
            "groups_without_positive_share",
            target,
            round(share, 6),
            t.groups_without_positive_share,
            f"{int(without.sum()):,} of {len(sizes):,} query groups have no row with label > 0 "
            f"({_pct(share)})",
        ),
        CheckResult(
            "groups_sorted",
            target,
            "ok" if sorted_ok else "fail",
            float(sorted_ok),
            "group_id must be non-decreasing (XGBoost qid)",
            "rows are " + ("" if sorted_ok else "not ") + "sorted by group_id",
        ),
    ]
