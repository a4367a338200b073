"""The partitioned feature build writes what one process writes, row for row."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from ranking.features.families import FAMILIES
from ranking.features.partitions import (
    PARTS_DIR,
    combine_partitions,
    compute_partition,
    first_event,
    plan_partitions,
)
from ranking.features.snapshots import build_feature_tables
from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.settings import Settings, get_settings
from tests.conftest import END, NOW

TYPES = ["impression", "click", "view", "play", "skip", "add_to_cart", "purchase", "rating"]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("partitions")
    data = synth.generate(synth.SynthConfig(events=12_000, days=12, end=END, seed=5))
    paths = synth.write(data, root / "raw")
    ingest(root / "w.duckdb", paths["events"], TYPES, NOW, paths["items"])
    return root / "w.duckdb"


def on(warehouse_path: Path, out: Path, history_days: float | None = None) -> Settings:
    """Settings whose warehouse is ``warehouse_path`` and features folder ``out``."""
    settings = get_settings(home=out, features={"history_days": history_days})
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    settings.warehouse_path.symlink_to(warehouse_path)
    return settings


def partitioned_build(settings: Settings, count: int):
    plan = plan_partitions(count)
    first = first_event(settings.warehouse_path, END)
    parts = [compute_partition(settings, p, END, first) for p in plan]
    return combine_partitions(settings.features_dir, plan, parts)


@pytest.mark.parametrize("count", [1, 3])
def test_parts_combine_into_the_single_process_files(loaded: Path, tmp_path: Path,
                                                     count: int) -> None:  # fmt: skip
    whole = build_feature_tables(loaded, tmp_path / "one", END, timedelta(days=1), 7.0)
    settings = on(loaded, tmp_path / "parts")
    parted = partitioned_build(settings, count)
    assert parted.snapshots == whole.snapshots
    assert parted.rows == whole.rows
    for family in FAMILIES:
        expected = pd.read_parquet(family.parquet_path(tmp_path / "one"))
        got = pd.read_parquet(family.parquet_path(settings.features_dir))
        assert len(got) > 100
        pd.testing.assert_frame_equal(got, expected)  # values, types and order
    assert not (settings.features_dir / PARTS_DIR).exists()


def test_every_part_holds_its_own_keys_only(loaded: Path, tmp_path: Path) -> None:
    settings = on(loaded, tmp_path)
    first = first_event(loaded, END)
    seen: dict[str, list[set]] = {}
    for p in plan_partitions(3):
        part = compute_partition(settings, p, END, first)
        family = next(f for f in FAMILIES if f.entity == p.entity)
        keys = pd.read_parquet(settings.features_dir / PARTS_DIR / f"{p.entity}-{p.index:04d}" /
                               f"{family.name}.parquet")[p.key]  # fmt: skip
        assert len(keys) == part.rows[family.name]
        seen.setdefault(p.entity, []).append(set(keys))
    for entity, key_sets in seen.items():
        assert all(key_sets), entity  # no empty part on this data
        assert not set.intersection(*key_sets[:2]) and not key_sets[0] & key_sets[2], entity


def test_a_history_window_grid_is_kept_by_every_part(loaded: Path, tmp_path: Path) -> None:
    start = END - timedelta(days=4)
    whole = build_feature_tables(loaded, tmp_path / "one", END, timedelta(days=1), 7.0,
                                 first_snapshot=start)  # fmt: skip
    settings = on(loaded, tmp_path / "parts", history_days=4)
    parted = partitioned_build(settings, 2)
    assert parted.snapshots == whole.snapshots
    assert len(whole.snapshots) == 5
    for family in FAMILIES:
        got = pd.read_parquet(family.parquet_path(settings.features_dir))
        pd.testing.assert_frame_equal(got, pd.read_parquet(family.parquet_path(tmp_path / "one")))
