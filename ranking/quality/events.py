"""Data checks on the warehouse's events, profiled in DuckDB SQL (10M events never leave it):
freshness, the newest day's volume against the days before it, null rates of the optional
columns, duplicated rows, unknown event types and quarantined rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from ranking.checks.report import CheckResult, QualityReport, failure, graded, pct, skipped
from ranking.checks.thresholds import QualityThresholds
from ranking.ingest.profile import DataProfile
from ranking.schema import EVENT_CONTENT_COLUMNS, OPTIONAL_EVENT_COLUMNS
from ranking.times import floor_to, naive_utc
from ranking.warehouse import warehouse

_DAY = timedelta(days=1)
#: A volume baseline spans at least this many periods (four weeks at a weekly cadence).
MIN_BASELINE_PERIODS = 4


# Events ----------------------------------------------------------------------------------
def check_events(
    warehouse_path: Path,
    now: datetime,
    thresholds: QualityThresholds | None = None,
    profile: DataProfile | None = None,
    period: timedelta = _DAY,
) -> QualityReport:
    """Freshness, volume, null rates, duplicates and quarantine shares of the warehouse.

    ``now`` is the caller's clock (naive UTC, or aware and converted). The warehouse is
    opened read-only; a missing warehouse or an empty events table is a failure. With the
    log's ``profile``, only the optional columns it claims are judged for nulls, and a
    historic log's last ``period`` (cut at its end) is not taken for a volume drop.
    """
    t = thresholds or QualityThresholds()
    now = naive_utc(now)
    path = Path(warehouse_path)
    if not path.exists():
        return QualityReport([failure("warehouse", "events", f"warehouse {path} does not exist")])
    with warehouse(path, read_only=True) as con:
        total, oldest, newest = con.execute(
            "SELECT count(*), min(event_timestamp), max(event_timestamp) FROM events"
        ).fetchall()[0]
        if total == 0:
            return QualityReport(
                [failure("row_count", "events", f"events table in {path.name} holds no rows")]
            )
        if profile is not None and profile.historic:  # complete when loaded: nothing is late
            why = f"a historic log (newest event {newest:%Y-%m-%d %H:%M}, before its first load)"
            results = [skipped("freshness_hours", "events", t.freshness_hours, why)]
        else:
            results = [_freshness(newest, now, t)]
        ended = profile is not None and profile.historic
        results += _volume(con, oldest, newest, now, t, period, ended)
        results += _null_rates(con, newest, t, profile)
        results.append(_duplicates(con, newest, t))
        results += _quarantine(con, total, t)
    return QualityReport(results)


def _freshness(newest: datetime, now: datetime, t: QualityThresholds) -> CheckResult:
    lag_h = (now - newest).total_seconds() / 3600.0
    return graded(
        "freshness_hours",
        "events",
        round(lag_h, 3),
        t.freshness_hours,
        f"newest events.event_timestamp {newest:%Y-%m-%d %H:%M:%S} is {lag_h:.1f} h before "
        f"now ({now:%Y-%m-%d %H:%M:%S})",
    )


def _volume(
    con: duckdb.DuckDBPyConnection,
    oldest: datetime,
    newest: datetime,
    now: datetime,
    t: QualityThresholds,
    period: timedelta = _DAY,
    ended: bool = False,
) -> list[CheckResult]:
    """Events of the newest complete period (a day, or the snapshot cadence when longer)
    vs the mean of the baseline periods before it.

    The newest period is the one of the newest event, or the one before it while that one
    is still running at ``now`` or the log ``ended`` inside it (a partial period is not a
    volume drop). The baseline spans ``volume_baseline_days``, and at least
    ``MIN_BASELINE_PERIODS`` periods; periods before the first event's do not count,
    periods without events inside the baseline count 0.
    """
    step = period.total_seconds()
    newest_start = floor_to(newest, step)
    complete = newest_start + period <= now and not ended
    start = newest_start if complete else newest_start - period
    wanted = max(round(t.volume_baseline_days * _DAY / period), MIN_BASELINE_PERIODS)
    base_start = max(floor_to(oldest, step), start - wanted * period)
    if base_start >= start:
        return [skipped("volume_ratio", "events", t.volume_ratio, "no complete period of history")]
    counts = dict(
        con.execute(
            f"""
            SELECT time_bucket(INTERVAL '{step} seconds', event_timestamp,
                               TIMESTAMP '1970-01-01') AS period, count(*) FROM events
            WHERE event_timestamp >= ?::TIMESTAMP AND event_timestamp < ?::TIMESTAMP
            GROUP BY 1
            """,
            [base_start, start + period],
        ).fetchall()
    )
    n_base = round((start - base_start) / period)
    baseline = sum(counts.get(base_start + i * period, 0) for i in range(n_base)) / n_base
    observed = counts.get(start, 0)
    if baseline == 0:
        return [skipped("volume_ratio", "events", t.volume_ratio, "no events in the baseline")]
    ratio = observed / baseline
    unit = "day" if period == _DAY else f"period of {period}"
    when = f"{start:%Y-%m-%d}" if period == _DAY else f"{start:%Y-%m-%d %H:%M}"
    return [
        graded(
            "volume_ratio",
            "events",
            round(ratio, 4),
            t.volume_ratio,
            f"events on {when}: {observed:,} vs {baseline:,.1f} a {unit} on average over "
            f"the {n_base} {unit}s before ({ratio:.2f}x)",
        )
    ]


def _window_start(newest: datetime, t: QualityThresholds) -> datetime:
    return newest - t.events_window_days * _DAY


def _null_rates(
    con: duckdb.DuckDBPyConnection,
    newest: datetime,
    t: QualityThresholds,
    profile: DataProfile | None = None,
) -> list[CheckResult]:
    judged = [c for c in OPTIONAL_EVENT_COLUMNS if c in t.events_null_rate]
    columns = [c for c in judged if profile is None or profile.claims(c)]
    results = [
        skipped(f"null_rate:{c}", "events", t.events_null_rate[c], f"the log has no {c}")
        for c in judged
        if c not in columns
    ]
    if not columns:
        return results
    start = _window_start(newest, t)
    counts = ", ".join(f"count({c})" for c in columns)
    row = con.execute(
        f"SELECT count(*), {counts} FROM events WHERE event_timestamp > ?::TIMESTAMP", [start]
    ).fetchall()[0]
    n = row[0]
    for col, non_null in zip(columns, row[1:], strict=True):
        rate = 1.0 - non_null / n
        results.append(
            graded(
                f"null_rate:{col}",
                "events",
                round(rate, 6),
                t.events_null_rate[col],
                f"events.{col} is NULL in {n - non_null:,} of {n:,} events "
                f"({pct(rate)}) of the last {t.events_window_days} days",
            )
        )
    return results


def _duplicates(
    con: duckdb.DuckDBPyConnection, newest: datetime, t: QualityThresholds
) -> CheckResult:
    cols = ", ".join(EVENT_CONTENT_COLUMNS)
    n, distinct = con.execute(
        f"""
        SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT {cols} FROM events
                          WHERE event_timestamp > ?::TIMESTAMP))
        FROM events WHERE event_timestamp > ?::TIMESTAMP
        """,
        [_window_start(newest, t)] * 2,
    ).fetchall()[0]
    dup = n - distinct
    rate = dup / n
    return graded(
        "duplicate_rate",
        "events",
        round(rate, 6),
        t.duplicate_rate,
        f"{dup:,} of {n:,} events of the last {t.events_window_days} days repeat another "
        f"event's ({cols}) under a different event_id ({pct(rate)})",
    )


def _quarantine(
    con: duckdb.DuckDBPyConnection, accepted: int, t: QualityThresholds
) -> list[CheckResult]:
    rows = con.execute(
        """
        SELECT reason, count(*) AS n FROM quarantine WHERE target = 'events'
        GROUP BY reason ORDER BY n DESC, reason
        """
    ).fetchall()
    quarantined = sum(n for _, n in rows)
    seen = accepted + quarantined
    unknown = [(r, n) for r, n in rows if r.startswith("unknown event_type")]
    n_unknown = sum(n for _, n in unknown)
    types = ", ".join(
        f"{r.removeprefix('unknown event_type').strip()} ({n:,})" for r, n in unknown[:5]
    )
    share_unknown = n_unknown / seen
    share_q = quarantined / seen
    top = ", ".join(f"{r} ({n:,})" for r, n in rows[:3])
    return [
        graded(
            "unknown_event_type_share",
            "events",
            round(share_unknown, 6),
            t.unknown_event_type_share,
            f"{n_unknown:,} of {seen:,} event rows in quarantine for an unknown event_type "
            f"({pct(share_unknown)})" + (f": {types}" if types else ""),
        ),
        graded(
            "quarantine_share",
            "events",
            round(share_q, 6),
            t.quarantine_share,
            f"{quarantined:,} of {seen:,} event rows in the quarantine table ({pct(share_q)})"
            + (f"; most common: {top}" if top else ""),
        ),
    ]
