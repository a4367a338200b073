"""Data-quality checks: events (warehouse), feature snapshots and training sets.

Each check grades one measured number against warn / fail levels from
``settings.quality``; any ``fail`` stops a training run before anything is trained.
Nothing here reads the clock or imports Prefect: callers pass ``now`` in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd

from ranking.checks.report import QualityReport
from ranking.features.definitions import all_families
from ranking.ingest.profile import profile_of
from ranking.quality.events import check_events
from ranking.quality.features import check_features, lacking
from ranking.quality.training_set import check_training_set
from ranking.settings import Settings

__all__ = [
    "check_events",
    "check_features",
    "check_inputs",
    "check_training_frame",
    "check_training_set",
]


def check_inputs(settings: Settings, now: datetime) -> QualityReport:
    """The checks before anything is built: the events and every family's snapshots, each
    judged on what the log holds (its profile)."""
    profile = profile_of(settings.warehouse_path)
    period = max(timedelta(days=1), settings.features.snapshot_every)
    report = check_events(settings.warehouse_path, now, settings.quality, profile, period)
    families = all_families(settings.definitions_dir)
    signals = None if profile is None else profile.signals
    return report + check_features(settings.features_dir, settings.quality, families, signals)


def check_training_frame(
    settings: Settings, frame: pd.DataFrame, features: Sequence[str]
) -> QualityReport:
    """The training set's checks, its features' null rates judged on what the log holds."""
    profile = profile_of(settings.warehouse_path)
    families = all_families(settings.definitions_dir)
    absent = lacking(families, None if profile is None else profile.signals)
    return check_training_set(frame, settings.quality, features, absent)
