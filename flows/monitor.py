"""Monitoring flow: drift of the champion's inputs and scores; a breach can retrain."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException
from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import floor_to, flow_settings, parse_time, utc_now
from flows.train import TrainResult, train_flow
from ranking import monitor, registry, store
from ranking.config import Settings

MONITORING_EXPERIMENT = "ranking-monitoring"


@dataclass
class MonitorResult:
    """What one monitoring run found and did."""

    status: str  # 'no champion', 'not enough data', 'ok', 'warn' or 'breach'
    model_version: str | None
    counts: dict[str, int]
    json_path: str | None
    html_path: str | None
    retrained: TrainResult | None


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def measure(settings: Settings, as_of_iso: str) -> tuple[str, monitor.MonitorOutput] | None:
    champion = registry.load_champion(settings)
    if champion is None:
        return None
    as_of = parse_time(as_of_iso, utc_now())
    try:
        reference = registry.load_frame_artifact(settings, champion.version, "drift_reference")
    except (MlflowException, OSError) as exc:
        raise RuntimeError(
            f"ranker v{champion.version} has no drift reference (trained before monitoring "
            f"existed?): retrain it. {exc}"
        ) from None
    start, end = monitor.monitor_window(as_of, settings.monitor_window_days)
    current = monitor.recent_candidates(settings, store.get_store(settings), champion, start, end)
    out_dir = settings.monitoring_dir / f"{as_of:%Y%m%dT%H%M}"
    output = monitor.compare_and_report(
        settings, reference, current, champion.features, out_dir,
        title=f"Drift of ranker v{champion.version}: {start:%Y-%m-%d %H:%M} to "
        f"{end:%Y-%m-%d %H:%M} vs its training reference",
    )  # fmt: skip
    return champion.version, output


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def log_to_mlflow(settings: Settings, version: str, output: monitor.MonitorOutput,
                  as_of_iso: str) -> None:  # fmt: skip
    """A run in the monitoring experiment, tagged with the champion version it watched."""
    client = registry.client_for(settings)
    experiment = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            MONITORING_EXPERIMENT, artifact_location=settings.mlflow_artifact_location
        )
    )
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"drift {as_of_iso}"):
        mlflow.set_tags({"model_name": settings.model_name, "model_version": version,
                         "as_of": as_of_iso, "breached": str(output.report.breached)})  # fmt: skip
        metrics = {"breached": float(output.report.breached)}
        for f in output.report.features:
            for stat in ("psi", "js", "null_rate_cur"):
                value = getattr(f, stat)
                if value is not None and value == value:  # skip None and NaN
                    metrics[f"{stat}_{f.name}"] = float(value)
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(output.json_path))
        mlflow.log_artifact(str(output.html_path))


@flow(name="monitor-drift", log_prints=True)
def monitor_flow(as_of: str | None = None, home: str | None = None) -> MonitorResult:
    """Compare recent candidates with the champion's reference; retrain on a breach."""
    settings = flow_settings(home)
    as_of_dt = floor_to(parse_time(as_of, utc_now()), 3600)
    measured = measure(settings, as_of_dt.isoformat())
    if measured is None:
        print("no champion model yet: nothing to monitor")
        return MonitorResult("no champion", None, {}, None, None, None)
    version, output = measured
    report = output.report
    log_to_mlflow(settings, version, output, as_of_dt.isoformat())
    rows = [
        {"feature": f.name, "kind": f.kind, "status": f.status, "psi": f.psi, "js": f.js,
         "n_ref": f.n_ref, "n_cur": f.n_cur, "reason": f.reason}
        for f in report.features
    ]  # fmt: skip
    create_table_artifact(rows, key="drift", description=f"Drift of ranker v{version}")
    counts = report.counts()
    if report.breached:
        status = "breach"
    elif counts.get("not enough data", 0) == len(report.features):
        status = "not enough data"
    else:
        status = "warn" if report.drifted else "ok"
    print(f"drift of ranker v{version}: {status} {counts}; report {output.html_path}")
    retrained = None
    if status == "breach" and settings.retrain_on_drift:
        print("drift breach: starting the training flow")
        retrained = train_flow(as_of=as_of_dt.isoformat(), home=home)
    return MonitorResult(status, version, counts, str(output.json_path), str(output.html_path),
                         retrained)  # fmt: skip
