"""Time helpers. The library never reads the clock: callers pass "now" in as naive UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def naive_utc(moment: datetime) -> datetime:
    """Naive UTC, the warehouse's convention (an aware time is converted)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def parse_time(value: str | datetime | None, default: datetime) -> datetime:
    """A naive-UTC datetime from an ISO string (flow parameter), or ``default``."""
    if value is None:
        return default
    return naive_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def floor_to(moment: datetime, every_s: float) -> datetime:
    """``moment`` (naive UTC) rounded down to a multiple of ``every_s`` seconds since 1970."""
    epoch = moment.replace(tzinfo=UTC).timestamp()
    return datetime.fromtimestamp(epoch - epoch % every_s, UTC).replace(tzinfo=None)
