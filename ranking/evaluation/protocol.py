"""Rolling temporal evaluation, with every window derived from the data itself.

One cut-off leaves few returning users on a sparse log (27 on ml-latest-small), so seeds
move the result by a third of the gaps being measured. Rolling cut-offs fix that: the
last ``eval_share`` of the events (by count) is tiled into ``cutoffs`` equal test
windows; at each cut-off ``c`` the model trains on ``[c - valid - train, c - valid)``,
stops early on ``[c - valid, c)`` and is tested on the users who return in
``[c, c + window)``. Every query of every cut-off counts once in the pooled figures.
Without a training length (``train_windows=None``) the training window expands: each
cut-off trains on all the history before its validation window, as a ranker retrained on
the whole log would (query groups are few on a sparse log, and the ranker is starved).

The defaults follow the log's time span, so that a user's own data needs no option:
the feature cadence (hourly, daily or weekly), the retrieval look-back and half-lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ranking.errors import NoDataError
from ranking.ingest.profile import cadence_for, derived_sections
from ranking.times import floor_to
from ranking.training.dataset import SplitTimes
from ranking.warehouse import warehouse


@dataclass(frozen=True)
class RollingProtocol:
    """Cut-offs and windows of a rolling evaluation, and the settings they imply."""

    cutoffs: list[datetime]
    window: timedelta  # each cut-off's test window
    valid: timedelta
    train: timedelta | None  # None: all the history before the validation window
    cadence: timedelta  # feature snapshots
    first_event: datetime
    last_event: datetime
    sections: dict = field(default_factory=dict)  # settings sections derived from the span

    def times(self, cutoff: datetime) -> SplitTimes:
        """The train / validation / test times of one cut-off."""
        start = self.first_snapshot
        if self.train is not None:  # a sliding window, clipped at the first snapshot
            start = max(cutoff - self.valid - self.train, start)
        return SplitTimes(start, cutoff - self.valid, cutoff, cutoff + self.window)

    @property
    def first_snapshot(self) -> datetime:
        """Where feature snapshots must start for the earliest cut-off's training window."""
        first = floor_to(self.first_event, self.cadence.total_seconds()) + self.cadence
        if self.train is None:
            return first
        earliest = self.cutoffs[0] - self.valid - self.train
        return max(first, floor_to(earliest, self.cadence.total_seconds()))

    @property
    def as_of(self) -> datetime:
        """The end of the last test window: snapshots are built up to here."""
        return self.cutoffs[-1] + self.window

    def describe(self) -> dict:
        """The protocol in plain values (for the benchmark's JSON and its printout)."""
        days = lambda d: round(d.total_seconds() / 86400, 3)  # noqa: E731
        return {
            "cutoffs": [c.isoformat() for c in self.cutoffs],
            "test_window_days": days(self.window),
            "valid_days": days(self.valid),
            "train_days": "all before validation" if self.train is None else days(self.train),
            "snapshot_every_days": days(self.cadence),
            "events_from": self.first_event.isoformat(),
            "events_to": self.last_event.isoformat(),
            "settings": {k: {n: str(v) for n, v in s.items()} for k, s in self.sections.items()},
        }


def derive_protocol(
    warehouse_path: Path, cutoffs: int = 12, eval_share: float = 0.3,
    train_windows: int | None = 8, valid_windows: int = 2,
) -> RollingProtocol:  # fmt: skip
    """Rolling cut-offs over the last ``eval_share`` of the events; training spans
    ``train_windows`` test windows (None: all the history before validation) and
    validation ``valid_windows``."""
    if cutoffs < 1 or not 0 < eval_share < 1:
        raise ValueError("need at least one cut-off and an evaluation share in (0, 1)")
    with warehouse(warehouse_path, read_only=True) as con:
        first, last, start_epoch = con.execute(
            "SELECT min(event_timestamp), max(event_timestamp), "
            "quantile_cont(epoch(event_timestamp), ?) FROM events",
            [1.0 - eval_share],
        ).fetchall()[0]
    if first is None:
        raise NoDataError("the warehouse holds no events: run ingestion first")
    span = last - first
    cadence = cadence_for(span)
    step = cadence.total_seconds()
    eval_start = floor_to(datetime.fromtimestamp(start_epoch, UTC).replace(tzinfo=None), step)
    end = floor_to(last, step) + cadence
    n_steps = int((end - eval_start).total_seconds() // step) // cutoffs
    if n_steps < 1:
        raise NoDataError(
            f"{cutoffs} cut-offs do not fit in the last {eval_share:.0%} of the events "
            f"({eval_start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}) at a {cadence} cadence"
        )
    window = cadence * n_steps
    first_cutoff = end - window * cutoffs
    protocol = RollingProtocol(
        cutoffs=[first_cutoff + window * k for k in range(cutoffs)],
        window=window,
        valid=window * valid_windows,
        train=None if train_windows is None else window * train_windows,
        cadence=cadence,
        first_event=first,
        last_event=last,
        sections=derived_sections(span, cadence),
    )
    earliest = protocol.times(protocol.cutoffs[0])
    if earliest.valid_start <= earliest.start:
        raise NoDataError(
            f"the first cut-off ({first_cutoff:%Y-%m-%d %H:%M}) leaves no training time before "
            f"its {protocol.valid} of validation: use fewer cut-offs or a smaller evaluation share"
        )
    return protocol
