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
from ranking.checks.report import QualityError
from ranking.errors import RankingError, interrupted_query
from ranking.ingest.profile import fit_settings, profile_of, what_the_data_decided
from ranking.settings import Settings

# Piped output (CI logs, files) gets room for the wide metric tables.
console = Console(width=None if sys.stdout.isatty() else 160)

HomeOption = typer.Option(None, "--home", envvar="RANKING_HOME", help="Home folder.")
#: How every command's --as-of defaults (see ranking.ingest.profile.default_as_of).
AS_OF_DEFAULT = "(ISO); default now, or the end of a historic log"


def settings_for(home: Path | None) -> Settings:
    """Settings from the environment for ``home``, its folders created, with every setting
    left unset derived from the loaded data (as the flows do)."""
    settings = ranking_home.load(home)
    return fit_settings(settings, profile_of(settings.warehouse_path))


def now() -> datetime:
    """The command's clock, read once and passed down as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def print_profile(home: Path | None, at: datetime) -> None:
    """What the loaded data holds and the settings it decided (those left unset)."""
    settings = settings_for(home)
    profile = profile_of(settings.warehouse_path)
    if profile is not None:
        console.print(f"Your data: {profile.describe()}", soft_wrap=True)
        console.print(f"Settings: {what_the_data_decided(settings, profile, at)}", soft_wrap=True)


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


class _NoTracebackForExpectedErrors(logging.Filter):
    """Prefect logs a failed task's or flow's traceback; for a :class:`RankingError` (bad
    input, a failed check: the message says it all) or a query stopped by a signal, the
    message is kept, the traceback dropped, and a multi-line message (a quality report)
    cut to its first line, since the command prints it whole once at the end."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, RankingError) or interrupted_query(error):
            record.exc_info, record.exc_text = None, None
        message = record.getMessage()
        if record.levelno >= logging.ERROR and "\n" in message and _expected(message):
            record.msg, record.args = message.split("\n", 1)[0] + " ...", None
        return True


def _expected(message: str) -> bool:
    return any(name in message for name in _EXPECTED_NAMES)


_EXPECTED_NAMES = tuple(
    cls.__name__ for cls in (RankingError, *RankingError.__subclasses__(), QualityError)
)


def quiet_expected_errors() -> None:
    """No tracebacks from Prefect's run loggers for expected errors (``--debug`` keeps them)."""
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_NoTracebackForExpectedErrors())


def quiet_libraries() -> None:
    """Keep third-party deprecation chatter out of the terminal (and of child processes)."""
    for category in (DeprecationWarning, FutureWarning, RuntimeWarning):
        warnings.filterwarnings("ignore", category=category)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("feast").setLevel(logging.ERROR)
