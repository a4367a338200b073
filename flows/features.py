"""Features flow: compute snapshots (DuckDB), ``feast apply``, materialize online."""

from __future__ import annotations

from datetime import UTC

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.common import floor_to, flow_settings, parse_time, utc_now
from ranking import features, store
from ranking.config import Settings


@task
def compute(settings: Settings, as_of_iso: str) -> features.FeatureBuild:
    as_of = parse_time(as_of_iso, utc_now())
    return features.build_feature_tables(
        settings.warehouse_path,
        settings.features_dir,
        as_of,
        settings.snapshot_every,
        settings.decay_half_life_days,
        first_snapshot=features.first_snapshot(as_of, settings.history_days),
    )


@task(retries=2, retry_delay_seconds=5)
def apply(settings: Settings) -> bool:
    applied = store.apply_if_changed(settings)
    print("feast apply: ran" if applied else "feast apply: repo unchanged, registry kept")
    return applied


@task(retries=2, retry_delay_seconds=5)
def materialize(settings: Settings, build: features.FeatureBuild) -> None:
    start, end = store.materialize_window(build.snapshots, settings.snapshot_every)
    store.materialize_latest(
        store.get_store(settings), start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
    )


@flow(name="build-features", log_prints=True)
def features_flow(as_of: str | None = None, home: str | None = None) -> features.FeatureBuild:
    """Snapshot features up to ``as_of`` (default: now, floored to the cadence)."""
    settings = flow_settings(home)
    cadence_s = settings.snapshot_every.total_seconds()
    as_of_dt = floor_to(parse_time(as_of, utc_now()), cadence_s)
    build = compute(settings, as_of_dt.isoformat())
    apply(settings)
    materialize(settings, build)
    print(f"{len(build.snapshots)} snapshots up to {as_of_dt:%Y-%m-%d %H:%M}: {build.rows}")
    table = "\n".join(f"| {name} | {n:,} |" for name, n in build.rows.items())
    create_markdown_artifact(
        f"# Features up to {as_of_dt:%Y-%m-%d %H:%M} UTC\n\n{len(build.snapshots)} snapshots, "
        f"newest {max(build.snapshots):%Y-%m-%d %H:%M}.\n\n| feature view | rows |\n|---|---:|\n"
        + table,
        key="features",
        description="Feature snapshot row counts",
    )
    return build
