"""``ranking models``: registered versions; list, show, promote and roll back."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli.common import HomeOption, console, fail, print_frame, settings_for

app = typer.Typer(help="Registered model versions: list, show, promote, rollback.")


@app.command("list")
def models_list(home: Path = HomeOption) -> None:
    """Every version with its aliases, test NDCG@10 and promotion reason."""
    from ranking.publishing.aliases import list_versions

    versions = list_versions(settings_for(home))
    if versions.empty:
        console.print("no registered versions yet")
        return
    print_frame(versions.set_index("version").drop(columns="created"), "Model versions")


@app.command("show")
def models_show(version: str, home: Path = HomeOption) -> None:
    """A version's aliases, tags, metrics and parameters."""
    from mlflow.exceptions import MlflowException

    from ranking.publishing.aliases import describe_version

    try:
        info = describe_version(settings_for(home), version)
    except MlflowException:
        fail(f"no version {version} of the model")
    console.print_json(json.dumps(info, default=str))


@app.command("promote")
def models_promote(
    version: str,
    reason: str = typer.Option(..., "--reason", help="Why (recorded on the version)."),
    home: Path = HomeOption,
) -> None:
    """Make VERSION the champion by hand."""
    from ranking.publishing.aliases import promote

    promote(settings_for(home), version, reason)  # a refusal is one line, exit code 2
    console.print(f"champion -> v{version} ({reason})")


@app.command("rollback")
def models_rollback(
    reason: str = typer.Option(..., "--reason", help="Why (recorded on both versions)."),
    home: Path = HomeOption,
) -> None:
    """Move champion back to the previous champion."""
    from ranking.publishing.aliases import rollback

    try:
        old, new = rollback(settings_for(home), reason)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"champion v{old} -> v{new} ({reason})")
