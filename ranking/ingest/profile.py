"""What a loaded log holds, and the defaults that follow from it.

A team's own log decides what can be computed and checked: its time span sets the
snapshot cadence, the history window and the train / validation / test windows; its
event types and optional columns say which signals exist (a ratings log has no clicks,
sessions or positions). One SQL pass over the warehouse measures it
(:func:`profile_of`); :func:`fit_settings` fills every setting the user left unset
from it, so that no option has to be guessed. A setting given explicitly (environment,
settings file or argument) always wins.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ranking.schema import (
    ADD_TO_CART,
    CLICK,
    DWELL_TYPES,
    IMPRESSION,
    PLAY,
    PURCHASE,
    RATING,
    SKIP,
    VIEW,
    sql_list,
)
from ranking.settings import Settings
from ranking.times import floor_to, iso_duration
from ranking.warehouse import warehouse

#: A column is part of what the log claims when at least this share of events carry it;
#: below, its null rate is not judged (a ratings log has no sessions at all).
CLAIMED_SHARE = 0.5
#: Snapshots laid over the history window at most, whatever the span (each snapshot
#: costs a pass over every active entity: 8,215 daily ones over 22 years never end).
MAX_SNAPSHOTS = 200
#: The test and the validation window are each this share of the history window.
WINDOW_SHARE = 1 / 6
#: Longest and shortest retrieval look-back, in days, whatever the span.
RETRIEVAL_WINDOW_DAYS = (28.0, 365.0)
#: A log whose newest event is older than its first load by more than this was complete
#: when it arrived (a historic log): its runs are judged at its end, not at the clock.
HISTORIC_LAG = timedelta(days=2)

#: Shares measured over the events: each optional column, and the value where it means
#: something (dwell seconds on views and plays, a rating's score).
_SHARES = {
    "session_id": "avg((session_id IS NOT NULL)::INT)",
    "position": "avg((position IS NOT NULL)::INT)",
    "value": "avg((value IS NOT NULL)::INT)",
    "dwell": f"avg((value IS NOT NULL)::INT) FILTER (WHERE event_type IN {sql_list(DWELL_TYPES)})",
    "rating_value": f"avg((value IS NOT NULL)::INT) FILTER (WHERE event_type = '{RATING}')",
}
#: Signals a claimed share gives (``value`` is judged as a column only).
_SHARE_SIGNALS = {"session_id": "sessions", "position": "positions", "dwell": "dwell",
                  "rating_value": "rating_values"}  # fmt: skip
#: Event types whose presence is a signal of its own.
EVENT_SIGNALS = {IMPRESSION: "impressions", CLICK: "clicks", PLAY: "plays", SKIP: "skips",
                 PURCHASE: "purchases", RATING: "ratings", VIEW: "views",
                 ADD_TO_CART: "carts"}  # fmt: skip


@dataclass(frozen=True)
class DataProfile:
    """Measured facts of the events in a warehouse."""

    events: int
    first_event: datetime
    last_event: datetime
    first_loaded_at: datetime | None
    event_types: dict[str, int]
    shares: dict[str, float]  # see _SHARES: share of (relevant) events carrying each
    item_price_share: float = 0.0  # share of catalogue items with a price

    @property
    def span(self) -> timedelta:
        return self.last_event - self.first_event

    @property
    def historic(self) -> bool:
        """The log had ended when it was first loaded (a dump, not a live feed)."""
        if self.first_loaded_at is None:
            return False
        return self.last_event < self.first_loaded_at - HISTORIC_LAG

    @property
    def signals(self) -> frozenset[str]:
        """What the log holds: its event types' signals and the columns it claims."""
        held = {EVENT_SIGNALS[t] for t, n in self.event_types.items() if n and t in EVENT_SIGNALS}
        held |= {s for k, s in _SHARE_SIGNALS.items() if self.shares.get(k, 0.0) >= CLAIMED_SHARE}
        if self.item_price_share >= CLAIMED_SHARE:
            held.add("prices")
        return frozenset(held)

    def claims(self, column: str) -> bool:
        """Whether the log holds an optional event column at all, so its null rate says
        something: sessions and positions on most events, a value on any."""
        share = self.shares.get(column, 0.0)
        return share > 0 if column == "value" else share >= CLAIMED_SHARE

    def as_of(self, now: datetime, cadence: timedelta) -> datetime:
        """When a run without an explicit as-of time is judged: the clock, floored to the
        cadence, for a live feed; just after the last event for a historic log."""
        step = cadence.total_seconds()
        if self.historic:
            return floor_to(self.last_event, step) + cadence
        return floor_to(now, step)

    def describe(self) -> str:
        kinds = ", ".join(f"{t} {n:,}" for t, n in sorted(self.event_types.items()))
        claimed = ", ".join(c for c in ("session_id", "position", "value") if self.claims(c))
        kind = "historic log" if self.historic else "live feed"
        when = f"{self.first_event:%Y-%m-%d %H:%M} to {self.last_event:%Y-%m-%d %H:%M}"
        return (
            f"{self.events:,} events from {when} ({kind}); {kinds}; optional columns: "
            f"{claimed or 'none'}"
        )


def profile_of(warehouse_path: Path) -> DataProfile | None:
    """The profile of the warehouse's events (None when it holds none).

    A flow asks several times (its settings, its as-of time, its checks): the profile is
    measured once per state of the files and kept (a load swaps in a new file, and a
    write in place changes the file or its write-ahead log).
    """
    path = Path(warehouse_path)
    try:
        key = (str(path.resolve()), *_state(path), *_state(path.with_name(path.name + ".wal")))
    except FileNotFoundError:
        return None
    with _profiles_lock:
        if key in _profiles:
            return _profiles[key]
    profile = _measure(path)
    with _profiles_lock:
        _profiles.clear()  # one warehouse state at a time is all a process needs
        _profiles[key] = profile
    return profile


_profiles: dict[tuple, DataProfile | None] = {}
_profiles_lock = threading.Lock()


def _state(path: Path) -> tuple:
    """What changes when a file is replaced or written: (inode, size, mtime); () if absent."""
    if not path.exists():
        if path.suffix == ".wal":
            return ()
        raise FileNotFoundError(path)
    stat = path.stat()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _measure(path: Path) -> DataProfile | None:
    shares = ", ".join(f"{sql} AS {name}" for name, sql in _SHARES.items())
    with warehouse(path, read_only=True) as con:
        row = con.execute(
            "SELECT count(*), min(event_timestamp), max(event_timestamp), min(loaded_at), "
            f"{shares} FROM events"
        ).fetchone()
        if not row[0]:
            return None
        types = dict(con.execute("SELECT event_type, count(*) FROM events GROUP BY ALL").fetchall())
        priced = con.execute("SELECT avg((price IS NOT NULL)::INT) FROM items").fetchone()[0]
    return DataProfile(
        events=int(row[0]),
        first_event=row[1],
        last_event=row[2],
        first_loaded_at=row[3],
        event_types={str(k): int(v) for k, v in types.items()},
        shares={n: float(v or 0.0) for n, v in zip(_SHARES, row[4:], strict=True)},
        item_price_share=float(priced or 0.0),
    )


#: Snapshot steps the training labels look ahead (see :func:`derived_sections`).
LABEL_HORIZON_STEPS = 4


def cadence_for(span: timedelta) -> timedelta:
    """Feature snapshots: weekly over years, daily over weeks, hourly over days, every ten
    minutes over a log of hours."""
    if span > timedelta(days=730):
        return timedelta(days=7)
    if span > timedelta(days=14):
        return timedelta(days=1)
    if span > timedelta(days=2):
        return timedelta(hours=1)
    return timedelta(minutes=10)


def derived_sections(span: timedelta, cadence: timedelta) -> dict:
    """Settings sections that follow the span: retrieval looks back a twentieth of it
    (28 to 365 days) with a quarter of that as half-life; decayed features halve, and the
    embeddings are refitted, over a twelfth of the look-back (at least 7 days). Training
    labels look :data:`LABEL_HORIZON_STEPS` snapshot steps ahead, at least 7 days: a
    month on a log of years (weekly snapshots), where a user's next visit is weeks away
    (MovieLens, full catalogue: NDCG@10 0.1068 with a 28-day horizon, 0.0998 with 7)."""
    low, high = RETRIEVAL_WINDOW_DAYS
    window = min(max(span.total_seconds() / 86400 / 20, low), high)
    steps_days = LABEL_HORIZON_STEPS * cadence.total_seconds() / 86400
    return {
        "training": {"label_horizon_days": max(7.0, steps_days)},
        "features": {"snapshot_every": cadence, "decay_half_life_days": max(7.0, window / 12)},
        "retrieval": {
            "window_days": window,
            "half_life_days": window / 4,
            "fresh_days": window,
            "embedding_refresh_days": max(7.0, window / 12),
        },
    }


def fitted_sections(settings: Settings, profile: DataProfile) -> dict:
    """The values :func:`fit_settings` derives, per section (before the user's own)."""
    cadence = settings.features.snapshot_every
    if "snapshot_every" not in settings.features.model_fields_set:
        cadence = cadence_for(profile.span)
    history_days = settings.features.history_days
    unset = "history_days" not in settings.features.model_fields_set
    if history_days is None and unset and profile.span > cadence * MAX_SNAPSHOTS:
        # The grid holds both ends: MAX_SNAPSHOTS - 1 steps make MAX_SNAPSHOTS snapshots.
        history_days = (cadence * (MAX_SNAPSHOTS - 1)).total_seconds() / 86400
    history = profile.span if history_days is None else timedelta(days=history_days)
    sections = derived_sections(min(profile.span, history), cadence)
    sections["features"]["history_days"] = history_days
    window = max(cadence, floor_to_duration(history * WINDOW_SHARE, cadence))
    sections["training"] |= {"test_window": window, "valid_window": window}
    return sections


def fit_settings(settings: Settings, profile: DataProfile | None) -> Settings:
    """``settings`` with every field the user left unset derived from ``profile``."""
    if profile is None:
        return settings
    updates = {}
    for name, derived in fitted_sections(settings, profile).items():
        section = getattr(settings, name)
        unset = {k: v for k, v in derived.items() if k not in section.model_fields_set}
        if unset:
            updates[name] = section.model_copy(update=unset)
    return settings.model_copy(update=updates)


def what_the_data_decided(settings: Settings, profile: DataProfile, now: datetime) -> str:
    """One line: what fitted ``settings`` take from ``profile`` (for the CLI to print)."""
    history = settings.features.history_days
    window = "all of it" if history is None else f"the last {history:g} days"
    training, step = settings.training, settings.features.snapshot_every
    judged = "the log's end" if profile.historic else "the clock"
    return (
        f"snapshots every {iso_duration(step)} over {window}; test and validation windows "
        f"{iso_duration(training.test_window)} and {iso_duration(training.valid_window)}; "
        f"labels {training.label_horizon_days:g} days ahead; "
        f"runs judged at {judged} ({profile.as_of(now, step):%Y-%m-%d %H:%M})"
    )


def default_as_of(
    settings: Settings, now: datetime, live_every: timedelta | None = None
) -> datetime:
    """A run's as-of time when none is given: ``now`` floored to ``live_every`` (default:
    the snapshot cadence) for a live feed or an empty warehouse; just after the last event
    for a historic log."""
    step = settings.features.snapshot_every
    profile = profile_of(settings.warehouse_path)
    if profile is not None and profile.historic:
        return profile.as_of(now, step)
    return floor_to(now, (live_every or step).total_seconds())


def floor_to_duration(span: timedelta, step: timedelta) -> timedelta:
    """``span`` rounded down to whole ``step``s."""
    return step * int(span.total_seconds() // step.total_seconds())
