"""What a simulation measured: one row per round, as an MLflow run with a metric per
round (``step`` = round) and a PNG plot of the rounds (rounds on x, one line per policy).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd

from ranking.settings import Settings
from ranking.simulation.closed_loop import SimulationSpec

#: The MLflow experiment of simulations.
SIMULATION_EXPERIMENT = "simulation"
#: The figures plotted, one panel each.
PLOTTED = ("ctr", "true_ndcg@10", "plays_per_session", "coverage")


def plot_rounds(table: pd.DataFrame, path: Path) -> Path:
    """A PNG of ``table`` (``round``, ``policy`` and the figures): rounds on x, one line
    per policy in each panel, the taste shift (``taste_shift``) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 3.4))
    for ax, metric in zip(axes, PLOTTED, strict=True):
        for policy, rows in table.groupby("policy", sort=True):
            means = rows.groupby("round")[metric].mean()
            ax.plot(means.index, means.to_numpy(), marker="o", label=policy)
        shifted = table.loc[table.get("taste_shift", pd.Series(False, index=table.index))
                            .astype(bool), "round"]  # fmt: skip
        if len(shifted):
            ax.axvline(shifted.min() - 0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_title(metric)
        ax.set_xlabel("round")
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def log_simulation(settings: Settings, spec: SimulationSpec, table: pd.DataFrame,
                   plot: Path | None) -> str:  # fmt: skip
    """One MLflow run for the simulation: the spec as parameters, each numeric figure
    of each round as a metric with ``step`` = round, the table and the plot as artifacts."""
    import mlflow

    from ranking.schema import mlflow_key
    from ranking.training.tracking import client_for

    client = client_for(settings)
    found = client.get_experiment_by_name(SIMULATION_EXPERIMENT)
    experiment_id = found.experiment_id if found else client.create_experiment(
        SIMULATION_EXPERIMENT, artifact_location=settings.mlflow_artifact_location)  # fmt: skip
    name = f"{spec.policy} x{spec.rounds} seed {spec.seed}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.log_params({k: v for k, v in asdict(spec).items() if v is not None})
        numeric = table.select_dtypes("number").drop(columns=["round"], errors="ignore")
        for row, step in zip(numeric.itertuples(index=False), table["round"], strict=True):
            values = {mlflow_key(k): float(v) for k, v in zip(numeric.columns, row, strict=True)
                      if v == v}  # fmt: skip
            mlflow.log_metrics(values, step=int(step))
        folder = settings.home / SIMULATION_EXPERIMENT
        folder.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / "rounds.csv", index=False)
        mlflow.log_artifact(str(folder / "rounds.csv"))
        if plot is not None:
            mlflow.log_artifact(str(plot))
    return run.info.run_id
