"""``ranking simulate``: the closed loop against a simulated audience, round by round."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.common import HomeOption, console, now, settings_for
from cli.progress import progress_bars
from ranking.simulation.rounds import POLICIES

app = typer.Typer()

#: The table's columns and how each prints.
SHOWN = {"round": "{}", "policy": "{}", "ctr": "{:.4f}", "true_ndcg@10": "{:.4f}",
         "plays_per_session": "{:.3f}", "purchases_per_session": "{:.3f}",
         "skip_rate": "{:.3f}", "coverage": "{:.3f}", "explored_share": "{:.3f}",
         "champion": "v{}", "drift": "{}"}  # fmt: skip


def print_rounds(table) -> None:
    """The rounds' figures as a Rich table."""
    shown = Table(title="Simulated rounds")
    for column in SHOWN:
        shown.add_column(column, justify="left" if column in ("policy", "drift") else "right")
    for row in table.to_dict(orient="records"):
        shown.add_row(*(SHOWN[c].format(row[c]) if row.get(c) is not None else "-"
                        for c in SHOWN))  # fmt: skip
    console.print(shown)


@app.command()
def simulate(
    rounds: int = typer.Option(10, "--rounds", min=1, help="Rounds (days) to simulate."),
    users: int = typer.Option(300, "--users", min=1, help="Users served per round."),
    policy: str = typer.Option("champion", "--policy", help=f"One of {', '.join(POLICIES)}."),
    seed: int = typer.Option(7, "--seed", help="Seed of the history, the audience, the draws."),
    taste_shift_round: int = typer.Option(
        None, "--taste-shift-round", help="From this round on, drifting users' tastes jump."
    ),
    events: int = typer.Option(60_000, "--events", help="Generated history before round 1."),
    days: int = typer.Option(28, "--days", help="Days of generated history."),
    exploration: float = typer.Option(
        0.1, "--exploration", min=0.0, max=1.0, help="serving.exploration while simulating."
    ),
    home: Path = HomeOption,
) -> None:
    """Serve a simulated audience, let it react, and run the loop on what it did (Prefect
    flow); print each round's figures, log them to MLflow and plot them."""
    if policy not in POLICIES:
        raise typer.BadParameter(f"one of {', '.join(POLICIES)}", param_hint="--policy")
    from flows.simulate import simulate_flow

    settings = settings_for(home)
    with progress_bars(f"{rounds} simulated rounds through Prefect"):
        result = simulate_flow(
            rounds=rounds, users=users, policy=policy, seed=seed,
            taste_shift_round=taste_shift_round, events=events, days=days,
            exploration=exploration, today=now().isoformat(), home=str(settings.home),
        )  # fmt: skip
    print_rounds(result.table)
    console.print(f"MLflow run: {result.run_id} (experiment 'simulation')", soft_wrap=True)
    console.print(f"plot: {result.plot}", soft_wrap=True)
