"""Other people's event logs: map their columns and event names onto the data contract.

A mapping is a small YAML file. It only renames and translates: the mapped rows then go
through the same checks, quarantine and dedupe as any contract file, so an unmapped event
type is quarantined as unknown, never guessed. Row numbers and file names in the
quarantine stay those of the original file.

Example (an e-commerce log without a header, Unix-second timestamps)::

    events:
      header: false
      columns: {user_id: 0, item_id: 1, category: 2, event_type: 3, event_timestamp: 4}
      event_types: {pv: view, cart: add_to_cart, fav: click, buy: purchase}
      timestamp_unit: s
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ranking.errors import IngestError
from ranking.ingest.readers import SUPPORTED_SUFFIXES, read_csv_sql, read_json_sql
from ranking.schema import EVENT_COLUMNS, ITEM_COLUMNS
from ranking.warehouse import quote

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_ .\-]{0,127}")


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
    p = quote(str(path))
    if kind == "csv":
        return read_csv_sql(path, header=table.header, delimiter=table.delimiter)
    if kind == "parquet":
        return f"read_parquet({p})"
    if kind == "json":
        return read_json_sql(path, [c for c in table.columns.values() if isinstance(c, str)])
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
            expr = quote(mapping.constants[target])
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
                f"WHEN {quote(k.lower())} THEN {quote(v)}" for k, v in mapping.event_types.items()
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
            return f"replace({source}::VARCHAR, {quote(mapping.category_separator)}, '|')"
        return None

    return _relation(path, mapping, ITEM_COLUMNS, special)


def items_from_events_reader(path: Path, mapping: EventsMapping) -> str:
    """One item row per item of an events log that carries the item's category."""
    item, category = mapping.source_column("item_id"), mapping.source_column("category")
    return (
        f"(SELECT {item}::VARCHAR AS item_id, max({category}::VARCHAR) AS category, "
        "NULL AS created_at, NULL AS price, NULL AS available "
        f"FROM {_raw_reader(path, mapping)} GROUP BY 1)"
    )
