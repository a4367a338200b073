"""``ranking features``: snapshots, and the feature families data engineers register."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import AS_OF_DEFAULT, HomeOption, console, fail, print_frame, settings_for
from cli.progress import progress_bars
from ranking.errors import DefinitionError, FeastError

app = typer.Typer(
    help="Feature snapshots, and the feature families data engineers register.",
    invoke_without_command=True,
)


@app.callback()
def features(
    ctx: typer.Context,
    as_of: str = typer.Option(None, help=f"Snapshot up to this time {AS_OF_DEFAULT}."),
    force: bool = typer.Option(
        False, "--force", help="Rebuild, materialize and publish even if nothing changed."
    ),
    home: Path = HomeOption,
) -> None:
    """Without a subcommand: compute snapshots, feast apply, materialize (Prefect flow)."""
    if ctx.invoked_subcommand is not None:
        return
    from flows.features import features_flow

    settings = settings_for(home)
    with progress_bars("Features through Prefect: snapshots, feast apply, materialize"):
        build = features_flow(as_of=as_of, home=str(settings.home), force=force)
    for name, rows in build.rows.items():
        console.print(f"{name}: {rows:,} rows")


@app.command("validate")
def features_validate(name: str, home: Path = HomeOption) -> None:
    """Check a definition: parses, runs, names, types, descriptions, point in time."""
    from ranking.features.validation import SqlLimits, validate

    settings = settings_for(home)
    with console.status(f"Validating {name} on generated data and this home's newest events"):
        result = validate(settings.definitions_dir, name, SqlLimits.of(settings),
                          settings.warehouse_path)  # fmt: skip
    if not result.ok:
        for problem in result.problems:
            console.print(f"[bold red]error:[/] {problem}", soft_wrap=True)
        raise typer.Exit(code=2)
    features_list = ", ".join(f.name for f in result.definition.features)
    real = ("" if result.real_rows is None else f", {result.real_rows:,} on this home's "
            f"newest snapshot in {result.real_seconds:.1f} s")  # fmt: skip
    console.print(f"{name}: valid ({features_list}); point-in-time check passed; "
                  f"{result.sample_rows} rows on a generated snapshot{real}")  # fmt: skip


@app.command("register")
def features_register(
    name: str,
    as_of: str = typer.Option(None, help="Backfill snapshots up to this time (ISO)."),
    home: Path = HomeOption,
) -> None:
    """Validate, backfill, add to a new feature service version, feast apply, materialize."""
    from flows.features import register_flow

    settings = settings_for(home)
    try:
        with progress_bars(f"Registering {name} through Prefect"):
            done = register_flow(name, as_of=as_of, home=str(settings.home))
    except (DefinitionError, FeastError) as exc:
        fail(f"{exc}\nNothing was registered: the services and the Feast registry are as before.")
    console.print(f"registered {done.family}: {', '.join(done.features)}; {done.rows:,} rows "
                  f"backfilled; feature service {done.service}")  # fmt: skip
    console.print("The next `ranking train` uses it (features.service = 'latest').")


@app.command("list")
def features_list(home: Path = HomeOption) -> None:
    """The catalogue: every feature with entity, owner, type, freshness and null rate."""
    from ranking.features.catalogue import catalogue

    settings = settings_for(home)
    table = catalogue(settings.features_dir, settings.definitions_dir)
    print_frame(table.set_index("feature"), "Feature catalogue")
