"""``ranking demo``, ``ranking schedule`` and ``ranking ui``: the whole loop, on schedule."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import typer

from cli.common import HomeOption, console, now, print_profile, settings_for
from cli.progress import progress_bars
from cli.serving import print_ranked, rank_with_champion
from ranking import backends
from ranking.ingest.profile import default_as_of
from ranking.schema import HEADLINE_METRIC, MODEL_SCORER, MOST_POPULAR
from ranking.settings import Settings
from ranking.times import iso_duration
from ranking.warehouse import most_active_user

app = typer.Typer()


@app.command()
def schedule(
    features_cron: str = typer.Option("0 * * * *", help="Cron for the features flow (UTC)."),
    training_cron: str = typer.Option("0 2 * * *", help="Cron for the training flow (UTC)."),
    monitor_cron: str = typer.Option("30 * * * *", help="Cron for the drift monitor (UTC)."),
    home: Path = HomeOption,
) -> None:
    """Serve the deployments (features hourly, training daily, drift hourly) until Ctrl-C."""
    from flows.deployments import serve_all

    settings_for(home)
    serve_all(features_cron, training_cron, monitor_cron)


@dataclass(frozen=True)
class UiCommand:
    """A UI's server: the command, the environment it adds, where it runs, its page."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path | None
    url: str

    def shell(self) -> str:
        """The line to paste in a shell."""
        line = " ".join([*(f"{k}={v}" for k, v in self.env.items()), *self.argv])
        return f"cd {self.cwd} && {line}" if self.cwd else line


#: Default ports of the UIs (the tools' own, Feast's moved off Prefect's 4200).
UI_PORTS = {"MLflow": 5000, "Prefect": 4200, "Feast": 8888}


def ui_commands(settings: Settings, ports: dict[str, int] | None = None) -> dict[str, UiCommand]:
    """The commands that open each UI on what this home holds, on 127.0.0.1."""
    venv_bin = Path(sys.executable).parent
    port = UI_PORTS | (ports or {})
    host = "127.0.0.1"
    feast_env = backends.feast_env(settings)
    if backends.is_shared(settings):  # Feast's CLI reads this variable like its -f
        feast_env["FEAST_FS_YAML_FILE_PATH"] = str(backends.feast_yaml(settings))
    commands = {
        "Prefect": UiCommand(
            [f"{venv_bin}/prefect", "server", "start", "--host", host,
             "--port", str(port["Prefect"])],
            {"PREFECT_HOME": str(settings.prefect_home)}, None,
            f"http://{host}:{port['Prefect']}/"),
        "Feast": UiCommand(
            [f"{venv_bin}/feast", "ui", "--host", host, "--port", str(port["Feast"])],
            feast_env, settings.feature_repo,
            f"http://{host}:{port['Feast']}/"),
    }  # fmt: skip
    if backends.prefect_api_url(settings):  # the shared server has its UI
        del commands["Prefect"]
    if not settings.mlflow_tracking_uri.startswith("http"):  # a server has its own UI
        commands["MLflow"] = UiCommand(
            [f"{venv_bin}/mlflow", "ui", "--backend-store-uri", settings.mlflow_tracking_uri,
             "--host", host, "--port", str(port["MLflow"])],
            {}, None, f"http://{host}:{port['MLflow']}/")  # fmt: skip
    return commands


@app.command()
def ui(home: Path = HomeOption) -> None:
    """Print the commands that open the MLflow, Prefect and Feast UIs."""
    settings = settings_for(home)
    for name, command in ui_commands(settings).items():
        console.print(f"[bold]{name}:[/] {command.shell()}", soft_wrap=True)
    if settings.mlflow_tracking_uri.startswith("http"):
        console.print(f"[bold]MLflow:[/] open {settings.mlflow_tracking_uri}", soft_wrap=True)
    if api_url := backends.prefect_api_url(settings):
        console.print(f"[bold]Prefect:[/] open {api_url.removesuffix('/api')}", soft_wrap=True)


@app.command()
def demo(
    events: int = typer.Option(300_000, help="About this many generated events."),
    days: int = typer.Option(42, help="Days of generated history."),
    seed: int = typer.Option(7, help="Random seed of the generated data."),
    home: Path = HomeOption,
) -> None:
    """Generate data, run the whole loop through Prefect, and summarise what it did."""
    from ranking.ingest import synth

    settings = settings_for(home)
    started = now()
    end = started.replace(hour=0, minute=0, second=0)
    cfg = synth.SynthConfig(events=events, days=days, end=end, seed=seed)
    stamp = settings.raw_dir / "synth.json"
    wanted = {"events": events, "days": days, "seed": seed, "end": end.isoformat()}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        console.print(f"Reusing generated data in {settings.raw_dir}")
    else:
        with console.status(f"Generating about {events:,} events over {days} days"):
            data = synth.generate(cfg)
            synth.write(data, settings.raw_dir)
            stamp.write_text(json.dumps(wanted))
        console.print(f"Generated {data.events.num_rows:,} events and {len(data.items):,} items")
        del data  # the loop reads the files; keep the generated tables out of its memory
    from flows.loop import ranking_loop

    with progress_bars("The loop through Prefect: ingest, features, train"):
        result = ranking_loop(
            str(settings.raw_dir / "events"),
            str(settings.raw_dir / "items.parquet"),
            as_of=end.isoformat(),
            now=started.isoformat(),
            home=str(settings.home),
        )
    print_summary(settings, result, started)


@app.command()
def run(
    events_path: Path = typer.Argument(
        ..., help="Events file or folder (CSV, Parquet, JSONL), or a MovieLens folder."
    ),
    items: Path = typer.Option(None, "--items", help="Items file or folder."),
    mapping: Path = typer.Option(None, "--mapping", help="YAML column mapping."),
    source_format: str = typer.Option(
        "auto", "--format", help="auto (recognises MovieLens), contract or movielens."
    ),
    home: Path = HomeOption,
) -> None:
    """The whole loop on your own log: ingest, features, train, a champion (Prefect flow).

    Every setting left unset follows from the data (cadence, windows, checks); a historic
    log is judged at its end, a live feed at the clock.
    """
    from cli.data import readable_source

    settings = settings_for(home)
    kind = readable_source(events_path, items, mapping, source_format)
    console.print(f"Reading {events_path} as {kind}")
    started = now()
    from flows.loop import ranking_loop

    with progress_bars("The loop through Prefect: ingest, features, train"):
        result = ranking_loop(
            str(events_path),
            str(items) if items else None,
            now=started.isoformat(),
            home=str(settings.home),
            mapping_path=str(mapping) if mapping else None,
            source_format=source_format,
        )
    fitted = settings_for(home)  # what the loaded data decided
    print_profile(home, started)
    print_summary(fitted, result, default_as_of(fitted, started))


def print_summary(settings: Settings, result, at: datetime) -> None:
    """What the loop did, a sample ranking, and where to look next."""
    events_report = next(r for r in result.loads if r.target == "events")
    table = result.training.table
    console.rule("Summary")
    console.print(events_report.summary())
    for line in events_report.details():
        console.print(f"  {line}")
    console.print(
        f"Feature rows: {sum(result.features.rows.values()):,} in "
        f"{len(result.features.snapshots)} snapshots every "
        f"{iso_duration(settings.features.snapshot_every)}: "
        + ", ".join(f"{k} {v:,}" for k, v in result.features.rows.items())
    )
    model, base = table.loc[MODEL_SCORER], table.loc[MOST_POPULAR]
    console.print(
        f"Test NDCG@10 ({model['groups']:,.0f} queries, up to "
        f"{settings.evaluation.test_cutoffs} cut-offs): XGBoost {model[HEADLINE_METRIC]:.4f} "
        "vs most-popular "
        f"{base[HEADLINE_METRIC]:.4f} ({model[HEADLINE_METRIC] / base[HEADLINE_METRIC]:.2f}x); "
        f"MAP@10 {model['map@10']:.4f} vs {base['map@10']:.4f}; "
        f"recall@10 {model['recall@10']:.4f} vs {base['recall@10']:.4f}"
    )
    console.print(f"Ranker v{result.training.version}: {result.training.reason}")
    champion = result.training.champion_version
    console.print(f"Champion: v{champion}" if champion else "Champion: none yet")
    user = most_active_user(settings.warehouse_path)
    print_ranked(rank_with_champion(settings, user, 10, at))
    console.print("Open the UIs:")
    for name, command in ui_commands(settings).items():
        console.print(f"  [bold]{name}:[/] {command.shell()}", soft_wrap=True)
    console.print(f"  Try: ranking rank --user {user} --k 10", soft_wrap=True)
    console.print("       ranking evaluate | ranking monitor | ranking models list | "
                  "ranking features list", soft_wrap=True)  # fmt: skip
