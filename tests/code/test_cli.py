"""The command line's error paths: one clear message naming the file, never a traceback."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from typer.testing import CliRunner

from cli import app
from cli.common import _NoTracebackForExpectedErrors
from ranking.checks.report import QualityError, QualityReport
from ranking.errors import NoDataError

runner = CliRunner()


def test_unreadable_events_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "events.parquet"
    bad.write_bytes(b"this is not parquet at all")
    result = runner.invoke(app, ["ingest", str(bad), "--home", str(tmp_path / "home")])
    assert result.exit_code == 2
    assert "events.parquet" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()


def test_missing_input_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "events.csv"
    result = runner.invoke(app, ["ingest", str(missing), "--home", str(tmp_path / "home")])
    assert result.exit_code == 2
    assert "events.csv" in result.output


def test_rank_before_any_data_says_what_to_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["rank", "--user", "u1", "--home", str(tmp_path / "home")])
    assert result.exit_code == 2
    assert "ranking demo" in result.output


def test_ui_prints_a_command_per_ui_on_this_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = runner.invoke(app, ["ui", "--home", str(home)])
    assert result.exit_code == 0, result.output
    for name in ("MLflow", "Prefect", "Feast"):
        assert name in result.output
    assert str(home) in result.output.replace("\n", "")


def _record(error: Exception, message: str) -> logging.LogRecord:
    try:
        raise error
    except Exception:
        info = sys.exc_info()
    return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, message, None, info)


def test_prefect_logs_no_traceback_for_an_expected_error() -> None:
    quiet = _NoTracebackForExpectedErrors()
    expected = _record(NoDataError("window too short"), "Task run failed: NoDataError(...)")
    assert quiet.filter(expected) and expected.exc_info is None
    report = "QualityError: 2 data-quality check(s) failed:\n  - a\n  - b"
    cut = _record(QualityError(QualityReport([])), report)
    quiet.filter(cut)
    assert cut.getMessage() == "QualityError: 2 data-quality check(s) failed: ..."
    bug = _record(KeyError("user_id"), "Task run failed: KeyError('user_id')")
    assert quiet.filter(bug) and bug.exc_info is not None  # a bug keeps its traceback
