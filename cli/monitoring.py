"""``ranking monitor``: drift of the champion's features and scores."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import HomeOption, console, settings_for

app = typer.Typer()


@app.command()
def monitor(
    as_of: str = typer.Option(None, help="End of the monitored window (ISO); default now."),
    home: Path = HomeOption,
) -> None:
    """Drift of the champion's features and scores (Prefect flow); a breach can retrain."""
    from flows.monitor import monitor_flow

    settings = settings_for(home)
    result = monitor_flow(as_of=as_of, home=str(settings.home))
    console.print(f"drift: {result.status} {result.counts}")
    if result.html_path:
        console.print(f"report: {result.html_path}", soft_wrap=True)
        console.print(f"json:   {result.json_path}", soft_wrap=True)
    if result.retrained is not None:
        console.print(f"retrained: ranker v{result.retrained.version}: {result.retrained.reason}")
