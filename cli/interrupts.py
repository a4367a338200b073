"""Stopping on Ctrl-C (SIGINT) and ``kill`` (SIGTERM) alike: one line, exit 130 or 143.

SIGTERM is turned into the KeyboardInterrupt that SIGINT raises, so both stop a command
the same way: ``finally`` blocks remove what a step had written aside (every write goes
to a temporary name first, then is renamed), and Prefect stops its temporary server at
exit. Left to its default, SIGTERM ends the process on the spot and the server lives on.

Inside a flow run Prefect catches SIGTERM itself, marks the run crashed, puts the handler
installed here back and sends the signal again: it arrives here all the same. DuckDB, in
a query, turns the interrupt into ``RuntimeError('Query interrupted')``, and Prefect's
handler may be the one that ran: which signals came is therefore also read from the
interpreter's wake-up pipe, which every handled signal writes to. A second signal while
stopping ends the process at once (the default action).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Interruption:
    """The signal that stopped the command, and the Prefect task it stopped (if any)."""

    signum: int | None = None
    step: str | None = None
    wakeup: int | None = None  # read end of the wake-up pipe

    def seen(self) -> int | None:
        """The first signal that came, whichever handler ran."""
        if self.signum is None and self.wakeup is not None:
            try:
                numbers = os.read(self.wakeup, 64)
            except BlockingIOError:
                numbers = b""
            self.signum = next((n for n in numbers if n in SIGNALS), None)
        return self.signum

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process ended by the signal: 128 + its number."""
        return 128 + (self.signum or signal.SIGINT)

    def message(self, command: str) -> str:
        where = f"{command} (step {self.step})" if self.step else command
        name = signal.Signals(self.signum or signal.SIGINT).name
        return f"interrupted by {name}: {where}; nothing half-written, rerun to continue"


class _CrashedStep(logging.Filter):
    """Notes the first task Prefect reports as crashed (what the interrupt stopped)."""

    def __init__(self, interruption: Interruption) -> None:
        super().__init__()
        self.interruption = interruption

    def filter(self, record: logging.LogRecord) -> bool:
        name = getattr(record, "task_name", None)
        if name and self.interruption.step is None and record.levelno >= logging.ERROR:
            self.interruption.step = name
        return True


@contextmanager
def stopping_on_signals() -> Iterator[Interruption]:
    """Inside the block SIGINT and SIGTERM raise KeyboardInterrupt in the main thread; the
    yielded :class:`Interruption` says which signal came, once one did."""
    interruption = Interruption()

    def interrupt(signum: int, frame) -> None:
        if interruption.signum is not None:  # the second signal: stop now
            for sig in SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(signum)
        interruption.signum = signum
        raise KeyboardInterrupt

    # A signal ignored from the start (``nohup``, a shell's background job) stays ignored.
    caught = [sig for sig in SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN]
    previous = {sig: signal.signal(sig, interrupt) for sig in caught}
    interruption.wakeup, write = os.pipe()
    for fd in (interruption.wakeup, write):
        os.set_blocking(fd, False)
    previous_wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    crashed = _CrashedStep(interruption)
    task_logger = logging.getLogger("prefect.task_runs")
    task_logger.addFilter(crashed)
    try:
        yield interruption
    finally:
        task_logger.removeFilter(crashed)
        signal.set_wakeup_fd(previous_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        interruption.seen()
        for fd in (interruption.wakeup, write):
            os.close(fd)
        interruption.wakeup = None
