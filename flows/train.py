"""Training flow: data checks, training set through Feast, XGBoost ranker, evaluation
against the baselines, MLflow run and registered version, then the promotion gate.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import flow_settings, parse_time, retrying, run_as_of, utc_now
from ranking import quality
from ranking.checks.report import QualityReport
from ranking.evaluation.report import evaluation_tables
from ranking.features import store
from ranking.publishing import aliases, gate, models
from ranking.schema import MODEL_SCORER, TEST, TRAIN, VALID
from ranking.serving import replay
from ranking.settings import Settings
from ranking.training import dataset, distributed, rankers, reuse, tracking
from ranking.training.dataset import split_rows


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
    off_policy: gate.OffPolicyEvidence | None = None  # on the champion's logged traffic


@task(cache_policy=NO_CACHE)
def split(settings: Settings, as_of_iso: str) -> dataset.SplitTimes:
    return dataset.split_for(settings, parse_time(as_of_iso, utc_now()))


def publish_quality(report: QualityReport, stage: str) -> None:
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
def check_inputs(settings: Settings, as_of_iso: str) -> QualityReport:
    """Data checks on the events and the feature snapshots, before anything is built."""
    report = quality.check_inputs(settings, parse_time(as_of_iso, utc_now()))
    publish_quality(report, "inputs")
    return report


@task(cache_policy=NO_CACHE, **retrying(1))
def training_set(settings: Settings, times: dataset.SplitTimes):
    return dataset.build_training_set(
        settings.warehouse_path, store.get_store(settings), settings, times
    )


@task(cache_policy=NO_CACHE)
def check_training_frame(
    settings: Settings, frame: pd.DataFrame, features: list[str], inputs: QualityReport
) -> QualityReport:
    """Checks on the training set, added to the input checks (the version's tag)."""
    report = quality.check_training_frame(settings, frame, features)
    publish_quality(report, "training set")
    return inputs + report


@task(cache_policy=NO_CACHE)
def training_inputs(settings: Settings, times: dataset.SplitTimes) -> str:
    return reuse.training_inputs(settings, times)


@task(cache_policy=NO_CACHE)
def trained_on_inputs(settings: Settings, inputs: str) -> reuse.PreviousRun | None:
    """The version these very inputs trained, found before any training set is built."""
    return reuse.trained_on_inputs(settings, inputs)


@task(cache_policy=NO_CACHE)
def already_trained(settings: Settings, frame: pd.DataFrame) -> reuse.PreviousRun | None:
    """The existing version for this training set and code, so a rerun adds no duplicate."""
    return reuse.previous_run(settings, frame)


@task(cache_policy=NO_CACHE)
def fit(settings: Settings, frame: pd.DataFrame, features: list[str]) -> rankers.TrainedRanker:
    return distributed.fit_ranker(
        split_rows(frame, TRAIN), split_rows(frame, VALID), features, settings
    )


@task(cache_policy=NO_CACHE)
def evaluate_on_test(
    settings: Settings, test: pd.DataFrame, trained: rankers.TrainedRanker
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model and every baseline on the same holdout: overall and by user segment."""
    scores = {MODEL_SCORER: rankers.score(trained.model, test, trained.features)}
    return evaluation_tables(settings, test, scores)


@task(cache_policy=NO_CACHE)
def champion_on_test(settings: Settings, test: pd.DataFrame) -> gate.ChampionScore:
    return models.champion_score(settings, test, seed=settings.seed)


@task(cache_policy=NO_CACHE, **retrying(2))
def log_model(settings: Settings, trained: rankers.TrainedRanker, frame: pd.DataFrame,
              tables: dict[str, pd.DataFrame], times: dataset.SplitTimes,
              quality_report: QualityReport, summary: dict,
              inputs: str) -> tuple[str, str]:  # fmt: skip
    return tracking.log_training_run(
        settings, trained, frame, tables, times, quality_report.summary(),
        store.service_name(settings), summary, inputs,
    )  # fmt: skip


@task(cache_policy=NO_CACHE)
def off_policy_on_logged(settings: Settings, version: str,
                         as_of_iso: str) -> gate.OffPolicyEvidence | None:  # fmt: skip
    return replay.compare_version_on_logged(settings, version, parse_time(as_of_iso, None))


@task(cache_policy=NO_CACHE, **retrying(2))
def record_off_policy(settings: Settings, run_id: str, version: str,
                      evidence: gate.OffPolicyEvidence | None) -> None:  # fmt: skip
    aliases.record_off_policy(settings, run_id, version, evidence)


@task(cache_policy=NO_CACHE)
def promote(
    settings: Settings, version: str, table: pd.DataFrame, champion: gate.ChampionScore,
    off_policy: gate.OffPolicyEvidence | None = None,
) -> gate.Decision:  # fmt: skip
    """Decide with the gate, then act on the registry."""
    decision = gate.decide_from_table(table, champion, settings.publishing.promotion_margin,
                                      off_policy)  # fmt: skip
    aliases.record_decision(settings, version, decision)
    return decision


def _markdown(result: TrainResult) -> str:
    table = result.table[["ndcg@10", "map@10", "recall@10", "mrr", "coverage@10"]].round(4)
    verdict = "promoted to champion" if result.promoted else "not promoted"
    return (
        f"# Training: ranker v{result.version} ({verdict})\n\n{result.reason}\n\n"
        f"Test split, same candidates for every scorer:\n\n{table.to_markdown()}\n"
    )


def _reused(settings: Settings, previous, why: str, summary: dict | None = None) -> TrainResult:
    reason = f"{why} since v{previous.version}: no new version trained"
    print(f"ranker v{previous.version} reused: {reason}")
    champion = aliases.champion_version(settings)
    return TrainResult(previous.version, previous.run_id, False, reason, champion,
                       previous.table, summary or {})  # fmt: skip


@flow(name="train-ranker", log_prints=True)
def train_flow(as_of: str | None = None, home: str | None = None) -> TrainResult:
    """Train on everything before ``as_of``; register; promote if it beats the champion."""
    settings = flow_settings(home)
    as_of_dt = run_as_of(settings, as_of)
    times = split(settings, as_of_dt.isoformat())
    inputs = check_inputs(settings, as_of_dt.isoformat())
    digest = training_inputs(settings, times)
    previous = trained_on_inputs(settings, digest)
    if previous is not None:
        return _reused(settings, previous, "inputs (data, features, settings, code) unchanged")
    frame, features = training_set(settings, times)
    quality_report = check_training_frame(settings, frame, features, inputs)
    summary = dataset.training_set_summary(frame)
    previous = already_trained(settings, frame)
    if previous is not None:
        return _reused(settings, previous, "training set and code unchanged", summary)
    trained = fit(settings, frame, features)
    test = split_rows(frame, TEST)
    table, by_segment = evaluate_on_test(settings, test, trained)
    champion = champion_on_test(settings, test)
    tables = {"evaluation": table, "evaluation_by_segment": by_segment,
              "data_quality": quality_report.to_frame()}  # fmt: skip
    run_id, version = log_model(settings, trained, frame, tables, times, quality_report, summary,
                                digest)  # fmt: skip
    off_policy = off_policy_on_logged(settings, version, as_of_dt.isoformat())
    record_off_policy(settings, run_id, version, off_policy)
    decision = promote(settings, version, table, champion, off_policy)
    result = TrainResult(
        version=version,
        run_id=run_id,
        promoted=decision.promote,
        reason=decision.reason,
        champion_version=version if decision.promote else champion.version,
        table=table,
        summary=summary,
        off_policy=off_policy,
    )
    print(f"ranker v{version}: {decision.reason}")
    create_markdown_artifact(_markdown(result), key="training", description="Training summary")
    return result
