"""The ``ranking`` command line: a thin Typer layer over the library and the flows.

Steps that belong to the scheduled loop (ingest, features, train, demo) run as Prefect
flows, so a run from the shell shows up in the Prefect UI like a scheduled one. The
flows are imported inside the commands: the library itself never imports Prefect.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ranking.config import Settings, get_settings

app = typer.Typer(
    help="Personalization ranking: features, training, serving.", no_args_is_help=True
)
# Piped output (CI logs, files) gets room for the wide metric tables.
console = Console(width=None if sys.stdout.isatty() else 160)


def _settings(home: Path | None) -> Settings:
    settings = get_settings(home=home) if home else get_settings()
    settings.ensure_dirs()
    settings.export_env()
    return settings


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


HomeOption = typer.Option(None, "--home", envvar="RANKING_HOME", help="Home folder.")


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code=2)


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
    from ranking import synth

    settings = _settings(home)
    end_dt = datetime.fromisoformat(end) if end else _now().replace(hour=0, minute=0, second=0)
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
    from ranking.events import IngestError, check_readable
    from ranking.mapping import resolve_source

    settings = _settings(home)
    try:
        source = resolve_source(events_path, items, mapping, source_format)
        check_readable(source.events, source.events_reader)
        if source.items is not None:
            check_readable(source.items, source.items_reader)
    except IngestError as exc:
        _fail(str(exc))
    from flows.ingest import ingest_flow

    console.print(f"Reading {events_path} as {source.kind}")
    for report in ingest_flow(str(events_path), str(items) if items else None,
                              now=_now().isoformat(), home=str(settings.home),
                              mapping_path=str(mapping) if mapping else None,
                              source_format=source_format):  # fmt: skip
        console.print(report.summary())
        for reason, n in sorted(report.reasons.items()):
            console.print(f"  quarantined: {reason}: {n}")


features_app = typer.Typer(
    help="Feature snapshots, and the feature families data engineers register.",
    invoke_without_command=True,
)
app.add_typer(features_app, name="features")


@features_app.callback()
def features(
    ctx: typer.Context,
    as_of: str = typer.Option(None, help="Snapshot up to this time (ISO); default now."),
    home: Path = HomeOption,
) -> None:
    """Without a subcommand: compute snapshots, feast apply, materialize (Prefect flow)."""
    if ctx.invoked_subcommand is not None:
        return
    from flows.features import features_flow

    settings = _settings(home)
    build = features_flow(as_of=as_of, home=str(settings.home))
    for name, rows in build.rows.items():
        console.print(f"{name}: {rows:,} rows")


@features_app.command("validate")
def features_validate(name: str, home: Path = HomeOption) -> None:
    """Check a definition: parses, runs, names, types, descriptions, point in time."""
    from ranking.feature_registry import validate

    settings = _settings(home)
    with console.status(f"Validating {name} on generated data"):
        result = validate(settings.feature_definitions_dir, name)
    if not result.ok:
        for problem in result.problems:
            console.print(f"[bold red]error:[/] {problem}", soft_wrap=True)
        raise typer.Exit(code=2)
    features_list = ", ".join(f.name for f in result.definition.features)
    console.print(f"{name}: valid ({features_list}); point-in-time check passed; "
                  f"{result.sample_rows} rows on a sample snapshot")  # fmt: skip


@features_app.command("register")
def features_register(
    name: str,
    as_of: str = typer.Option(None, help="Backfill snapshots up to this time (ISO)."),
    home: Path = HomeOption,
) -> None:
    """Validate, backfill, add to a new feature service version, feast apply, materialize."""
    from flows.features import register_flow
    from ranking.feature_registry import DefinitionError
    from ranking.store import FeastError

    settings = _settings(home)
    try:
        done = register_flow(name, as_of=as_of, home=str(settings.home))
    except (DefinitionError, FeastError) as exc:
        _fail(f"{exc}\nNothing was registered: the services and the Feast registry are as before.")
    console.print(f"registered {done.family}: {', '.join(done.features)}; {done.rows:,} rows "
                  f"backfilled; feature service {done.service}")  # fmt: skip
    console.print("The next `ranking train` uses it (feature_service = 'latest').")


@features_app.command("list")
def features_list(home: Path = HomeOption) -> None:
    """The catalogue: every feature with entity, owner, type, freshness and null rate."""
    from ranking.feature_registry import catalogue

    settings = _settings(home)
    table = catalogue(settings.features_dir, settings.feature_definitions_dir)
    _print_frame(table.set_index("feature"), "Feature catalogue")


@app.command()
def train(
    as_of: str = typer.Option(None, help="Train on data before this time (ISO); default now."),
    home: Path = HomeOption,
) -> None:
    """Train, evaluate, register in MLflow and promote if better (Prefect flow)."""
    from flows.train import train_flow

    settings = _settings(home)
    result = train_flow(as_of=as_of, home=str(settings.home))
    console.print(result.table.round(4).to_string())
    console.print(f"ranker v{result.version}: {result.reason}")


@app.command()
def rank(
    user: str = typer.Option(..., "--user", help="User id."),
    k: int = typer.Option(10, "--k", help="How many items."),
    at: str = typer.Option(None, help="Request time (ISO); default now."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    home: Path = HomeOption,
) -> None:
    """Rank items for a user with online features and the champion model."""
    ranked = _rank(_settings(home), user, k, datetime.fromisoformat(at) if at else _now())
    if as_json:
        payload = {
            "user_id": ranked.user_id,
            "model_version": ranked.model_version,
            "fallback": ranked.fallback,
            "items": ranked.items.to_dict(orient="records"),
        }
        sys.stdout.write(json.dumps(payload, default=float) + "\n")
        return
    _print_ranked(ranked)


def _rank(settings: Settings, user: str, k: int, now: datetime):
    from ranking.registry import load_champion
    from ranking.serve import rank_request
    from ranking.store import get_store

    if not settings.warehouse_path.exists():
        _fail(f"no warehouse at {settings.warehouse_path}: run `ranking demo` or `ranking ingest`")
    return rank_request(settings, get_store(settings), load_champion(settings), user, now, k)


def _print_ranked(ranked) -> None:
    title = f"Top {len(ranked.items)} for {ranked.user_id}"
    if ranked.fallback:
        console.print(f"[yellow]popularity fallback:[/] {ranked.fallback}")
    else:
        title += f" (ranker v{ranked.model_version}, alias champion)"
    console.print(f"[italic]{title}[/]", soft_wrap=True)  # a title above, not wrapped in it
    table = Table()
    for col in ("rank", "item_id", "category", "score"):
        table.add_column(col, justify="right" if col in ("rank", "score") else "left")
    for row in ranked.items.itertuples(index=False):
        table.add_row(str(row.rank), row.item_id, row.category, f"{row.score:.4f}")
    console.print(table)


@app.command()
def schedule(
    features_cron: str = typer.Option("0 * * * *", help="Cron for the features flow (UTC)."),
    training_cron: str = typer.Option("0 2 * * *", help="Cron for the training flow (UTC)."),
    monitor_cron: str = typer.Option("30 * * * *", help="Cron for the drift monitor (UTC)."),
    home: Path = HomeOption,
) -> None:
    """Serve the deployments (features hourly, training daily, drift hourly) until Ctrl-C."""
    from flows.deployments import serve_all

    _settings(home)
    serve_all(features_cron, training_cron, monitor_cron)


@app.command()
def evaluate(
    as_of: str = typer.Option(None, help="Cut-off for the holdout end (ISO); default now."),
    full_catalogue: bool = typer.Option(
        False, "--full-catalogue", help="Rank every available item, not sampled candidates."
    ),
    home: Path = HomeOption,
) -> None:
    """The evaluation table for the current champion and every baseline, same holdout."""
    from ranking import dataset, holdout, registry, store, train

    settings = _settings(home)
    if not settings.warehouse_path.exists():
        _fail(f"no warehouse at {settings.warehouse_path}: run `ranking demo` or `ranking ingest`")
    champion = registry.load_champion(settings)
    if champion is None:
        _fail(f"model {settings.model_name!r} has no champion yet: run `ranking train`")
    cadence = settings.snapshot_every.total_seconds()
    moment = dataset.floor_to(datetime.fromisoformat(as_of) if as_of else _now(), cadence)
    times = dataset.split_for(settings, moment)
    fs = store.get_store(settings)
    test, _ = holdout.holdout_with_features(settings, fs, times, full_catalogue=full_catalogue)
    name = f"champion v{champion.version}"
    scores = {name: train.score(champion.model, test, champion.features)}
    table, by_segment = holdout.evaluation_tables(settings, test, scores, times.test_start)
    console.print(
        f"Holdout: users active from {times.test_start:%Y-%m-%d %H:%M} to "
        f"{times.end:%Y-%m-%d %H:%M} with history before; {int(table['groups'].iloc[0])} "
        f"queries, {'full catalogue' if full_catalogue else 'sampled candidates'}"
    )
    _print_frame(table.drop(columns="groups"), "Champion and baselines")
    _print_frame(by_segment.rename_axis("model"), "By user segment")


def _print_frame(frame, title: str) -> None:
    table = Table(title=title)
    columns = [c for c in frame.columns]
    table.add_column("" if frame.index.name is None else str(frame.index.name))
    for col in columns:
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


@app.command()
def monitor(
    as_of: str = typer.Option(None, help="End of the monitored window (ISO); default now."),
    home: Path = HomeOption,
) -> None:
    """Drift of the champion's features and scores (Prefect flow); a breach can retrain."""
    from flows.monitor import monitor_flow

    settings = _settings(home)
    result = monitor_flow(as_of=as_of, home=str(settings.home))
    console.print(f"drift: {result.status} {result.counts}")
    if result.html_path:
        console.print(f"report: {result.html_path}", soft_wrap=True)
        console.print(f"json:   {result.json_path}", soft_wrap=True)
    if result.retrained is not None:
        console.print(f"retrained: ranker v{result.retrained.version}: {result.retrained.reason}")


models_app = typer.Typer(help="Registered model versions: list, show, promote, rollback.")
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(home: Path = HomeOption) -> None:
    """Every version with its aliases, test NDCG@10 and promotion reason."""
    from ranking.registry import list_versions

    versions = list_versions(_settings(home))
    if versions.empty:
        console.print("no registered versions yet")
        return
    _print_frame(versions.set_index("version").drop(columns="created"), "Model versions")


@models_app.command("show")
def models_show(version: str, home: Path = HomeOption) -> None:
    """A version's aliases, tags, metrics and parameters."""
    from mlflow.exceptions import MlflowException

    from ranking.registry import describe_version

    try:
        info = describe_version(_settings(home), version)
    except MlflowException:
        _fail(f"no version {version} of the model")
    console.print_json(json.dumps(info, default=str))


@models_app.command("promote")
def models_promote(
    version: str,
    reason: str = typer.Option(..., "--reason", help="Why (recorded on the version)."),
    home: Path = HomeOption,
) -> None:
    """Make VERSION the champion by hand."""
    from mlflow.exceptions import MlflowException

    from ranking.registry import promote

    try:
        promote(_settings(home), version, reason)
    except MlflowException:
        _fail(f"no version {version} of the model")
    console.print(f"champion -> v{version} ({reason})")


@models_app.command("rollback")
def models_rollback(
    reason: str = typer.Option(..., "--reason", help="Why (recorded on both versions)."),
    home: Path = HomeOption,
) -> None:
    """Move champion back to the previous champion."""
    from ranking.registry import rollback

    try:
        old, new = rollback(_settings(home), reason)
    except ValueError as exc:
        _fail(str(exc))
    console.print(f"champion v{old} -> v{new} ({reason})")


@app.command("serve")
def serve_http(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port."),
    home: Path = HomeOption,
) -> None:
    """HTTP ranking service (FastAPI): POST /rank, GET /health; logs served impressions."""
    import uvicorn

    from ranking.api import create_app

    settings = _settings(home)
    console.print(f"Serving on http://{host}:{port} (docs at /docs); served lists go to "
                  f"{settings.raw_dir / 'served'}", soft_wrap=True)  # fmt: skip
    uvicorn.run(create_app(settings, clock=_now), host=host, port=port, log_level="warning")


def ui_commands(settings: Settings) -> dict[str, str]:
    """Shell commands that open each UI on what this home holds."""
    venv_bin = Path(sys.executable).parent
    return {
        "MLflow": f"open {settings.mlflow_uri}"
        if settings.mlflow_uri
        else f"{venv_bin}/mlflow ui --backend-store-uri {settings.mlflow_tracking_uri} --port 5000",
        "Prefect": f"PREFECT_HOME={settings.prefect_home} {venv_bin}/prefect server start",
        "Feast": f"cd {settings.feature_repo} && RANKING_HOME={settings.home} "
        f"{venv_bin}/feast ui --port 8888",
    }


@app.command()
def ui(home: Path = HomeOption) -> None:
    """Print the commands that open the MLflow, Prefect and Feast UIs."""
    for name, command in ui_commands(_settings(home)).items():
        console.print(f"[bold]{name}:[/] {command}", soft_wrap=True)


@app.command()
def demo(
    events: int = typer.Option(300_000, help="About this many generated events."),
    days: int = typer.Option(42, help="Days of generated history."),
    seed: int = typer.Option(7, help="Random seed of the generated data."),
    home: Path = HomeOption,
) -> None:
    """Generate data, run the whole loop through Prefect, and summarise what it did."""
    from ranking import synth

    settings = _settings(home)
    now = _now()
    end = now.replace(hour=0, minute=0, second=0)
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

    with console.status("Running the loop through Prefect: ingest -> features -> train"):
        result = ranking_loop(
            str(settings.raw_dir / "events"),
            str(settings.raw_dir / "items.parquet"),
            as_of=end.isoformat(),
            now=now.isoformat(),
            home=str(settings.home),
        )
    _summary(settings, result, now)


def _sample_user(settings: Settings) -> str:
    from ranking.events import warehouse

    with warehouse(settings.warehouse_path, read_only=True) as con:
        return con.execute(
            "SELECT user_id FROM events GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1"
        ).fetchall()[0][0]


def _summary(settings: Settings, result, now: datetime) -> None:
    events_report = next(r for r in result.loads if r.target == "events")
    table = result.training.table
    console.rule("Summary")
    console.print(f"Events: {events_report.summary()}")
    for reason, n in sorted(events_report.reasons.items()):
        console.print(f"  quarantined: {reason}: {n}")
    console.print(
        f"Feature rows: {sum(result.features.rows.values()):,} in "
        f"{len(result.features.snapshots)} daily snapshots "
        + ", ".join(f"{k} {v:,}" for k, v in result.features.rows.items())
    )
    model, base = table.loc["xgboost"], table.loc["most_popular"]
    console.print(
        f"Test NDCG@10: XGBoost {model['ndcg@10']:.4f} vs most-popular {base['ndcg@10']:.4f} "
        f"({model['ndcg@10'] / base['ndcg@10']:.2f}x); MAP@10 {model['map@10']:.4f} vs "
        f"{base['map@10']:.4f}; recall@10 {model['recall@10']:.4f} vs {base['recall@10']:.4f}"
    )
    console.print(f"Ranker v{result.training.version}: {result.training.reason}")
    console.print(f"Champion: v{result.training.champion_version}")
    user = _sample_user(settings)
    _print_ranked(_rank(settings, user, 10, now))
    console.print("Open the UIs:")
    for name, command in ui_commands(settings).items():
        console.print(f"  [bold]{name}:[/] {command}", soft_wrap=True)
    console.print(f"  Try: ranking rank --user {user} --k 10", soft_wrap=True)
    console.print("       ranking evaluate | ranking monitor | ranking models list | "
                  "ranking features list", soft_wrap=True)  # fmt: skip


def quiet_libraries() -> None:
    """Keep third-party deprecation chatter out of the terminal (and of child processes)."""
    for category in (DeprecationWarning, FutureWarning, RuntimeWarning):
        warnings.filterwarnings("ignore", category=category)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("feast").setLevel(logging.ERROR)


def main() -> None:  # pragma: no cover - console entry point
    quiet_libraries()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
