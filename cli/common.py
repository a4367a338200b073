"""What every command group shares: the console, settings for a home, the clock, printing."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from ranking import home as ranking_home
from ranking.settings import Settings

# Piped output (CI logs, files) gets room for the wide metric tables.
console = Console(width=None if sys.stdout.isatty() else 160)

HomeOption = typer.Option(None, "--home", envvar="RANKING_HOME", help="Home folder.")


def settings_for(home: Path | None) -> Settings:
    """Settings from the environment for ``home``, its folders created."""
    return ranking_home.load(home)


def now() -> datetime:
    """The command's clock, read once and passed down as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def fail(message: str) -> None:
    """One line on the console and exit code 2."""
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code=2)


def require_warehouse(settings: Settings) -> None:
    if not settings.warehouse_path.exists():
        fail(f"no warehouse at {settings.warehouse_path}: run `ranking demo` or `ranking ingest`")


def print_frame(frame: pd.DataFrame, title: str) -> None:
    """A data frame as a Rich table: integers with separators, other floats to 4 places."""
    table = Table(title=title)
    table.add_column("" if frame.index.name is None else str(frame.index.name))
    for col in frame.columns:
        table.add_column(str(col), justify="right")
    for idx, row in frame.iterrows():
        cells = [
            (f"{v:,.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.4f}")
            if isinstance(v, float)
            else str(v)
            for v in row.tolist()
        ]
        table.add_row(str(idx), *cells)
    console.print(table)


def quiet_libraries() -> None:
    """Keep third-party deprecation chatter out of the terminal (and of child processes)."""
    for category in (DeprecationWarning, FutureWarning, RuntimeWarning):
        warnings.filterwarnings("ignore", category=category)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("feast").setLevel(logging.ERROR)
