"""Features flow: compute snapshots (DuckDB), ``feast apply``, materialize online, and
publish retrieval's candidates at the newest snapshot for serving."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import dask_task_runner, flow_settings, parse_time, retrying, run_as_of, utc_now
from ranking.features import partitions, registration, store
from ranking.features.build import (
    build_all_families,
    build_inputs,
    finish_build,
    reused_build,
)
from ranking.features.definitions import FeatureDefinition
from ranking.features.snapshots import FeatureBuild
from ranking.features.specs import Partition
from ranking.features.validation import SqlLimits
from ranking.retrieval.published import Publication, publish_candidates, unchanged_publication
from ranking.settings import Settings
from ranking.warehouse import warehouse


@task
def compute(settings: Settings, as_of_iso: str, force: bool = False) -> FeatureBuild:
    """Built-in families, then every registered family on the same snapshot grid."""
    return build_all_families(settings, parse_time(as_of_iso, utc_now()), force)


@task
def plan_build(settings: Settings, as_of_iso: str, force: bool) -> tuple[str, FeatureBuild | None]:
    """The build's inputs digest, and the build to reuse when nothing changed."""
    inputs = build_inputs(settings, parse_time(as_of_iso, utc_now()))
    return inputs, None if force else reused_build(settings, inputs)


@task
def compute_part(settings: Settings, as_of_iso: str, part: Partition, first_event) -> FeatureBuild:
    """One part of one entity's families, by DuckDB on the worker that runs the task."""
    return partitions.compute_partition(settings, part, parse_time(as_of_iso, utc_now()),
                                        first_event)  # fmt: skip


@task
def combine(settings: Settings, as_of_iso: str, parts: list[Partition],
            built: list[FeatureBuild], inputs: str) -> FeatureBuild:  # fmt: skip
    """The parts as one file per family, then the registered families and the stamp."""
    build = partitions.combine_partitions(settings.features_dir, parts, built)
    return finish_build(settings, parse_time(as_of_iso, utc_now()), build, inputs)


@flow(name="build-features-partitioned", log_prints=True, validate_parameters=False)
def partitioned_features_flow(settings: Settings, as_of_iso: str, force: bool = False
                              ) -> FeatureBuild:  # fmt: skip
    """The built-in families in ``scale.feature_partitions`` parts per entity, each part a
    task on the flow's task runner (Dask, from the features flow); then as ``compute``."""
    inputs, kept = plan_build(settings, as_of_iso, force)
    if kept is not None:
        return kept
    parts = partitions.plan_partitions(settings.scale.feature_partitions)
    first = partitions.first_event(settings.warehouse_path, parse_time(as_of_iso, utc_now()))
    built = compute_part.map(unmapped(settings), as_of_iso, parts, unmapped(first)).result()
    return combine(settings, as_of_iso, parts, built, inputs)


@task(**retrying(2))
def apply(settings: Settings) -> bool:
    applied = store.apply_if_changed(settings)
    print("feast apply: ran" if applied else "feast apply: repo unchanged, registry kept")
    return applied


@task(**retrying(2))
def materialize(settings: Settings, build: FeatureBuild, force: bool = False) -> None:
    start, end = store.materialize_window(build.snapshots, settings.features.snapshot_every)
    report = store.materialize_latest(
        store.get_store(settings), start.replace(tzinfo=UTC), end.replace(tzinfo=UTC), force
    )
    print(report.describe())


@task(**retrying(1))
def publish_retrieval(settings: Settings, build: FeatureBuild, force: bool = False) -> Publication:
    kept = None if force else unchanged_publication(settings, max(build.snapshots), build.inputs)
    if kept is not None:
        return kept
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return publish_candidates(con, settings, max(build.snapshots), store.get_store(settings),
                                  inputs=build.inputs)  # fmt: skip


@flow(name="build-features", log_prints=True)
def features_flow(
    as_of: str | None = None, home: str | None = None, force: bool = False
) -> FeatureBuild:
    """Snapshot features up to ``as_of`` (default: now for a live feed, the end of a
    historic log; floored to the cadence). Steps whose inputs did not change since their
    last run are skipped, unless ``force``."""
    settings = flow_settings(home)
    as_of_dt = run_as_of(settings, as_of)
    if settings.scale.feature_partitions > 1:  # past one process: the parts on Dask
        on_dask = partitioned_features_flow.with_options(task_runner=dask_task_runner(settings))
        build = on_dask(settings, as_of_dt.isoformat(), force)
    else:
        build = compute(settings, as_of_dt.isoformat(), force)
    apply(settings)
    materialize(settings, build, force)
    published = publish_retrieval(settings, build, force)
    print(f"{len(build.snapshots)} snapshots up to {as_of_dt:%Y-%m-%d %H:%M}: {build.rows}")
    print(f"retrieval published at {published.at:%Y-%m-%d %H:%M}: {published.rows:,} "
          f"candidates for {published.users:,} users")  # fmt: skip
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
def validate_definition(settings: Settings, name: str) -> FeatureDefinition:
    return registration.validated_definition(
        settings.definitions_dir, name, settings.features.snapshot_every,
        SqlLimits.of(settings), settings.warehouse_path,
    )  # fmt: skip


@flow(name="register-feature", log_prints=True)
def register_flow(name: str, as_of: str | None = None, home: str | None = None) -> Registration:
    """Validate a definition, backfill it, add it to a new service version, apply, materialize.

    Nothing is written before the definition passes validation; if ``feast apply``
    fails, the service list and the backfilled file are put back as they were.
    """
    settings = flow_settings(home)
    definition = validate_definition(settings, name)
    as_of_dt = run_as_of(settings, as_of)
    snapshots = [s for s in registration.snapshot_grid(settings.features_dir) if s <= as_of_dt]
    definitions_dir = settings.definitions_dir
    try:
        with registration.restored_on_failure(definitions_dir, settings.features_dir, name):
            rows = registration.compute_definition(
                definition, settings.warehouse_path, settings.features_dir, as_of_dt, snapshots,
                SqlLimits.of(settings),
            )  # fmt: skip
            service = registration.add_service_version(definitions_dir, name)
            apply(settings)
    except Exception:
        apply(settings)  # the Feast registry back to the restored definitions
        raise
    materialize(settings, FeatureBuild(rows={name: rows}, snapshots=snapshots))
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
