"""What every flow shares: settings and the run's clock."""

from __future__ import annotations

from datetime import UTC, datetime

from ranking import home as ranking_home
from ranking.settings import Settings
from ranking.times import floor_to, parse_time

__all__ = ["floor_to", "flow_settings", "parse_time", "utc_now"]


def flow_settings(home: str | None = None) -> Settings:
    """Settings from the environment, optionally for another home folder."""
    return ranking_home.load(home)


def utc_now() -> datetime:
    """The flow's clock, read once per run and passed down as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
