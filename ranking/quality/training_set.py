"""Data checks on a training set: schema (pandera), label distribution overall and per
split, query-group sizes, groups without a positive and the qid order XGBoost needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import pandera.pandas as pa

from ranking.checks.report import CheckResult, QualityReport, failure, graded, pct, skipped
from ranking.checks.thresholds import QualityThresholds
from ranking.quality.frames import (
    failure_cases,
    is_value_check,
    schema_problems,
    schema_result,
)
from ranking.retrieval.merge import RETRIEVAL_FEATURES
from ranking.schema import SPLITS

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
    lacking: Mapping[str, str] | None = None,
) -> QualityReport:
    """Schema, label distribution, query-group sizes and groups without a positive.

    ``frame`` is a training frame (``group_id``, ``user_id``, ``item_id``, ``label``,
    ``split``...). With ``features``, each feature column's null rate is checked too,
    except where the log ``lacking`` the feature's signal leaves it empty by nature.
    """
    t = thresholds or QualityThresholds()
    target = "training_set"
    if frame.empty:
        return QualityReport([failure("row_count", target, "training set has no rows")])
    schema = TRAINING_SCHEMA
    if features:
        extra = {f: pa.Column(nullable=True) for f in features}
        schema = schema.add_columns(extra)
    cases = failure_cases(schema, frame)
    problems = schema_problems(cases[~is_value_check(cases)], schema.unique)
    for (column, check), part in cases[is_value_check(cases)].groupby(["column", "check"]):
        problems.append(f"{column} fails {check} in {len(part):,} rows")
    results = [schema_result(target, "training set", problems, "columns and values ok")]
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
        # A source's score is absent where it did not propose the item, by design.
        if name in (lacking or {}):
            results.append(skipped(f"null_rate:{name}", target, t.null_limit(name),
                                   f"the log has no {lacking[name]}"))  # fmt: skip
        elif name in frame.columns and name not in RETRIEVAL_FEATURES:
            rate = float(frame[name].isna().mean())
            results.append(
                graded(
                    f"null_rate:{name}",
                    target,
                    round(rate, 6),
                    t.null_limit(name),
                    f"training set column {name} is NULL in {pct(rate)} of rows",
                )
            )
    return QualityReport(results)


def _positive_share(positive: pd.Series, target: str, t: QualityThresholds) -> CheckResult:
    share = float(positive.mean())
    return graded(
        "positive_share",
        target,
        round(share, 6),
        t.positive_share,
        f"{int(positive.sum()):,} of {len(positive):,} rows of {target} have label > 0 "
        f"({pct(share)})",
    )


def _groups(
    frame: pd.DataFrame, positive: pd.Series, target: str, t: QualityThresholds
) -> list[CheckResult]:
    sizes = frame.groupby("group_id", sort=False).size()
    without = ~positive.groupby(frame["group_id"], sort=False).any()
    share = float(without.mean())
    sorted_ok = bool(frame["group_id"].is_monotonic_increasing)
    return [
        graded(
            "group_size_min",
            target,
            float(sizes.min()),
            t.group_size_min,
            f"smallest of {len(sizes):,} query groups (group_id {sizes.idxmin()}) has "
            f"{int(sizes.min())} rows",
        ),
        graded(
            "group_size_median",
            target,
            float(sizes.median()),
            t.group_size_median,
            f"query groups have {sizes.median():g} rows at the median "
            f"(min {int(sizes.min())}, max {int(sizes.max())})",
        ),
        graded(
            "groups_without_positive_share",
            target,
            round(share, 6),
            t.groups_without_positive_share,
            f"{int(without.sum()):,} of {len(sizes):,} query groups have no row with label > 0 "
            f"({pct(share)})",
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
