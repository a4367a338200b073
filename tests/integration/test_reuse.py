"""A features build over unchanged inputs writes nothing; any changed input rebuilds."""

from __future__ import annotations

from pathlib import Path

import pytest

from ranking.features.build import build_all_families
from ranking.fingerprint import warehouse_digest
from ranking.home import ensure_dirs
from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.settings import get_settings
from tests.conftest import END, NOW


@pytest.fixture
def home(tmp_path: Path, small_data: synth.SynthData):
    settings = get_settings(home=tmp_path / "home")
    ensure_dirs(settings)
    paths = synth.write(small_data, settings.raw_dir)
    ingest(settings.warehouse_path, paths["events"], settings.event_types, NOW, paths["items"])
    return settings


def _states(settings) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in settings.features_dir.glob("*.parquet")}


def test_an_unchanged_build_is_reused_and_any_new_input_rebuilds(home, tmp_path) -> None:
    first = build_all_families(home, END)
    written = _states(home)
    assert not first.reused and len(written) == 4
    again = build_all_families(home, END)
    assert again.reused and again.rows == first.rows and again.snapshots == first.snapshots
    assert _states(home) == written  # not one file rewritten
    forced = build_all_families(home, END, force=True)  # `ranking features --force`
    assert not forced.reused and forced.rows == first.rows and _states(home) != written

    changed = home.updated(features={"decay_half_life_days": 3.0})
    assert not build_all_families(changed, END).reused  # a setting the build reads
    assert not build_all_families(home, first.snapshots[-2]).reused  # another as-of time

    before = warehouse_digest(home.warehouse_path)
    extra = tmp_path / "extra.csv"
    extra.write_text("user_id,item_id,event_type,event_timestamp\nu-new,i-new,click,"
                     f"{(END - (END - first.snapshots[-1]) / 2):%Y-%m-%dT%H:%M:%S}\n")  # fmt: skip
    assert ingest(home.warehouse_path, extra, home.event_types, NOW)[0].accepted == 1
    assert warehouse_digest(home.warehouse_path) != before
    assert not build_all_families(home, END).reused  # new data
    assert build_all_families(home, END).reused

    (home.features_dir / "item_stats.parquet").unlink()  # a snapshot file gone: rebuilt
    assert not build_all_families(home, END).reused
