"""``ranking config``: every setting with its environment variable, default and meaning."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from pydantic import BaseModel, TypeAdapter
from rich.table import Table

from cli.common import HomeOption, console, settings_for
from ranking.settings import PROJECT_ROOT, Settings

app = typer.Typer()


def _default_text(field) -> str:
    value = field.get_default(call_default_factory=True)
    if isinstance(value, Path):
        return "`<project>/" + value.relative_to(PROJECT_ROOT).as_posix() + "`"
    if value is None:
        return "none"
    dumped = TypeAdapter(type(value)).dump_json(value).decode()
    return f"`{dumped.strip(chr(34))}`"


def settings_reference() -> list[tuple[str, str, str]]:
    """(environment variable, default, meaning) of every setting, section by section.

    The README's configuration table is this list (a test holds them together).
    """

    def rows_of(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str]]:
        rows = []
        for name, field in model.model_fields.items():
            env, kind = f"{prefix}{name.upper()}", field.annotation
            # A section (every field defaulted) opens up; a value like a limit stays whole.
            if (
                isinstance(kind, type)
                and issubclass(kind, BaseModel)
                and all(not f.is_required() for f in kind.model_fields.values())
            ):
                rows += rows_of(kind, f"{env}__")
            else:
                rows.append((env, _default_text(field), field.description or ""))
        return rows

    return rows_of(Settings, "RANKING_")


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
