"""Shared fixtures: a settings object per test on a temporary home, small generated data."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from ranking.home import ensure_dirs
from ranking.ingest import synth
from ranking.ingest.profile import fit_settings, profile_of
from ranking.settings import Settings, get_settings

#: A fixed clock for tests: library code never reads the real one.
NOW = datetime(2026, 3, 1, 12, 0, 0)
END = datetime(2026, 3, 1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def fitted(home: Path, **overrides) -> Settings:
    """The settings the flows and commands use on ``home``: those left unset derived from
    its data (``ranking.ingest.profile``), so a test reads what the commands wrote."""
    settings = get_settings(home=home, **overrides)
    return fit_settings(settings, profile_of(settings.warehouse_path))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a fresh home, with splits sized for three weeks of data."""
    s = get_settings(
        home=tmp_path / "home",
        training={"valid_window": "P5D", "test_window": "P5D", "n_estimators": 60},
    )
    ensure_dirs(s)
    return s


@pytest.fixture(scope="session")
def small_data() -> synth.SynthData:
    """About 20k events over three weeks ending at END (seeded)."""
    return synth.generate(synth.SynthConfig(events=20_000, days=21, end=END, seed=11))
