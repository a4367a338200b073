"""Drift monitoring of the serving model: its reference sample against recent candidates.

The reference is logged with each model version at training time: a seeded sample of its
validation rows (the most recent rows built exactly like training rows), with features,
item category and the model's score. The current sample is built the same way from the
last ``monitor_window_days`` (the retrieved candidates of users who acted, or the items
they met plus sampled negatives, as training does), features from
Feast as of their time (that is, the newest snapshots), scored by the champion. Comparing
like with like keeps the alarm about the data, not about how the rows were made.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from ranking.checks.limits import SEVERITY
from ranking.monitoring import drift
from ranking.monitoring.html_report import link_run, write_html_report
from ranking.publishing.champion import Champion
from ranking.publishing.models import load_champion
from ranking.settings import Settings
from ranking.training import dataset
from ranking.training.tracking import client_for, load_frame_artifact, reference_sample
from ranking.warehouse import warehouse

#: The MLflow experiment that holds one run per monitoring check.
MONITORING_EXPERIMENT = "ranking-monitoring"


def recent_candidates(
    settings: Settings, store, champion: Champion, start: datetime, end: datetime
) -> pd.DataFrame:
    """Rows built like training rows for ``[start, end)``, with features, scored."""
    with warehouse(settings.warehouse_path, read_only=True) as con:
        frame = dataset.query_group_rows(con, settings, start, end, end)
    if frame.empty:
        return pd.DataFrame(columns=["category", *champion.features, "score"])
    frame, _ = dataset.with_features(store, frame, champion.feature_service)
    return reference_sample(
        frame, champion.model, champion.features, settings.monitoring.reference_rows, settings.seed
    )


@dataclass
class MonitorOutput:
    """One monitoring run: the drift report and where its files are."""

    report: drift.DriftReport
    json_path: Path
    html_path: Path


def compare_and_report(
    settings: Settings,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    out_dir: Path,
    title: str,
) -> MonitorOutput:
    """Drift of every feature, the category mix and the score; JSON and HTML written."""
    report = drift.detect_drift(
        reference,
        current,
        numeric=[f for f in features if f in reference.columns],
        categorical=["category"],
        thresholds=settings.monitoring.drift,
        score_column="score",
    )
    report = cap_trending(report, settings.monitoring.trending_features)
    out_dir = _unused(out_dir)  # a second run at the same time never overwrites the first
    out_dir.mkdir(parents=True)
    json_path = out_dir / "drift.json"
    json_path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    html_path = write_html_report(report, reference, current, out_dir / "drift.html",
                                  title=title, rule=rule_text(settings))  # fmt: skip
    return MonitorOutput(report, json_path, Path(html_path))


def _unused(folder: Path) -> Path:
    """``folder``, or ``folder-2``, ``folder-3``... the first that does not exist yet."""
    n, candidate = 1, folder
    while candidate.exists():
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    return candidate


def rule_text(settings: Settings) -> str:
    """The warn / fail rule of the report, in one sentence, with this home's levels."""
    t = settings.monitoring.drift
    return (
        f"A numeric column or the score warns at PSI >= {t.psi_warn:g} and fails at PSI >= "
        f"{t.psi_fail:g}, if a KS test also gives p < {t.ks_pvalue:g}; the category mix warns "
        f"at Jensen-Shannon >= {t.js_warn:g} and fails at >= {t.js_fail:g}, if chi-square "
        f"gives p < {t.chi2_pvalue:g}; a null share moving by {t.null_rate_warn:g} / "
        f"{t.null_rate_fail:g} (p < {t.null_pvalue:g}) warns / fails; under "
        f"{t.min_samples} rows is 'not enough data'; counts that grow by construction "
        "(all-history counts, ages) stop at warn."
    )


def cap_trending(report: drift.DriftReport, patterns: list[str]) -> drift.DriftReport:
    """Downgrade 'fail' to 'warn' for features that trend by construction (see settings)."""
    for f in report.features:
        if f.status == "fail" and any(fnmatch.fnmatch(f.name, p) for p in patterns):
            f.status = "warn"
            f.reason = f"{f.reason}; capped at warn: grows with time by construction"
    return report


def measure_champion(
    settings: Settings, store, as_of: datetime
) -> tuple[str, MonitorOutput] | None:
    """Drift of the champion over the window before ``as_of``; None without a champion."""
    champion = load_champion(settings)
    if champion is None:
        return None
    try:
        reference = load_frame_artifact(settings, champion.version, "drift_reference")
    except (MlflowException, OSError) as exc:
        raise RuntimeError(
            f"ranker v{champion.version} has no drift reference (trained before monitoring "
            f"existed?): retrain it. {exc}"
        ) from None
    start, end = monitor_window(as_of, settings.monitoring.window_days)
    current = recent_candidates(settings, store, champion, start, end)
    output = compare_and_report(
        settings, reference, current, champion.features,
        settings.monitoring_dir / f"{as_of:%Y%m%dT%H%M}",
        title=f"Drift of ranker v{champion.version}: {start:%Y-%m-%d %H:%M} to "
        f"{end:%Y-%m-%d %H:%M} vs its training reference",
    )  # fmt: skip
    return champion.version, output


def monitor_window(as_of: datetime, days: int) -> tuple[datetime, datetime]:
    """The ``current`` window: the ``days`` before ``as_of``."""
    return as_of - timedelta(days=days), as_of


def status_of(report: drift.DriftReport) -> str:
    """'breach' (any fail), 'not enough data' (for every column), 'warn' or 'ok'."""
    if report.breached:
        return "breach"
    if report.counts().get("not enough data", 0) == len(report.features):
        return "not enough data"
    return "warn" if report.drifted else "ok"


def alarms(report: drift.DriftReport) -> list[str]:
    """One line per column that drifted (fail, then warn), naming it and saying why."""
    drifted = [f for f in report.features if f.status in ("fail", "warn")]
    drifted.sort(key=lambda f: (-SEVERITY[f.status], f.name))
    return [f"{f.name}: {f.status} ({f.reason})" if f.reason else f"{f.name}: {f.status}"
            for f in drifted]  # fmt: skip


def mlflow_ui_url(settings: Settings) -> str:
    """The MLflow UI: the tracking server when there is one, else where ``ranking ui``
    starts it."""
    uri = settings.publishing.mlflow_uri or ""
    return uri if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"


def log_drift_run(settings: Settings, version: str, output: MonitorOutput, as_of: str) -> str:
    """A run in the monitoring experiment, tagged with the champion version it watched."""
    client = client_for(settings)
    experiment = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            MONITORING_EXPERIMENT, artifact_location=settings.mlflow_artifact_location
        )
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"drift {as_of}") as run:
        mlflow.set_tags({"model_name": settings.publishing.model_name, "model_version": version,
                         "as_of": as_of, "breached": str(output.report.breached)})  # fmt: skip
        metrics = {"breached": float(output.report.breached)}
        for f in output.report.features:
            for stat in ("psi", "js", "null_rate_cur"):
                value = getattr(f, stat)
                if value is not None and value == value:  # skip None and NaN
                    metrics[f"{stat}_{f.name}"] = float(value)
        mlflow.log_metrics(metrics)
        link_run(output.html_path, mlflow_ui_url(settings), experiment_id, run.info.run_id)
        mlflow.log_artifact(str(output.json_path))
        mlflow.log_artifact(str(output.html_path))
    return run.info.run_id
