"""Scheduled deployments, served by one long-running process (``ranking schedule``).

Features refresh hourly, the ranker retrains daily and drift is checked hourly (cron,
UTC); a drift breach starts a training run. ``prefect deployment
run 'build-features/features-hourly'`` starts one run by hand while this is serving.
``prefect.yaml`` declares the same deployments for a process work pool and
``prefect worker start`` (a test holds its names, crons and tags equal to these).
"""

from __future__ import annotations

from prefect import serve
from prefect.schedules import Cron

from flows.features import features_flow
from flows.monitor import monitor_flow
from flows.train import train_flow

FEATURES_CRON = "0 * * * *"
TRAINING_CRON = "0 2 * * *"
MONITOR_CRON = "30 * * * *"


def deployments(
    features_cron: str = FEATURES_CRON,
    training_cron: str = TRAINING_CRON,
    monitor_cron: str = MONITOR_CRON,
) -> list:
    """The platform's deployments with their schedules."""
    return [
        features_flow.to_deployment(
            name="features-hourly",
            schedule=Cron(features_cron, timezone="UTC"),
            tags=["ranking", "features"],
        ),
        train_flow.to_deployment(
            name="training-daily",
            schedule=Cron(training_cron, timezone="UTC"),
            tags=["ranking", "training"],
        ),
        monitor_flow.to_deployment(
            name="monitor-hourly",
            schedule=Cron(monitor_cron, timezone="UTC"),
            tags=["ranking", "monitoring"],
        ),
    ]


def serve_all(
    features_cron: str = FEATURES_CRON,
    training_cron: str = TRAINING_CRON,
    monitor_cron: str = MONITOR_CRON,
) -> None:
    """Register the deployments and run them on schedule until interrupted."""
    serve(*deployments(features_cron, training_cron, monitor_cron))


if __name__ == "__main__":
    serve_all()
