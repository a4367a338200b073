"""Registering a feature family: backfill it, add a service version, undo on failure."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ranking.errors import DefinitionError
from ranking.features.definitions import (
    BASE_SERVICE,
    SERVICE_PREFIX,
    FeatureDefinition,
    load_services,
    registered_definitions,
    services_path,
)
from ranking.features.families import FAMILIES
from ranking.features.validation import SqlLimits, run_definition, validate


def validated_definition(
    definitions_dir: Path,
    name: str,
    snapshot_every: timedelta,
    limits: SqlLimits = SqlLimits(),
    warehouse_path: Path | None = None,
) -> FeatureDefinition:
    """The definition, once every check passed and its cadence is the platform's."""
    validation = validate(definitions_dir, name, limits, warehouse_path)
    if not validation.ok:
        raise DefinitionError("\n".join(validation.problems))
    definition = validation.definition
    if abs(definition.cadence_days * 86400 - snapshot_every.total_seconds()) > 1:
        raise DefinitionError(
            f"definition {name!r}: cadence_days: {definition.cadence_days} differs from the "
            f"platform's snapshot cadence ({snapshot_every})"
        )
    return definition


def compute_definition(
    definition: FeatureDefinition,
    warehouse_path: Path,
    features_dir: Path,
    as_of: datetime,
    snapshots: list[datetime],
    limits: SqlLimits = SqlLimits(),
) -> int:
    """Backfill: the family's values at every snapshot, written atomically as Parquet."""
    frame = run_definition(definition, warehouse_path, as_of, snapshots, limits)
    target = Path(features_dir) / f"{definition.name}.parquet"
    tmp = target.with_suffix(".parquet.tmp")
    try:  # an interrupted or failed write leaves no temporary file behind
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return len(frame)


@contextmanager
def restored_on_failure(definitions_dir: Path, features_dir: Path, family: str) -> Iterator[None]:
    """Put ``services.yaml`` back and drop ``family``'s backfill if the block raises."""
    services = services_path(definitions_dir)
    before = services.read_text() if services.exists() else None
    try:
        yield
    except BaseException:
        if before is None:
            services.unlink(missing_ok=True)
        else:
            services.write_text(before)
        (Path(features_dir) / f"{family}.parquet").unlink(missing_ok=True)
        raise


def snapshot_grid(features_dir: Path) -> list[datetime]:
    """The snapshot times of the built-in families (what a new family is backfilled on)."""
    path = FAMILIES[0].parquet_path(Path(features_dir))
    if not path.exists():
        raise DefinitionError(f"{path}: no feature snapshots yet: run `ranking features` first")
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"SELECT DISTINCT (event_timestamp AT TIME ZONE 'UTC') FROM read_parquet('{path}') "
            "ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def compute_registered(
    definitions_dir: Path,
    warehouse_path: Path,
    features_dir: Path,
    as_of: datetime,
    snapshots: list[datetime],
    limits: SqlLimits = SqlLimits(),
) -> dict[str, int]:
    """Recompute every registered family on the given snapshots (the features flow)."""
    return {
        d.name: compute_definition(d, warehouse_path, features_dir, as_of, snapshots, limits)
        for d in registered_definitions(definitions_dir)
    }


def add_service_version(definitions_dir: Path, family: str) -> str:
    """Append a service version = the newest one plus ``family``; returns its name."""
    services = load_services(definitions_dir)
    newest = list(services)[-1]
    if family in services[newest]:
        return newest
    name = f"{SERVICE_PREFIX}{int(newest.removeprefix(SERVICE_PREFIX)) + 1}"
    services[name] = [*services[newest], family]
    extra = {k: v for k, v in services.items() if k != BASE_SERVICE}
    services_path(definitions_dir).write_text(yaml.safe_dump(extra, sort_keys=False))
    return name
