"""The command line's error paths: one clear message naming the file, never a traceback."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli import app

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
