"""Monitoring flow: drift of the champion's inputs and scores; a breach can retrain."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import floor_to, flow_settings, parse_time, retrying, utc_now
from flows.train import TrainResult, train_flow
from ranking.features import store
from ranking.ingest.profile import default_as_of
from ranking.monitoring import monitor
from ranking.settings import Settings


@dataclass
class MonitorResult:
    """What one monitoring run found and did."""

    status: str  # 'no champion', 'not enough data', 'ok', 'warn' or 'breach'
    model_version: str | None
    counts: dict[str, int]
    json_path: str | None
    html_path: str | None
    retrained: TrainResult | None
    alarms: list[str] = field(default_factory=list)  # "name: level (reason)", worst first


@task(cache_policy=NO_CACHE, **retrying(1))
def measure(settings: Settings, as_of_iso: str) -> tuple[str, monitor.MonitorOutput] | None:
    as_of = parse_time(as_of_iso, utc_now())
    return monitor.measure_champion(settings, store.get_store(settings), as_of)


@task(cache_policy=NO_CACHE, **retrying(2))
def log_to_mlflow(settings: Settings, version: str, output: monitor.MonitorOutput,
                  as_of_iso: str) -> str:  # fmt: skip
    return monitor.log_drift_run(settings, version, output, as_of_iso)


@flow(name="monitor-drift", log_prints=True)
def monitor_flow(as_of: str | None = None, home: str | None = None) -> MonitorResult:
    """Compare recent candidates with the champion's reference; retrain on a breach."""
    settings = flow_settings(home)
    # Hourly for a live feed; a historic log is watched at its end.
    as_of_dt = (floor_to(parse_time(as_of, None), 3600) if as_of is not None
                else default_as_of(settings, utc_now(), live_every=timedelta(hours=1)))  # fmt: skip
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
    status = monitor.status_of(report)
    print(f"drift of ranker v{version}: {status} {counts}; report {output.html_path}")
    retrained = None
    if status == "breach" and settings.monitoring.retrain_on_drift:
        print("drift breach: starting the training flow")
        retrained = train_flow(as_of=as_of_dt.isoformat(), home=home)
    return MonitorResult(status, version, counts, str(output.json_path), str(output.html_path),
                         retrained, monitor.alarms(report))  # fmt: skip
