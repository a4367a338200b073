"""One place that decides how a path is read: contract files, MovieLens, or a mapping."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ranking.errors import IngestError
from ranking.ingest.mapping import SourceMapping
from ranking.ingest.mapping_sql import (
    events_reader,
    items_from_events_reader,
    items_reader,
    mapped_suffixes,
)
from ranking.ingest.movielens import (
    MOVIELENS_FILES,
    is_movielens,
    movielens_events_reader,
    movielens_files,
    movielens_items_reader,
)
from ranking.ingest.readers import Reader, list_input_files, plain_reader
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
        return _mapped_source(SourceMapping.from_yaml(Path(mapping_path)), events_path, items)
    if source_format == "movielens" or (source_format == "auto" and is_movielens(events_path)):
        if not is_movielens(events_path):
            raise IngestError(f"{events_path}: not a MovieLens folder (needs {MOVIELENS_FILES})")
        files, movies = movielens_files(events_path)
        return Source("movielens", files, [movies], movielens_events_reader,
                      movielens_items_reader)  # fmt: skip
    if source_format not in ("auto", "contract"):
        raise IngestError(f"unknown source format {source_format!r}: auto, contract, movielens")
    return Source("contract", [events_path], items)


def _mapped_source(mapping: SourceMapping, events_path: Path, items: list[Path] | None) -> Source:
    """A mapped log: its files (a folder's files of the declared format, or of a known
    suffix), read through the mapping's SQL."""
    events_mapping, items_mapping = mapping.events, mapping.items
    events = list_input_files(events_path, mapped_suffixes(events_mapping))
    items_reader_fn: Reader = plain_reader
    if items_mapping is not None:
        if items is not None:
            items = [f for p in items for f in list_input_files(p, mapped_suffixes(items_mapping))]

        def items_reader_fn(p: Path) -> str:
            return items_reader(p, items_mapping)

    elif "category" in events_mapping.targets():
        # The log carries each item's category: derive the catalogue from it.
        items = events

        def items_reader_fn(p: Path) -> str:
            return items_from_events_reader(p, events_mapping)

    def events_reader_fn(p: Path) -> str:
        return events_reader(p, events_mapping)

    return Source("mapped", events, items, events_reader_fn, items_reader_fn,
                  mapping.bad_optional_fields)  # fmt: skip
