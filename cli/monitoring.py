"""``ranking monitor``: drift of the champion's features and scores."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import HomeOption, console, settings_for
from cli.progress import progress_bars

app = typer.Typer()


@app.command()
def monitor(
    as_of: str = typer.Option(
        None, help="End of the monitored window (ISO); default now, or a historic log's end."
    ),
    home: Path = HomeOption,
) -> None:
    """Drift of the champion's features and scores (Prefect flow); a breach can retrain."""
    from flows.monitor import monitor_flow

    settings = settings_for(home)
    with progress_bars("Drift of the champion through Prefect"):
        result = monitor_flow(as_of=as_of, home=str(settings.home))
    counts = ", ".join(f"{n} {level}" for level, n in result.counts.items())
    version = f" of ranker v{result.model_version}" if result.model_version else ""
    console.print(f"drift{version}: {result.status} ({counts or 'nothing measured'})")
    for alarm in result.alarms:
        console.print(f"  {alarm}", soft_wrap=True)
    if result.html_path:
        console.print(f"report: {result.html_path}", soft_wrap=True)
        console.print(f"json:   {result.json_path}", soft_wrap=True)
    if result.retrained is not None:
        console.print(f"retrained: ranker v{result.retrained.version}: {result.retrained.reason}")
