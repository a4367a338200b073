"""Progress of long steps: the library reports, whoever listens shows it.

A long step calls :func:`advance` with its name, how much is done and the total when it
is known (boosting rounds, feature families, users published). The library prints
nothing: the CLI listens with Rich bars (``cli.progress``); in a test or a scheduled
flow nothing listens and a call costs one empty loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Listener = Callable[[str, int, int | None], None]
_listeners: list[Listener] = []


def advance(step: str, done: int, total: int | None = None) -> None:
    """``step`` has ``done`` of ``total`` units behind it (``total`` None: unknown)."""
    for listener in tuple(_listeners):
        listener(step, done, total)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send every report to ``listener`` inside the block."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)
