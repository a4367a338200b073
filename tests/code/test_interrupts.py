"""Stopping on SIGINT and SIGTERM (``cli.interrupts``) and not retrying an interrupted query."""

from __future__ import annotations

import logging
import os
import signal

import pytest

from cli.interrupts import PREFECT_RUN_LOGGERS, Interruption, stopping_on_signals
from ranking.errors import interrupted_query


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_raises_keyboard_interrupt_and_is_remembered(signum: int) -> None:
    # A shell starts background jobs with SIGINT ignored, and an ignored signal stays
    # ignored (nohup's contract): the test gives this process a handler first.
    ignored = signal.signal(signum, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt), stopping_on_signals() as interruption:
            os.kill(os.getpid(), signum)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a bytecode boundary: handlers run
        assert interruption.signum == signum
        assert interruption.exit_code == 128 + signum
        assert signal.getsignal(signal.SIGTERM) is before  # put back after the block
    finally:
        signal.signal(signum, ignored)


def test_a_signal_another_handler_took_is_still_seen() -> None:
    """Prefect's own SIGTERM handler may run instead: the wake-up pipe still says which."""
    with stopping_on_signals() as interruption:
        previous = signal.signal(signal.SIGTERM, lambda *_: None)
        os.kill(os.getpid(), signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous)
        assert interruption.seen() == signal.SIGTERM


def test_the_message_names_the_signal_the_command_and_the_step() -> None:
    line = Interruption(signal.SIGTERM, "materialize").message("ranking features")
    assert line == ("interrupted by SIGTERM: ranking features (step materialize); "
                    "nothing half-written, rerun to continue")  # fmt: skip


def test_a_query_duckdb_stopped_for_a_signal_is_not_retried() -> None:
    """DuckDB answers the interrupt with this RuntimeError, which Prefect would retry."""
    stopped = RuntimeError("Query interrupted")
    assert interrupted_query(stopped)
    try:
        raise ValueError("wrapped") from stopped
    except ValueError as wrapped:
        assert interrupted_query(wrapped)
    assert not interrupted_query(RuntimeError("disk full")) and not interrupted_query(None)


def _prefect_run_log(logger_name: str) -> str:
    """What a handler prints for an error Prefect's run logger reports with a traceback."""
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(logging.Formatter().format(record))
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("Task run is not set")
        except ValueError:
            logger.error("Encountered exception during execution", exc_info=True)
    finally:
        logger.removeHandler(handler)
    return "\n".join(lines)


def test_after_a_signal_prefect_run_logs_lose_their_tracebacks_unless_debug() -> None:
    debug = [False]
    with stopping_on_signals(keep_tracebacks=lambda: debug[0]) as interruption:
        assert "Traceback" in _prefect_run_log("prefect.flow_runs")  # no signal yet
        previous = signal.signal(signal.SIGTERM, lambda *_: None)  # Prefect's handler ran
        os.kill(os.getpid(), signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous)
        for name in PREFECT_RUN_LOGGERS:
            quiet = _prefect_run_log(name)
            assert "Encountered exception during execution" in quiet
            assert "Traceback" not in quiet
        debug[0] = True
        assert "Traceback" in _prefect_run_log("prefect.flow_runs")
        assert interruption.seen() == signal.SIGTERM
    assert "Traceback" in _prefect_run_log("prefect.flow_runs")  # the filter is removed
