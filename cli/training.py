"""``ranking train`` and ``ranking evaluate``: the ranker and its offline evaluation."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from cli.common import (
    AS_OF_DEFAULT,
    HomeOption,
    console,
    fail,
    now,
    print_frame,
    require_warehouse,
    settings_for,
)
from cli.progress import progress_bars
from ranking.ingest.profile import default_as_of

app = typer.Typer()


@app.command()
def train(
    as_of: str = typer.Option(None, help=f"Train on data before this time {AS_OF_DEFAULT}."),
    home: Path = HomeOption,
) -> None:
    """Train, evaluate, register in MLflow and promote if better (Prefect flow)."""
    from flows.train import train_flow

    settings = settings_for(home)
    with progress_bars("Training through Prefect: training set, fit, evaluation, gate"):
        result = train_flow(as_of=as_of, home=str(settings.home))
    console.print(result.table.round(4).to_string())
    console.print(f"ranker v{result.version}: {result.reason}")


@app.command()
def evaluate(
    as_of: str = typer.Option(None, help=f"Cut-off for the holdout end {AS_OF_DEFAULT}."),
    full_catalogue: bool = typer.Option(
        False, "--full-catalogue", help="Rank every available item, not sampled candidates."
    ),
    home: Path = HomeOption,
) -> None:
    """The evaluation table for the current champion and every baseline, same holdout."""
    from ranking.evaluation.report import evaluate_champion
    from ranking.publishing.models import load_champion

    settings = settings_for(home)
    require_warehouse(settings)
    champion = load_champion(settings)
    if champion is None:
        fail(f"model {settings.publishing.model_name!r} has no champion yet: run `ranking train`")
    moment = datetime.fromisoformat(as_of) if as_of else default_as_of(settings, now())
    done = evaluate_champion(settings, champion.model, champion.features,
                             f"champion v{champion.version}", moment, full_catalogue)  # fmt: skip
    console.print(
        f"Holdout: users active from {done.times.test_start:%Y-%m-%d %H:%M} to "
        f"{done.times.end:%Y-%m-%d %H:%M} with history before; "
        f"{int(done.table['groups'].iloc[0])} queries, "
        f"{'full catalogue' if full_catalogue else 'sampled candidates'}"
    )
    print_frame(done.table.drop(columns="groups"), "Champion and baselines")
    print_frame(done.by_segment.rename_axis("model"), "By user segment")
    if done.retrieval_recall is not None:
        print_frame(done.retrieval_recall.rename_axis("source"), "Retrieval recall")
