"""One place that decides how a path is read: contract files, MovieLens, or a mapping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ranking.errors import IngestError
from ranking.ingest.mapping import (
    SourceMapping,
    events_reader,
    items_from_events_reader,
    items_reader,
)
from ranking.ingest.movielens import (
    MOVIELENS_FILES,
    is_movielens,
    movielens_events_reader,
    movielens_files,
    movielens_items_reader,
)
from ranking.ingest.readers import Reader, plain_reader
from ranking.ingest.rules import BadOptional


@dataclass
class Source:
    """What to load and how: files plus the readers that give them contract columns."""

    kind: str  # 'contract', 'movielens' or 'mapped'
    events: list[Path]
    items: list[Path] | None
    events_reader: Reader = plain_reader
    items_reader: Reader = plain_reader
    #: What a bad optional field does: the contract quarantines its row, a mapping nulls it.
    bad_optional: BadOptional = "quarantine_row"


def resolve_source(
    events_path: Path,
    items_path: Path | None = None,
    mapping_path: Path | None = None,
    source_format: str = "auto",
) -> Source:
    """Decide how to read ``events_path``: a contract file/folder, MovieLens, or a mapping.

    ``source_format`` is 'auto' (MovieLens when the folder has its layout), 'contract'
    or 'movielens'. A mapping file always wins.
    """
    events_path = Path(events_path)
    items = [Path(items_path)] if items_path else None
    if mapping_path is not None:
        mapping = SourceMapping.from_yaml(Path(mapping_path))
        items_reader_fn = plain_reader
        if mapping.items is not None:
            items_mapping = mapping.items

            def items_reader_fn(p: Path) -> str:
                return items_reader(p, items_mapping)

        elif "category" in mapping.events.columns:
            # The log carries each item's category: derive the catalogue from it.
            items = [events_path]
            events_mapping = mapping.events

            def items_reader_fn(p: Path) -> str:
                return items_from_events_reader(p, events_mapping)

        events_mapping = mapping.events
        return Source(
            "mapped",
            [events_path],
            items,
            lambda p: events_reader(p, events_mapping),
            items_reader_fn,
        )
    if source_format == "movielens" or (source_format == "auto" and is_movielens(events_path)):
        if not is_movielens(events_path):
            raise IngestError(f"{events_path}: not a MovieLens folder (needs {MOVIELENS_FILES})")
        files, movies = movielens_files(events_path)
        return Source("movielens", files, [movies], movielens_events_reader,
                      movielens_items_reader)  # fmt: skip
    if source_format not in ("auto", "contract"):
        raise IngestError(f"unknown source format {source_format!r}: auto, contract, movielens")
    return Source("contract", [events_path], items)
