"""What every flow shares: settings and the run's clock."""

from __future__ import annotations

from datetime import UTC, datetime

from ranking import home as ranking_home
from ranking.settings import Settings, get_settings
from ranking.times import floor_to, parse_time

__all__ = ["floor_to", "flow_settings", "parse_time", "utc_now"]


def flow_settings(home: str | None = None) -> Settings:
    """Settings from the environment, optionally for another home folder."""
    settings = get_settings(home=home) if home else get_settings()
    return ranking_home.prepare(settings)


def utc_now() -> datetime:
    """The flow's clock, read once per run and passed down as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
