"""Rich progress bars for what the library reports (``ranking.progress``): a bar with
counts and time left where the total is known, a spinner with the time spent otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cli.common import console
from ranking import progress


@contextmanager
def progress_bars(title: str) -> Iterator[None]:
    """Bars for every step reported inside the block, under a spinner for ``title``."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console) as bars:
        bars.add_task(title, total=None)
        steps: dict[str, int] = {}

        def show(step: str, done: int, total: int | None) -> None:
            if step not in steps:
                steps[step] = bars.add_task(step, total=total)
            bars.update(steps[step], completed=done, total=total)

        with progress.listening(show):
            yield
