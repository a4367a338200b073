"""The closed loop as a flow: generated history, then each round the serving path serves
the audience, the audience reacts, its events land in the raw folder and the scheduled
flows run on them (ingest, features, train and gate, monitor)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.common import flow_settings, parse_time, utc_now
from flows.features import features_flow
from flows.ingest import ingest_flow
from flows.loop import ranking_loop
from flows.monitor import monitor_flow
from flows.train import train_flow
from ranking.settings import Settings
from ranking.simulation import closed_loop, report
from ranking.simulation.audience import Audience
from ranking.simulation.rounds import round_metrics


@dataclass
class SimulationResult:
    """The rounds' table, the MLflow run and the plot."""

    table: pd.DataFrame
    run_id: str
    plot: str


@task(cache_policy=NO_CACHE)
def write_history(settings: Settings, spec: closed_loop.SimulationSpec, end_iso: str) -> dict:
    return closed_loop.write_history(settings, spec, parse_time(end_iso, None))


@task(cache_policy=NO_CACHE)
def audience_for(spec: closed_loop.SimulationSpec, end_iso: str, round_no: int) -> Audience:
    return Audience.generate(spec.config(parse_time(end_iso, None), round_no))


@task(cache_policy=NO_CACHE)
def serve(settings: Settings, audience: Audience, spec: closed_loop.SimulationSpec,
          round_no: int, at_iso: str) -> pd.DataFrame:  # fmt: skip
    return closed_loop.serve_round(settings, audience, spec, round_no, parse_time(at_iso, None))


@task(cache_policy=NO_CACHE)
def react(audience: Audience, served: pd.DataFrame, at_iso: str, seed: list[int]) -> pd.DataFrame:
    return audience.react(served, parse_time(at_iso, None), np.random.default_rng(seed))


@task(cache_policy=NO_CACHE)
def write_round(settings: Settings, round_no: int, served: pd.DataFrame,
                events: pd.DataFrame) -> str:  # fmt: skip
    return str(closed_loop.write_round(settings, round_no, served, events))


@task(cache_policy=NO_CACHE)
def measure(audience: Audience, served: pd.DataFrame, events: pd.DataFrame, at_iso: str) -> dict:
    return round_metrics(audience, served, events, parse_time(at_iso, None))


@task(cache_policy=NO_CACHE)
def record(settings: Settings, spec: closed_loop.SimulationSpec, table: pd.DataFrame) -> tuple:
    plot = report.plot_rounds(table, settings.home / report.SIMULATION_EXPERIMENT / "rounds.png")
    return report.log_simulation(settings, spec, table, plot), str(plot)


@flow(name="simulate-loop", log_prints=True)
def simulate_flow(
    rounds: int = 10, users: int = 300, policy: str = "champion", seed: int = 7,
    taste_shift_round: int | None = None, events: int = 60_000, days: int = 28,
    exploration: float = 0.1, today: str | None = None, home: str | None = None,
) -> SimulationResult:  # fmt: skip
    """Run ``rounds`` rounds of the closed loop with ``policy`` serving ``users`` a round."""
    spec = closed_loop.SimulationSpec(rounds=rounds, users=users, policy=policy, seed=seed,
                                      events=events, days=days, exploration=exploration,
                                      taste_shift_round=taste_shift_round)  # fmt: skip
    end = spec.history_end(parse_time(today, utc_now()))
    paths = write_history(flow_settings(home), spec, end.isoformat())
    ranking_loop(str(paths["events"]), str(paths["items"]), as_of=end.isoformat(),
                 now=end.isoformat(), home=home)  # fmt: skip
    rows = []
    for n in range(1, rounds + 1):
        at, closing = spec.serving_time(end, n).isoformat(), spec.closing_time(end, n).isoformat()
        audience = audience_for(spec, end.isoformat(), n)
        served = serve(flow_settings(home), audience, spec, n, at)
        reactions = react(audience, served, at, [seed, n, 2])
        folder = write_round(flow_settings(home), n, served, reactions)
        ingest_flow(folder, now=closing, home=home)
        features_flow(as_of=closing, home=home)
        trained = train_flow(as_of=closing, home=home)
        watched = monitor_flow(as_of=closing, home=home)
        figures = measure(audience, served, reactions, at)
        champion = (watched.retrained or trained).champion_version
        rows.append(closed_loop.round_row(spec, n, figures, served, champion, watched.status,
                                          trained.reason, trained.off_policy))  # fmt: skip
        print(
            f"round {n}: ctr {figures['ctr']:.4f}, true NDCG@10 "
            f"{figures['true_ndcg@10']:.4f}, champion v{champion}, drift {watched.status}"
        )
    table = pd.DataFrame(rows)
    run_id, plot = record(flow_settings(home), spec, table)
    create_table_artifact(table.round(4).astype(str).to_dict(orient="records"),
                          key="simulation", description="The simulated rounds")  # fmt: skip
    return SimulationResult(table, run_id, plot)
