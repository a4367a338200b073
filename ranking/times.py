"""Time helpers. The library never reads the clock: callers pass "now" in as naive UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


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


def iso_duration(span: timedelta) -> str:
    """``span`` as the ISO 8601 duration the settings take: ``P7D``, ``PT6H``, ``PT10M``,
    ``P1DT12H``."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    if not days and not clock:
        return "PT0S"
    return "P" + (f"{days}D" if days else "") + (f"T{clock}" if clock else "")
