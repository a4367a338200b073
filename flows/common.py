"""What every flow shares: settings and the run's clock."""

from __future__ import annotations

from datetime import UTC, datetime

from ranking.config import Settings, get_settings
from ranking.dataset import floor_to

__all__ = ["floor_to", "flow_settings", "parse_time", "utc_now"]


def flow_settings(home: str | None = None) -> Settings:
    """Settings from the environment, optionally for another home folder."""
    settings = get_settings(home=home) if home else get_settings()
    settings.ensure_dirs()
    settings.export_env()
    return settings


def utc_now() -> datetime:
    """The flow's clock, read once per run and passed down as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def parse_time(value: str | datetime | None, default: datetime) -> datetime:
    """A naive-UTC datetime from an ISO string (flow parameter), or ``default``."""
    if value is None:
        return default
    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed
