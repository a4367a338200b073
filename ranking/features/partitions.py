"""The feature build past one process's memory: the events split by a hash of each
family's key, each part computed by DuckDB on its own (a Dask worker, when the features
flow fans the parts out), then the parts combined into the very files one process writes.

Every row of a built-in family depends on the events of one key only (a user for the user
and user x category families, an item for the item family), so a part holds whole rows;
only the snapshot grid is shared, and it is laid from the first event of all events
(:func:`first_event`). The registered families then run on the combined grid as in the
single-process build.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from ranking.features.families import FAMILIES
from ranking.features.snapshots import (
    FeatureBuild,
    compute_features,
    first_snapshot,
    snapshot_times,
)
from ranking.features.specs import Partition
from ranking.settings import Settings
from ranking.warehouse import scalar, scratch, warehouse

PARTS_DIR = ".parts"  # under the features folder, removed once the parts are combined


def plan_partitions(count: int) -> list[Partition]:
    """Every part of every built-in entity: ``count`` per entity."""
    if count < 1:
        raise ValueError("need at least one partition")
    entities = dict.fromkeys(family.entity for family in FAMILIES)
    return [Partition(entity, k, count) for entity in entities for k in range(count)]


def first_event(warehouse_path: Path, as_of: datetime) -> datetime | None:
    """The first event before ``as_of``: where every part's snapshot grid starts."""
    with warehouse(warehouse_path, read_only=True) as con:
        return scalar(con, "SELECT min(event_timestamp) FROM events WHERE event_timestamp < ?",
                      [as_of])  # fmt: skip


def part_dir(features_dir: Path, partition: Partition) -> Path:
    return Path(features_dir) / PARTS_DIR / f"{partition.entity}-{partition.index:04d}"


def compute_partition(
    settings: Settings, partition: Partition, as_of: datetime, first_event_at: datetime | None
) -> FeatureBuild:
    """The rows of one part of its entity's families up to ``as_of``, written under the
    parts folder; row counts per family and the snapshot grid (laid from
    ``first_event_at``, :func:`first_event`)."""
    families = tuple(f for f in FAMILIES if f.entity == partition.entity)
    features = settings.features
    with warehouse(settings.warehouse_path, read_only=True) as con:  # temp tables: never blocks
        rows = compute_features(con, part_dir(settings.features_dir, partition), as_of,
                                features.snapshot_every, features.decay_half_life_days,
                                families, first_snapshot(as_of, features.history_days),
                                partition, first_event_at)  # fmt: skip
        return FeatureBuild(rows=rows, snapshots=snapshot_times(con))


def combine_partitions(
    features_dir: Path, partitions: list[Partition], parts: list[FeatureBuild]
) -> FeatureBuild:
    """Each family's parts as the one file (rows and order) a single process writes;
    the parts folder is removed. ``parts`` are :func:`compute_partition`'s results."""
    grids = {tuple(part.snapshots) for part in parts}
    if len(grids) != 1:
        raise ValueError("the parts were computed on different snapshot grids")
    features_dir = Path(features_dir)
    rows: dict[str, int] = {}
    with scratch() as con:
        for family in FAMILIES:
            files = [str(part_dir(features_dir, p) / f"{family.name}.parquet")
                     for p in partitions if p.entity == family.entity]  # fmt: skip
            target = family.parquet_path(features_dir)
            tmp = target.with_suffix(".parquet.tmp")
            keys = ", ".join(family.entity_keys)
            try:
                con.execute(f"COPY (SELECT * FROM read_parquet(?) ORDER BY event_timestamp, "
                            f"{keys}) TO '{tmp}' (FORMAT parquet)", [files])  # fmt: skip
                tmp.replace(target)
            finally:
                tmp.unlink(missing_ok=True)
            rows[family.name] = sum(part.rows.get(family.name, 0) for part in parts)
    shutil.rmtree(features_dir / PARTS_DIR, ignore_errors=True)
    return FeatureBuild(rows=rows, snapshots=list(grids.pop()))
