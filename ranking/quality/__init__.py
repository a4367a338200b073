"""Data-quality checks: events (warehouse), feature snapshots and training sets.

Each check grades one measured number against warn / fail levels from
``settings.quality``; any ``fail`` stops a training run before anything is trained.
Nothing here reads the clock or imports Prefect: callers pass ``now`` in.
"""

from __future__ import annotations

from datetime import datetime

from ranking.checks.report import QualityReport
from ranking.features.definitions import all_families
from ranking.quality.events import check_events
from ranking.quality.features import check_features
from ranking.quality.training_set import check_training_set
from ranking.settings import Settings

__all__ = ["check_events", "check_features", "check_inputs", "check_training_set"]


def check_inputs(settings: Settings, now: datetime) -> QualityReport:
    """The checks before anything is built: the events and every family's snapshots."""
    report = check_events(settings.warehouse_path, now, settings.quality)
    families = all_families(settings.features.definitions_dir)
    return report + check_features(settings.features_dir, settings.quality, families)
