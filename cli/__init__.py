"""The ``ranking`` command line: one Typer app per command group, parse and print only.

Steps that belong to the scheduled loop (ingest, features, train, monitor, demo) run as
Prefect flows, so a run from the shell shows up in the Prefect UI like a scheduled one.
The flows are imported inside the commands, so commands that run none (``rank``,
``models``, ``features list``) never start Prefect. The library below (``ranking``)
knows neither this package nor Prefect.
"""

from __future__ import annotations

import sys

import typer

from cli import config, data, features, loop, models, monitoring, serving, simulation, training
from cli.common import console, quiet_expected_errors, quiet_libraries
from cli.interrupts import stopping_on_signals
from ranking.errors import RankingError

app = typer.Typer(
    help="Personalization ranking: features, training, serving.", no_args_is_help=True
)
_state = {"debug": False}


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    _state["debug"] = debug
    if not debug:
        quiet_expected_errors()


for group in (
    data.app,
    training.app,
    serving.app,
    monitoring.app,
    loop.app,
    simulation.app,
    config.app,
):
    app.add_typer(group)  # commands at the top level: ranking ingest, ranking train ...
app.add_typer(features.app, name="features")
app.add_typer(models.app, name="models")


def main() -> None:  # pragma: no cover - console entry point
    quiet_libraries()
    with stopping_on_signals(keep_tracebacks=lambda: _state["debug"]) as interruption:
        try:
            app()
        except RankingError as exc:  # one line naming the file, row or field; exit code 2
            if interruption.seen() is None:
                if _state["debug"]:
                    raise
                console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
                raise SystemExit(2) from None
        except BaseException as exc:
            # Typer turns KeyboardInterrupt into exit 130, DuckDB into a RuntimeError; a
            # command that handled the interrupt and succeeded (``ranking schedule``)
            # keeps its own exit.
            finished = isinstance(exc, SystemExit) and exc.code in (0, None)
            if interruption.seen() is None or finished:
                raise
            if _state["debug"]:
                console.print_exception()
    if interruption.signum is not None:
        command = " ".join(["ranking", *sys.argv[1:2]])
        console.print(f"[bold yellow]{interruption.message(command)}[/]", soft_wrap=True)
        raise SystemExit(interruption.exit_code)
