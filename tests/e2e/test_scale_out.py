"""The features flow past one process: its parts as Prefect tasks on a Dask cluster."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.testing.utilities import prefect_test_harness

from flows.features import features_flow
from ranking.features.families import FAMILIES
from ranking.features.partitions import PARTS_DIR
from ranking.features.snapshots import build_feature_tables, first_snapshot
from ranking.home import ensure_dirs
from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.settings import get_settings
from tests.conftest import END, NOW, fitted

pytestmark = [pytest.mark.e2e, pytest.mark.scale]


async def _part_runs() -> list:
    """The task runs of every partitioned features flow run."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["build-features-partitioned"]))
        )
        return await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in runs]))
        )


def test_partitioned_features_on_dask_equal_the_single_process_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    settings = get_settings(home=home)
    ensure_dirs(settings)
    data = synth.generate(synth.SynthConfig(events=6_000, days=10, end=END, seed=9))
    paths = synth.write(data, settings.raw_dir)
    ingest(settings.warehouse_path, paths["events"], settings.event_types, NOW, paths["items"])
    monkeypatch.setenv("RANKING_SCALE__FEATURE_PARTITIONS", "3")
    monkeypatch.setenv("RANKING_SCALE__DASK_WORKERS", "2")
    with prefect_test_harness(server_startup_timeout=120):
        build = features_flow(as_of=END.isoformat(), home=str(home))
        tasks = asyncio.run(_part_runs())
    parts = [t for t in tasks if t.name.startswith("compute_part")]
    assert len(parts) == 3 * len({f.entity for f in FAMILIES})
    assert all(t.state_type.value == "COMPLETED" for t in parts)
    assert not (settings.features_dir / PARTS_DIR).exists()
    fitted_settings = fitted(home)
    single = build_feature_tables(
        settings.warehouse_path, tmp_path / "single", END,
        fitted_settings.features.snapshot_every, fitted_settings.features.decay_half_life_days,
        first_snapshot(END, fitted_settings.features.history_days),
    )  # fmt: skip
    assert build.snapshots == single.snapshots
    for family in FAMILIES:
        expected = pd.read_parquet(family.parquet_path(tmp_path / "single"))
        got = pd.read_parquet(family.parquet_path(settings.features_dir))
        assert len(got) > 50
        pd.testing.assert_frame_equal(got, expected)
