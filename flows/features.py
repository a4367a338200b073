"""Features flow: compute snapshots (DuckDB), ``feast apply``, materialize online."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import floor_to, flow_settings, parse_time, utc_now
from ranking import feature_registry, features, store
from ranking.config import Settings


@task
def compute(settings: Settings, as_of_iso: str) -> features.FeatureBuild:
    """Built-in families, then every registered family on the same snapshot grid."""
    as_of = parse_time(as_of_iso, utc_now())
    build = features.build_feature_tables(
        settings.warehouse_path,
        settings.features_dir,
        as_of,
        settings.snapshot_every,
        settings.decay_half_life_days,
        first_snapshot=features.first_snapshot(as_of, settings.history_days),
    )
    build.rows |= feature_registry.compute_registered(
        settings.feature_definitions_dir,
        settings.warehouse_path,
        settings.features_dir,
        as_of,
        build.snapshots,
    )
    return build


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


@dataclass
class Registration:
    """What registering a feature family did."""

    family: str
    features: list[str]
    service: str
    rows: int


@task(cache_policy=NO_CACHE)
def validate_definition(settings: Settings, name: str) -> feature_registry.FeatureDefinition:
    validation = feature_registry.validate(settings.feature_definitions_dir, name)
    if not validation.ok:
        raise feature_registry.DefinitionError("\n".join(validation.problems))
    definition = validation.definition
    if abs(definition.cadence_days * 86400 - settings.snapshot_every.total_seconds()) > 1:
        raise feature_registry.DefinitionError(
            f"definition {name!r}: cadence_days: {definition.cadence_days} differs from the "
            f"platform's snapshot cadence ({settings.snapshot_every})"
        )
    return definition


@flow(name="register-feature", log_prints=True)
def register_flow(name: str, as_of: str | None = None, home: str | None = None) -> Registration:
    """Validate a definition, backfill it, add it to a new service version, apply, materialize.

    Nothing is written before the definition passes validation; if ``feast apply``
    fails, the service list and the backfilled file are put back as they were.
    """
    settings = flow_settings(home)
    definition = validate_definition(settings, name)
    as_of_dt = floor_to(parse_time(as_of, utc_now()), settings.snapshot_every.total_seconds())
    snapshots = [s for s in feature_registry.snapshot_grid(settings.features_dir) if s <= as_of_dt]
    try:
        with feature_registry.restored_on_failure(
            settings.feature_definitions_dir, settings.features_dir, name
        ):
            rows = feature_registry.compute_definition(
                definition, settings.warehouse_path, settings.features_dir, as_of_dt, snapshots
            )
            service = feature_registry.add_service_version(settings.feature_definitions_dir, name)
            apply(settings)
    except Exception:
        apply(settings)  # the Feast registry back to the restored definitions
        raise
    materialize(settings, features.FeatureBuild(rows={name: rows}, snapshots=snapshots))
    names = [f.name for f in definition.features]
    print(f"registered {name} ({', '.join(names)}): {rows:,} rows backfilled, service {service}")
    create_markdown_artifact(
        f"# Registered {name}\n\nFeatures: {', '.join(names)}\n\nOwner: {definition.owner}\n\n"
        f"Backfilled {rows:,} rows on {len(snapshots)} snapshots; new feature service "
        f"`{service}`.",
        key="feature-registration",
        description=f"Feature family {name} registered",
    )
    return Registration(name, names, service, rows)
