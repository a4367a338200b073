"""Homes the integration tests share the making of: the generated events ingested,
every family's daily snapshots built up to ``END``, and ``feast apply`` run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from ranking.features import snapshots as features
from ranking.features import store
from ranking.features.snapshots import FeatureBuild
from ranking.home import ensure_dirs
from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.settings import Settings, get_settings
from tests.conftest import END, NOW


def applied_home(home: Path, data: synth.SynthData, **overrides) -> tuple[Settings, FeatureBuild]:
    """A home on ``data`` with its snapshots built and the Feast repo applied."""
    settings = get_settings(home=home, **overrides)
    ensure_dirs(settings)
    paths = synth.write(data, settings.raw_dir)
    ingest(settings.warehouse_path, paths["events"], settings.event_types, NOW, paths["items"])
    build = features.build_feature_tables(
        settings.warehouse_path, settings.features_dir, END, timedelta(days=1), 7.0
    )
    store.apply_repo(settings)
    return settings, build


def newest_window(settings: Settings, build: FeatureBuild) -> tuple[datetime, datetime]:
    """The materialization window of the newest snapshot, in UTC."""
    start, end = store.materialize_window(build.snapshots, settings.features.snapshot_every)
    return start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
