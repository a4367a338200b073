"""Ingest flow: load an events file or folder (and items) into the warehouse."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from flows.common import flow_settings, parse_time, retrying, utc_now
from ranking.ingest.contract import LoadReport, ingest
from ranking.ingest.sources import resolve_source


@task(**retrying(2))
def load(
    warehouse: str,
    events_path: str,
    items_path: str | None,
    event_types: list[str],
    now_iso: str,
    mapping_path: str | None,
    source_format: str,
    served_id_length: int | None,
    earliest_iso: str,
) -> list[LoadReport]:
    source = resolve_source(Path(events_path), Path(items_path) if items_path else None,
                                    Path(mapping_path) if mapping_path else None,
                                    source_format)  # fmt: skip
    return ingest(
        Path(warehouse),
        source.events,
        event_types,
        parse_time(now_iso, utc_now()),
        source.items,
        events_reader=source.events_reader,
        items_reader=source.items_reader,
        served_id_length=served_id_length,
        earliest=datetime.fromisoformat(earliest_iso),
        bad_optional=source.bad_optional,
    )


def _markdown(reports: list[LoadReport]) -> str:
    lines = ["# Ingestion", "", "| target | read | accepted | quarantined | duplicates |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in reports:
        lines.append(f"| {r.target} | {r.read:,} | {r.accepted:,} | {r.quarantined:,} | "
                     f"{r.duplicates:,} |")  # fmt: skip
    reasons = {k: v for r in reports for k, v in r.reasons.items()}
    if reasons:
        lines += ["", "Quarantined, by reason:", ""]
        lines += [f"- {reason}: {n}" for reason, n in sorted(reasons.items())]
    nulled = [f"- {r.target}.{column}: {n}" for r in reports for column, n in r.nulled.items()]
    if nulled:
        lines += ["", "Bad optional fields nulled (rows kept), by column:", "", *nulled]
    return "\n".join(lines)


@flow(name="ingest-events", log_prints=True)
def ingest_flow(
    events_path: str, items_path: str | None = None, now: str | None = None,
    home: str | None = None, mapping_path: str | None = None, source_format: str = "auto",
) -> list[LoadReport]:  # fmt: skip
    """Load events (and items) into the warehouse; bad rows go to quarantine.

    ``source_format`` 'auto' reads contract files and recognises a MovieLens folder;
    ``mapping_path`` names a YAML column mapping for any other log (``ranking.ingest.mapping``).
    """
    settings = flow_settings(home)
    now_iso = parse_time(now, utc_now()).isoformat()
    reports = load(str(settings.warehouse_path), events_path, items_path, settings.event_types,
                   now_iso, mapping_path, source_format,
                   settings.serving.max_id_length,
                   settings.events.earliest_timestamp.isoformat())  # fmt: skip
    for report in reports:
        print(report.summary())
    create_markdown_artifact(_markdown(reports), key="ingestion", description="Load counts")
    return reports
