"""The parent flow: ingest -> features -> train, one run of the whole loop."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.common import flow_settings, parse_time, run_as_of, utc_now
from flows.features import features_flow
from flows.ingest import ingest_flow
from flows.train import TrainResult, train_flow
from ranking.features.snapshots import FeatureBuild
from ranking.ingest.contract import LoadReport


@dataclass
class LoopResult:
    """Everything the loop did, for the CLI's summary."""

    loads: list[LoadReport]
    features: FeatureBuild
    training: TrainResult


@flow(name="ranking-loop", log_prints=True)
def ranking_loop(
    events_path: str,
    items_path: str | None = None,
    as_of: str | None = None,
    now: str | None = None,
    home: str | None = None,
    mapping_path: str | None = None,
    source_format: str = "auto",
) -> LoopResult:
    """Ingest new events, rebuild features, train and maybe promote a new ranker."""
    flow_settings(home)
    now_dt = parse_time(now, utc_now())
    loads = ingest_flow(events_path, items_path, now=now_dt.isoformat(), home=home,
                        mapping_path=mapping_path, source_format=source_format)  # fmt: skip
    # One as-of time for both stages, judged on what was just loaded.
    as_of_iso = run_as_of(flow_settings(home), as_of, now_dt).isoformat()
    build = features_flow(as_of=as_of_iso, home=home)
    training = train_flow(as_of=as_of_iso, home=home)
    lines = [f"- {r.summary()}" for r in loads]
    lines.append(f"- feature rows: {sum(build.rows.values()):,}")
    lines.append(f"- ranker v{training.version}: {training.reason}")
    create_markdown_artifact("# Ranking loop\n\n" + "\n".join(lines), key="ranking-loop",
                             description="One run of the loop")  # fmt: skip
    return LoopResult(loads=loads, features=build, training=training)
