"""Offline evaluation on the test holdout: the models and every baseline, same candidates.

Used by the training flow (each run logs these tables), ``ranking evaluate`` (the
champion today) and ``benchmarks/quality.py`` (model against baselines and LightGBM).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from ranking import baselines, dataset, evaluate
from ranking.config import Settings
from ranking.events import warehouse


def holdout_with_features(
    settings: Settings, store, times: dataset.SplitTimes, full_catalogue: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """The test queries at ``times.test_start`` with their features from Feast."""
    with warehouse(settings.warehouse_path, read_only=True) as con:
        holdout = dataset.build_holdout_frame(con, settings, times, full_catalogue=full_catalogue)
    if holdout.empty:
        raise ValueError(
            f"no returning user with a relevant event between {times.test_start} and {times.end}"
        )
    return dataset.with_features(store, holdout, settings.feature_service)


def evaluation_tables(
    settings: Settings,
    test: pd.DataFrame,
    model_scores: dict[str, pd.Series],
    cutoff: datetime,
    catalogue_size: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(overall table, table by user segment) for the models and every baseline."""
    with warehouse(settings.warehouse_path, read_only=True) as con:
        scores = dict(model_scores)
        scores |= baselines.baseline_scores(con, settings, test, cutoff, seed=settings.seed)
    segments = evaluate.user_segment(
        test["user_history_events"], settings.segment_light_min, settings.segment_heavy_min
    )
    return (
        evaluate.report(test, scores, seed=settings.seed, catalogue_size=catalogue_size),
        evaluate.report_by_segment(test, scores, segments, seed=settings.seed),
    )
