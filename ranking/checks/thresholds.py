"""Warn and fail levels of every check: the data-quality checks and drift detection.

Pure declarations (pydantic models), nested in the settings as ``quality``, ``monitoring``
and ``monitoring.drift``, so ``RANKING_QUALITY__FRESHNESS_HOURS='{"warn": 48, "fail": 96}'``
and ``RANKING_MONITORING__DRIFT__PSI_FAIL=0.3`` change them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ranking.checks.limits import Band, Level, MaxLimit, MinLimit
from ranking.schema import OPTIONAL_EVENT_COLUMNS


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


class DriftThresholds(BaseModel):
    """When a difference between reference and current is an alarm."""

    psi_warn: float = Field(default=0.1, gt=0, description="PSI at or above it: warn.")
    psi_fail: float = Field(default=0.25, gt=0, description="PSI at or above it: fail.")
    ks_pvalue: float = Field(
        default=0.01, gt=0, lt=1, description="KS p-value a PSI alarm must also be below."
    )
    js_warn: float = Field(default=0.1, gt=0, le=1, description="JS distance (base 2): warn.")
    js_fail: float = Field(default=0.2, gt=0, le=1, description="JS distance (base 2): fail.")
    chi2_pvalue: float = Field(
        default=0.01, gt=0, lt=1, description="Chi-square p-value a JS alarm must be below."
    )
    null_rate_warn: float = Field(
        default=0.05, ge=0, le=1, description="Change of null share above it: warn."
    )
    null_rate_fail: float = Field(
        default=0.1, ge=0, le=1, description="Change of null share above it: fail."
    )
    null_pvalue: float = Field(
        default=0.01, gt=0, lt=1, description="Two-proportion p-value a null alarm needs."
    )
    min_samples: int = Field(
        default=200, ge=2, description="Fewer rows in either sample: 'not enough data'."
    )
    bins: int = Field(default=10, ge=2, description="Reference-quantile bins for PSI.")

    @model_validator(mode="after")
    def _ordered(self) -> DriftThresholds:
        if self.psi_warn > self.psi_fail:
            raise ValueError("psi_warn must not exceed psi_fail")
        if self.js_warn > self.js_fail:
            raise ValueError("js_warn must not exceed js_fail")
        if self.null_rate_warn > self.null_rate_fail:
            raise ValueError("null_rate_warn must not exceed null_rate_fail")
        return self


class MonitoringSettings(BaseModel):
    """Drift monitoring of the champion (the settings' ``monitoring`` section)."""

    model_config = ConfigDict(extra="forbid")

    drift: DriftThresholds = Field(
        default_factory=DriftThresholds, description="Drift thresholds (PSI, KS, JS, chi2)."
    )
    reference_rows: int = Field(
        default=5000, description="Rows of training features and scores kept as drift reference."
    )
    window_days: int = Field(
        default=7,
        description="Recent days whose candidates make the 'current' drift sample; as long "
        "as the validation window the reference comes from, so weekdays compare like with like.",
    )
    trending_features: list[str] = Field(
        default_factory=lambda: ["*_all", "item_age_days"],
        description="Patterns of features that grow with time by construction (all-history "
        "counts, ages): their drift is reported but never more than 'warn'.",
    )
    retrain_on_drift: bool = Field(
        default=True, description="A drift breach starts the training flow."
    )
