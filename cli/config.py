"""``ranking config``: every setting with its environment variable, default and meaning."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from cli.common import HomeOption, console, settings_for
from ranking.settings import settings_reference

app = typer.Typer()


def markdown_table() -> str:
    """The README's configuration table, generated from the settings class."""
    lines = ["| environment variable | default | meaning |", "|---|---|---|"]
    for env, default, meaning in settings_reference():
        lines.append(f"| `{env}` | {default} | {meaning.replace('|', '/')} |")
    return "\n".join(lines)


@app.command()
def config(
    markdown: bool = typer.Option(False, "--markdown", help="Print the README's table."),
    home: Path = HomeOption,
) -> None:
    """Every setting: environment variable, default and meaning; then this home's values."""
    if markdown:
        sys.stdout.write(markdown_table() + "\n")
        return
    table = Table(title="Settings (RANKING_<SECTION>__<NAME>, or a .env file)")
    for column in ("environment variable", "default", "meaning"):
        table.add_column(column, overflow="fold")
    for env, default, meaning in settings_reference():
        table.add_row(env, default.strip("`"), meaning)
    console.print(table)
    console.print_json(settings_for(home).model_dump_json())
