"""Training flow: training set through Feast, XGBoost ranker, evaluation, MLflow, gate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import floor_to, flow_settings, parse_time, utc_now
from ranking import dataset, feature_registry, holdout, monitor, quality, registry, store, train
from ranking.config import Settings
from ranking.features import FAMILIES


@dataclass
class TrainResult:
    """What one training run produced (returned to the parent flow and the CLI)."""

    version: str
    run_id: str
    promoted: bool
    reason: str
    champion_version: str | None
    table: pd.DataFrame
    summary: dict


@task(cache_policy=NO_CACHE)
def split(settings: Settings, as_of_iso: str) -> dataset.SplitTimes:
    return dataset.split_for(settings, parse_time(as_of_iso, utc_now()))


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def training_set(settings: Settings, times: dataset.SplitTimes):
    return dataset.build_training_set(
        settings.warehouse_path, store.get_store(settings), settings, times
    )


@task(cache_policy=NO_CACHE)
def fit(settings: Settings, frame: pd.DataFrame, features: list[str]) -> train.TrainedRanker:
    return train.train_ranker(
        frame[frame["split"] == "train"], frame[frame["split"] == "valid"], features, settings
    )


@task(cache_policy=NO_CACHE)
def evaluate_on_test(
    settings: Settings, test: pd.DataFrame, trained: train.TrainedRanker, cutoff: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model and every baseline on the same holdout: overall and by user segment."""
    scores = {"xgboost": train.score(trained.model, test, trained.features)}
    return holdout.evaluation_tables(settings, test, scores, cutoff)


@task(cache_policy=NO_CACHE)
def champion_on_test(settings: Settings, test: pd.DataFrame) -> tuple[str | None, float | None]:
    return registry.champion_ndcg_on(settings, test, seed=settings.seed)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def log_model(settings: Settings, trained: train.TrainedRanker, frame: pd.DataFrame,
              table: pd.DataFrame, by_segment: pd.DataFrame, times: dataset.SplitTimes,
              quality_report: quality.QualityReport) -> tuple[str, str]:  # fmt: skip
    summary = dataset.training_set_summary(frame)
    metrics = {f"test_{m}": float(v) for m, v in table.loc["xgboost"].items()}
    metrics |= {f"baseline_{name}_{m}": float(v) for name in table.index if name != "xgboost"
                for m, v in table.loc[name].items()}  # fmt: skip
    metrics |= {f"{s}_{k}": v for s, d in summary.items() for k, v in d.items()}
    metrics["best_iteration"] = float(trained.best_iteration)
    tags = {
        "feature_service": settings.feature_service,
        "data_window": f"{times.start:%Y-%m-%dT%H:%M}/{times.end:%Y-%m-%dT%H:%M}",
        "split_times": f"valid from {times.valid_start:%Y-%m-%d}, test from "
        f"{times.test_start:%Y-%m-%d}",
        "training_set_hash": registry.frame_hash(frame),
        "code_version": registry.code_version(),
        "data_quality": quality_report.summary(),
    }
    reference = monitor.reference_sample(
        frame[frame["split"] == "valid"], trained.model, trained.features,
        settings.drift_reference_rows, settings.seed,
    )  # fmt: skip
    return registry.log_and_register(
        settings,
        model=trained.model,
        features=trained.features,
        params=trained.params | {"group_by": settings.group_by},
        metrics=metrics,
        tags=tags,
        example=frame[frame["split"] == "test"],
        importance=train.feature_importance(trained.model, trained.features),
        tables={
            "evaluation": table,
            "evaluation_by_segment": by_segment,
            "data_quality": quality_report.to_frame(),
        },
        frames={"drift_reference": reference},
    )


def _publish_quality(report: quality.QualityReport, stage: str) -> None:
    """A Prefect artifact of the checks; any ``fail`` stops the run here, naming them all."""
    table = report.to_frame()[["target", "check", "level", "observed", "threshold"]]
    create_markdown_artifact(
        f"# Data quality ({stage})\n\n{report.summary()}\n\n{table.to_markdown(index=False)}",
        key=f"data-quality-{stage.replace(' ', '-')}",
        description=f"Data checks: {stage}",
    )
    print(report.summary())
    report.raise_if_failed()


@task(cache_policy=NO_CACHE)
def check_inputs(settings: Settings, as_of_iso: str) -> quality.QualityReport:
    """Data checks on the events and the feature snapshots, before anything is built."""
    as_of = parse_time(as_of_iso, utc_now())
    report = quality.check_events(settings.warehouse_path, as_of, settings.quality)
    families = FAMILIES + tuple(
        d.to_family()
        for d in feature_registry.registered_definitions(settings.feature_definitions_dir)
    )
    report += quality.check_features(settings.features_dir, settings.quality, families)
    _publish_quality(report, "inputs")
    return report


@task(cache_policy=NO_CACHE)
def check_training_frame(
    settings: Settings, frame: pd.DataFrame, features: list[str], inputs: quality.QualityReport
) -> quality.QualityReport:
    """Checks on the training set, added to the input checks (the version's tag)."""
    report = quality.check_training_set(frame, settings.quality, features)
    _publish_quality(report, "training set")
    return inputs + report


@task(cache_policy=NO_CACHE)
def gate(
    settings: Settings, version: str, table: pd.DataFrame, champion: tuple
) -> tuple[bool, str]:
    champion_version, champion_ndcg = champion
    return registry.promote_if_better(
        settings,
        version,
        float(table.loc["xgboost", "ndcg@10"]),
        champion_ndcg,
        champion_version,
        baseline_ndcg=float(table.loc["most_popular", "ndcg@10"]),
    )


@task(cache_policy=NO_CACHE)
def already_trained(settings: Settings, frame: pd.DataFrame) -> TrainResult | None:
    """The existing version for this training set and code, so a rerun adds no duplicate."""
    version = registry.version_trained_on(
        settings, registry.frame_hash(frame), registry.code_version()
    )
    if version is None:
        return None
    client = registry.client_for(settings)
    result = TrainResult(
        version=version,
        run_id=client.get_model_version(settings.model_name, version).run_id,
        promoted=False,
        reason=f"training set and code unchanged since v{version}: no new version trained",
        champion_version=registry.current_champion_version(client, settings.model_name),
        table=registry.evaluation_of(settings, version),
        summary=dataset.training_set_summary(frame),
    )
    print(f"ranker v{version} reused: {result.reason}")
    return result


def _markdown(result: TrainResult) -> str:
    table = result.table[["ndcg@10", "map@10", "recall@10", "mrr", "coverage@10"]].round(4)
    verdict = "promoted to champion" if result.promoted else "not promoted"
    return (
        f"# Training: ranker v{result.version} ({verdict})\n\n{result.reason}\n\n"
        f"Test split, same candidates for every scorer:\n\n{table.to_markdown()}\n"
    )


@flow(name="train-ranker", log_prints=True)
def train_flow(as_of: str | None = None, home: str | None = None) -> TrainResult:
    """Train on everything before ``as_of``; register; promote if it beats the champion."""
    settings = flow_settings(home)
    as_of_dt = floor_to(parse_time(as_of, utc_now()), settings.snapshot_every.total_seconds())
    times = split(settings, as_of_dt.isoformat())
    inputs = check_inputs(settings, as_of_dt.isoformat())
    frame, features = training_set(settings, times)
    quality_report = check_training_frame(settings, frame, features, inputs)
    reused = already_trained(settings, frame)
    if reused is not None:
        return reused
    trained = fit(settings, frame, features)
    test = frame[frame["split"] == "test"]
    table, by_segment = evaluate_on_test(settings, test, trained, times.test_start)
    champion = champion_on_test(settings, test)
    run_id, version = log_model(settings, trained, frame, table, by_segment, times, quality_report)
    promoted, reason = gate(settings, version, table, champion)
    result = TrainResult(
        version=version,
        run_id=run_id,
        promoted=promoted,
        reason=reason,
        champion_version=version if promoted else champion[0],
        table=table,
        summary=dataset.training_set_summary(frame),
    )
    print(f"ranker v{version}: {reason}")
    create_markdown_artifact(_markdown(result), key="training", description="Training summary")
    return result
