"""Offline evaluation on the test holdout: the models and every baseline, same candidates.

Used by the training flow (each run logs these tables), ``ranking evaluate`` (the
champion today) and ``benchmarks/quality.py`` (model against baselines and LightGBM).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from ranking.errors import NoDataError
from ranking.evaluation import baselines, metrics
from ranking.evaluation.retrieval import retrieval_recall, with_two_stages
from ranking.features.store import get_store, service_name
from ranking.retrieval.merge import FUSED_SCORE, retrieve_from
from ranking.schema import RETRIEVAL_FUSION
from ranking.settings import Settings
from ranking.times import floor_to
from ranking.training import dataset
from ranking.training.rankers import score
from ranking.training.retrieved import only_retrieved, with_retrieval_columns
from ranking.warehouse import warehouse


def holdout_with_features(
    settings: Settings, store, times: dataset.SplitTimes, full_catalogue: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """The test queries at ``times.test_start`` with their features from Feast."""
    with warehouse(settings.warehouse_path, read_only=True) as con:
        holdout = dataset.build_holdout_frame(
            con, settings, times, full_catalogue=full_catalogue,
            cutoffs=1 if full_catalogue else None,
        )  # fmt: skip
    if holdout.empty:
        raise NoDataError(
            f"no returning user with a relevant event between {times.test_start} and {times.end}"
        )
    return dataset.with_features(store, holdout, service_name(settings))


def evaluation_tables(
    settings: Settings,
    test: pd.DataFrame,
    model_scores: dict[str, pd.Series],
    catalogue_size: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(overall table, table by user segment) for the models and every baseline, plus
    retrieval's own order when ``test`` holds retrieved candidates. The baselines see
    the history before each query's cut-off (its ``event_timestamp``)."""
    scores = dict(model_scores) | cutoff_baselines(settings, test)
    if FUSED_SCORE in test.columns and RETRIEVAL_FUSION not in scores:
        scores[RETRIEVAL_FUSION] = test[FUSED_SCORE].astype(float)
    # Retrieved candidates: what retrieval missed stays in the labels, unrankable by all.
    scores = {name: only_retrieved(test, s) for name, s in scores.items()}
    segments = metrics.user_segment(
        test["user_history_events"],
        settings.evaluation.segment_light_min,
        settings.evaluation.segment_heavy_min,
    )
    return (
        metrics.report(test, scores, seed=settings.seed, catalogue_size=catalogue_size),
        metrics.report_by_segment(test, scores, segments, seed=settings.seed),
    )


def cutoff_baselines(settings: Settings, test: pd.DataFrame) -> dict[str, pd.Series]:
    """Every baseline's scores for ``test``, each cut-off's queries from the history
    before that cut-off."""
    parts: dict[str, list[pd.Series]] = {}
    with warehouse(settings.warehouse_path, read_only=True) as con:
        for at, queries in test.groupby("event_timestamp", sort=True):
            cutoff = pd.Timestamp(at).tz_convert(None).to_pydatetime()
            found = baselines.baseline_scores(con, settings, queries, cutoff, seed=settings.seed)
            for name, values in found.items():
                parts.setdefault(name, []).append(values)
    return {name: pd.concat(values).reindex(test.index) for name, values in parts.items()}


@dataclass
class Evaluation:
    """An evaluation on the holdout at a cut-off: overall and by user segment."""

    times: dataset.SplitTimes
    table: pd.DataFrame
    by_segment: pd.DataFrame
    retrieval_recall: pd.DataFrame | None = None  # full catalogue only


def evaluate_champion(
    settings: Settings,
    model,
    features: list[str],
    name: str,
    moment: datetime,
    full_catalogue: bool = False,
) -> Evaluation:
    """Score ``model`` and every baseline on the holdout that ends at ``moment``."""
    cadence = settings.features.snapshot_every.total_seconds()
    times = dataset.split_for(settings, floor_to(moment, cadence))
    test, _ = holdout_with_features(
        settings, get_store(settings), times, full_catalogue=full_catalogue
    )  # one cut-off for the full catalogue: the two stages retrieve for it alone
    recall = None
    if full_catalogue:  # also the two stages: retrieval proposes, the model orders
        users = sorted(test["user_id"].unique())
        candidates = retrieve_from(
            settings.warehouse_path, settings, users, times.test_start, reuse=True
        )
        test = with_retrieval_columns(test, candidates)
        scores = with_two_stages(candidates, test, {name: score(model, test, features)})
        recall = retrieval_recall(candidates, test[test["label"] > 0])
    else:
        scores = {name: score(model, test, features)}
    table, by_segment = evaluation_tables(settings, test, scores)
    return Evaluation(times, table, by_segment, recall)
