"""``ranking generate`` and ``ranking ingest``: data into the warehouse."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from cli.common import HomeOption, console, fail, now, print_profile, settings_for
from cli.progress import progress_bars
from ranking.errors import IngestError

app = typer.Typer()


def readable_source(events: Path, items: Path | None, mapping: Path | None, kind: str) -> str:
    """What the input files are (contract, MovieLens, mapped), each read through the way
    the load will read it, before any flow starts; one line and exit code 2 if not."""
    from ranking.ingest.contract import check_readable
    from ranking.ingest.sources import resolve_source
    from ranking.schema import ITEM_COLUMNS

    try:
        source = resolve_source(events, items, mapping, kind)
        check_readable(source.events, source.events_reader)
        if source.items is not None:
            check_readable(source.items, source.items_reader, ITEM_COLUMNS)
    except IngestError as exc:
        fail(str(exc))
    return source.kind


@app.command()
def generate(
    out: Path = typer.Option(None, help="Output folder (default: <home>/raw)."),
    events: int = typer.Option(300_000, help="About this many events."),
    days: int = typer.Option(42, help="Days of history."),
    seed: int = typer.Option(7, help="Random seed."),
    end: str = typer.Option(None, help="Last day (exclusive, ISO date); default today UTC."),
    home: Path = HomeOption,
) -> None:
    """Generate a realistic events log and item catalogue."""
    from ranking.ingest import synth

    settings = settings_for(home)
    end_dt = datetime.fromisoformat(end) if end else now().replace(hour=0, minute=0, second=0)
    cfg = synth.SynthConfig(events=events, days=days, end=end_dt, seed=seed)
    with console.status(f"Generating about {events:,} events over {days} days"):
        data = synth.generate(cfg)
        paths = synth.write(data, out or settings.raw_dir)
    console.print(f"{data.events.num_rows:,} events, {len(data.items):,} items, "
                  f"{len(data.dirty)} late rows -> {paths['events']}")  # fmt: skip


@app.command()
def ingest(
    events_path: Path = typer.Argument(
        ..., help="Events file or folder (CSV, Parquet, JSONL), or a MovieLens folder."
    ),
    items: Path = typer.Option(None, "--items", help="Items file or folder."),
    mapping: Path = typer.Option(
        None, "--mapping", help="YAML column mapping for a log in another layout."
    ),
    source_format: str = typer.Option(
        "auto", "--format", help="auto (recognises MovieLens), contract or movielens."
    ),
    home: Path = HomeOption,
) -> None:
    """Load events (and items) into the warehouse, quarantining bad rows (Prefect flow)."""
    settings = settings_for(home)
    kind = readable_source(events_path, items, mapping, source_format)
    from flows.ingest import ingest_flow

    console.print(f"Reading {events_path} as {kind}")
    with progress_bars("Loading through Prefect"):
        reports = ingest_flow(str(events_path), str(items) if items else None,
                              now=now().isoformat(), home=str(settings.home),
                              mapping_path=str(mapping) if mapping else None,
                              source_format=source_format)  # fmt: skip
    for report in reports:
        console.print(report.summary())
        for line in report.details():
            console.print(f"  {line}")
    print_profile(home, now())
