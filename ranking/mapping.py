"""Other people's event logs: map their columns and event names onto the data contract.

A mapping is a small YAML file (or the built-in MovieLens adapter). It only renames and
translates: the mapped rows then go through the same checks, quarantine and dedupe as
any contract file, so an unmapped event type is quarantined as unknown, never guessed.
Row numbers and file names in the quarantine stay those of the original file.

Example (an e-commerce log without a header, Unix-second timestamps)::

    events:
      header: false
      columns: {user_id: 0, item_id: 1, category: 2, event_type: 3, event_timestamp: 4}
      event_types: {pv: view, cart: add_to_cart, fav: click, buy: purchase}
      timestamp_unit: s
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ranking.events import (
    EVENT_COLUMNS,
    ITEM_COLUMNS,
    SUPPORTED_SUFFIXES,
    IngestError,
    Reader,
    plain_reader,
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_ .\-]{0,127}")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class TableMapping(BaseModel):
    """How one source table's columns become contract columns."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    columns: dict[str, str | int] = Field(
        description="Contract column -> source column name, or 0-based position without header."
    )
    header: bool = True
    delimiter: str = ","
    constants: dict[str, str] = Field(
        default_factory=dict, description="Contract columns with a fixed value (e.g. event_type)."
    )

    @field_validator("columns")
    @classmethod
    def _source_names_are_plain(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for target, source in value.items():
            if isinstance(source, int) and source < 0:
                raise ValueError(f"column {target!r}: position {source} is negative")
            if isinstance(source, str) and not _IDENTIFIER.fullmatch(source):
                raise ValueError(f"column {target!r}: source name {source!r} is not a plain name")
        return value

    def source_column(self, target: str) -> str | None:
        """The quoted source column for a contract column, or None when unmapped."""
        source = self.columns.get(target)
        if source is None:
            return None
        if isinstance(source, int):
            # DuckDB's positional reference: robust to how it names header-less columns.
            return f"#{source + 1}"
        return '"' + str(source).replace('"', '""') + '"'


class EventsMapping(TableMapping):
    """An events log: columns, event-type names and timestamp unit."""

    event_types: dict[str, str] = Field(
        default_factory=dict, description="Source event name -> contract event type."
    )
    timestamp_unit: Literal["auto", "s", "ms", "iso"] = "auto"


class ItemsMapping(TableMapping):
    """An item catalogue: columns and the separator of several categories."""

    category_separator: str = "|"


class SourceMapping(BaseModel):
    """A whole source: its events and, optionally, its items."""

    model_config = ConfigDict(extra="forbid")

    events: EventsMapping
    items: ItemsMapping | None = None

    @classmethod
    def from_yaml(cls, path: Path) -> SourceMapping:
        """Read and validate a mapping file; errors name the file and the field."""
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
            raise IngestError(f"{path}: cannot read the mapping: {first_line}") from None
        try:
            mapping = cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
            )
            raise IngestError(f"{path}: invalid mapping: {problems}") from None
        try:
            mapping.check()
        except IngestError as exc:
            raise IngestError(f"{path}: {exc}") from None
        return mapping

    def check(self) -> None:
        """Every contract column is known and the required ones are mapped."""
        for name, table, known, required in (
            ("events", self.events, EVENT_COLUMNS + ["category"], ("user_id", "item_id")),
            ("items", self.items, ITEM_COLUMNS, ("item_id",)),
        ):
            if table is None:
                continue
            targets = set(table.columns) | set(table.constants)
            unknown = sorted(targets - set(known))
            if unknown:
                raise IngestError(f"{name} mapping: unknown contract columns {unknown}")
            missing = [c for c in required if c not in targets]
            if missing:
                raise IngestError(f"{name} mapping: required columns {missing} are not mapped")
        events = set(self.events.columns) | set(self.events.constants)
        for required in ("event_type", "event_timestamp"):
            if required not in events:
                raise IngestError(f"events mapping: {required!r} is not mapped")


def _raw_reader(path: Path, table: TableMapping) -> str:
    kind = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    p = _quote(str(path))
    if kind == "csv":
        return (
            f"read_csv({p}, all_varchar = true, header = {str(table.header).lower()}, "
            f"delim = {_quote(table.delimiter)}, null_padding = true)"
        )
    if kind == "parquet":
        return f"read_parquet({p})"
    if kind == "json":
        return f"read_json({p}, format = 'newline_delimited')"
    raise IngestError(f"{path}: unsupported format {path.suffix!r}")


def _timestamp(column: str, unit: str) -> str:
    if unit in ("auto", "iso"):
        return column
    divisor = "1000.0" if unit == "ms" else "1.0"
    converted = (
        f"strftime(try(to_timestamp(try_cast({column} AS DOUBLE) / {divisor})) AT TIME ZONE 'UTC', "
        "'%Y-%m-%dT%H:%M:%S.%f')"
    )
    return f"coalesce({converted}, {column}::VARCHAR)"  # unparseable stays, to be quarantined


def _relation(path: Path, mapping: TableMapping, columns: list[str], special) -> str:
    """``SELECT`` of every contract column: a constant, NULL, a special form or the text."""
    selects = []
    for target in columns:
        source = mapping.source_column(target)
        if target in mapping.constants:
            expr = _quote(mapping.constants[target])
        elif source is None:
            expr = "NULL"
        else:
            expr = special(target, source) or f"{source}::VARCHAR"
        selects.append(f"{expr} AS {target}")
    return f"(SELECT {', '.join(selects)} FROM {_raw_reader(path, mapping)})"


def events_reader(path: Path, mapping: EventsMapping) -> str:
    """SQL relation over ``path`` with the contract's event columns (for the ingester)."""

    def special(target: str, source: str) -> str | None:
        if target == "event_type" and mapping.event_types:
            cases = " ".join(
                f"WHEN {_quote(k.lower())} THEN {_quote(v)}" for k, v in mapping.event_types.items()
            )
            return f"CASE lower(trim({source}::VARCHAR)) {cases} ELSE {source}::VARCHAR END"
        if target == "event_timestamp":
            return _timestamp(source, mapping.timestamp_unit)
        return None

    return _relation(path, mapping, EVENT_COLUMNS, special)


def items_reader(path: Path, mapping: ItemsMapping) -> str:
    """SQL relation over ``path`` with the contract's item columns."""

    def special(target: str, source: str) -> str | None:
        if target == "category" and mapping.category_separator != "|":
            return f"replace({source}::VARCHAR, {_quote(mapping.category_separator)}, '|')"
        return None

    return _relation(path, mapping, ITEM_COLUMNS, special)


# MovieLens (ml-latest-small / ml-latest layout) -------------------------------------------

MOVIELENS_FILES = ("ratings.csv", "movies.csv")


def is_movielens(path: Path) -> bool:
    """A folder in the MovieLens layout (``ratings.csv`` and ``movies.csv``)."""
    path = Path(path)
    return path.is_dir() and all((path / name).is_file() for name in MOVIELENS_FILES)


def movielens_events_reader(path: Path) -> str:
    """``ratings.csv`` as ``rating`` events (value = stars), ``tags.csv`` as ``tag`` events."""
    p = _quote(str(path))
    if path.name == "tags.csv":
        return (
            # Several tags by one user on one movie in the same second are distinct events.
            "(SELECT md5(concat_ws('|', userId, movieId, tag, timestamp)) AS event_id, "
            "userId::VARCHAR AS user_id, movieId::VARCHAR AS item_id, "
            "'tag' AS event_type, timestamp::VARCHAR AS event_timestamp, NULL AS value, "
            f"NULL AS session_id, NULL AS position FROM read_csv({p}, all_varchar = true))"
        )
    return (
        "(SELECT NULL AS event_id, userId AS user_id, movieId AS item_id, 'rating' AS event_type, "
        "timestamp AS event_timestamp, rating AS value, NULL AS session_id, NULL AS position "
        f"FROM read_csv({p}, all_varchar = true))"
    )


def movielens_items_reader(path: Path) -> str:
    """``movies.csv`` as items: genres are the categories, the release year is created_at."""
    p = _quote(str(path))
    year = r"regexp_extract(trim(title), '\((\d{4})\)$', 1)"
    return (
        "(SELECT movieId AS item_id, "
        "CASE WHEN genres = '(no genres listed)' THEN NULL ELSE genres END AS category, "
        f"CASE WHEN {year} <> '' THEN {year} || '-01-01' END AS created_at, "
        f"NULL AS price, 'true' AS available FROM read_csv({p}, all_varchar = true))"
    )


def movielens_files(path: Path) -> tuple[list[Path], Path]:
    """(event files, items file) of a MovieLens folder."""
    path = Path(path)
    events = [path / "ratings.csv"] + ([path / "tags.csv"] if (path / "tags.csv").exists() else [])
    return events, path / "movies.csv"


# One place that decides how a path is read -----------------------------------------------


@dataclass
class Source:
    """What to load and how: files plus the readers that give them contract columns."""

    kind: str  # 'contract', 'movielens' or 'mapped'
    events: list[Path]
    items: list[Path] | None
    events_reader: Reader = plain_reader
    items_reader: Reader = plain_reader


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


def items_from_events_reader(path: Path, mapping: EventsMapping) -> str:
    """One item row per item of an events log that carries the item's category."""
    item, category = mapping.source_column("item_id"), mapping.source_column("category")
    return (
        f"(SELECT {item}::VARCHAR AS item_id, max({category}::VARCHAR) AS category, "
        "NULL AS created_at, NULL AS price, NULL AS available "
        f"FROM {_raw_reader(path, mapping)} GROUP BY 1)"
    )
