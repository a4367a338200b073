"""One feature refresh: every built-in family, then every registered family on the same
snapshot grid (what the scheduled features flow runs).
"""

from __future__ import annotations

from datetime import datetime

from ranking.features.registration import compute_registered
from ranking.features.snapshots import FeatureBuild, build_feature_tables, first_snapshot
from ranking.features.validation import SqlLimits
from ranking.settings import Settings


def build_all_families(settings: Settings, as_of: datetime) -> FeatureBuild:
    """Snapshots of every family up to ``as_of``; row counts per family and the grid."""
    build = build_feature_tables(
        settings.warehouse_path,
        settings.features_dir,
        as_of,
        settings.features.snapshot_every,
        settings.features.decay_half_life_days,
        first_snapshot=first_snapshot(as_of, settings.features.history_days),
    )
    build.rows |= compute_registered(
        settings.definitions_dir,
        settings.warehouse_path,
        settings.features_dir,
        as_of,
        build.snapshots,
        SqlLimits.of(settings),
    )
    return build
