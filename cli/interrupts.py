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

Prefect logs with a traceback whatever an interrupt broke inside its engine (a signal
that lands while it sets a task run up fails its crash handling, ``Task run is not set``):
once a signal came, its run loggers keep the one-line message and drop the traceback,
unless ``--debug`` asked for tracebacks.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
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


#: Prefect's loggers of flow and task runs and of its engine.
PREFECT_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.engine")


class _InterruptedRunLogs(logging.Filter):
    """Notes the first task Prefect reports as crashed (what the interrupt stopped) and,
    once a signal came, drops the tracebacks Prefect attaches to what it broke."""

    def __init__(self, interruption: Interruption, keep_tracebacks: Callable[[], bool]):
        super().__init__()
        self.interruption = interruption
        self.keep_tracebacks = keep_tracebacks

    def filter(self, record: logging.LogRecord) -> bool:
        name = getattr(record, "task_name", None)
        if name and self.interruption.step is None and record.levelno >= logging.ERROR:
            self.interruption.step = name
        if self.interruption.seen() is not None and not self.keep_tracebacks():
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


@contextmanager
def stopping_on_signals(
    keep_tracebacks: Callable[[], bool] = lambda: False,
) -> Iterator[Interruption]:
    """Inside the block SIGINT and SIGTERM raise KeyboardInterrupt in the main thread; the
    yielded :class:`Interruption` says which signal came, once one did. ``keep_tracebacks``
    is asked, once a signal came, whether Prefect's run logs keep their tracebacks."""
    interruption = Interruption()

    raised = []  # whether this handler ran: the wake-up pipe may have told of it first

    def interrupt(signum: int, frame) -> None:
        if raised:  # the second signal: stop now
            for sig in SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(signum)
        raised.append(signum)
        interruption.signum = interruption.signum or signum
        raise KeyboardInterrupt

    # A signal ignored from the start (``nohup``, a shell's background job) stays ignored.
    caught = [sig for sig in SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN]
    previous = {sig: signal.signal(sig, interrupt) for sig in caught}
    interruption.wakeup, write = os.pipe()
    for fd in (interruption.wakeup, write):
        os.set_blocking(fd, False)
    previous_wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    run_logs = _InterruptedRunLogs(interruption, keep_tracebacks)
    loggers = [logging.getLogger(name) for name in PREFECT_RUN_LOGGERS]
    for logger in loggers:
        logger.addFilter(run_logs)
    try:
        yield interruption
    finally:
        for logger in loggers:
            logger.removeFilter(run_logs)
        signal.set_wakeup_fd(previous_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        interruption.seen()
        for fd in (interruption.wakeup, write):
            os.close(fd)
        interruption.wakeup = None
