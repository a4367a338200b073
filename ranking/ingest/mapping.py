"""Other people's event logs: map their columns and event names onto the data contract.

A mapping is a small YAML file. It only renames and translates: the mapped rows then go
through the same checks, quarantine and dedupe as any contract file, so an unmapped event
type is quarantined as unknown, never guessed. Row numbers and file names in the
quarantine stay those of the original file. One difference: a bad optional field (an
unparseable ``created_at``, a price or value that is not a number, a negative position...)
is set to NULL and counted per column in the load report, and the row is kept
(``bad_optional_fields: quarantine_row`` restores the contract's rule). A bad required
field (ids, ``event_type``, ``event_timestamp``) quarantines its row with the reason.

Keys of each table (``events``, and the optional ``items``):

``columns``
    contract column -> source column name, or 0-based position when there is no header.
``constants``
    contract column -> one value for every row (``{event_type: rating}`` for a ratings
    log that has no event column).
``format``
    ``csv``, ``parquet`` or ``json``; by default from the suffix (``.csv``, ``.tsv``,
    ``.parquet``, ``.json``/``.jsonl``/``.ndjson``). Set it for any other name (``.dat``,
    ``.data``, ``.txt``, ``.log``...); a folder then loads every file not hidden.
``header`` (csv)
    whether the first line names the columns (default true).
``delimiter`` (csv)
    1 to 4 characters (``"\\t"``, ``"|"``, ``"::"``...); default ``,``, tab for ``.tsv``.
``encoding`` (csv)
    ``utf-8`` (default), ``utf-16`` or ``latin-1`` (also written ``iso-8859-1``).
``timestamp_format``
    a ``strptime`` format (``"%d-%b-%Y"`` for ``01-Jan-1995``) of this table's time:
    ``event_timestamp`` for events, ``created_at`` for items, read as UTC unless the format
    has ``%z``; only that format parses. Without it, ISO text and Unix seconds or
    milliseconds are recognised.
``category_flags``
    one-hot columns (position or name -> category name): the category is the names of
    the flags that hold 1 (or true, yes), ``|``-joined; instead of a ``category`` column.

Events also take ``event_types`` (source name -> contract event type, case ignored) and
``timestamp_unit`` (``auto``, ``s``, ``ms`` or ``iso``); items take ``category_separator``
(default ``|``). Without an items table, a ``category`` in the events (a column or
``category_flags``) makes the catalogue.

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
from typing import ClassVar, Literal

import duckdb
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ranking.errors import IngestError
from ranking.ingest.rules import BadOptional
from ranking.schema import EVENT_COLUMNS, ITEM_COLUMNS
from ranking.warehouse import quote

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_ .\-]{0,127}")

#: Encodings DuckDB's CSV reader knows without an extension, and other names for them.
ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "utf-16": "utf-16", "utf16": "utf-16",
             "latin-1": "latin-1", "latin1": "latin-1", "iso-8859-1": "latin-1",
             "iso8859-1": "latin-1"}  # fmt: skip

#: Values of a one-hot flag column that set the flag.
FLAG_TRUE = ("1", "true", "yes")


def _plain_source(where: str, source: str | int) -> None:
    if isinstance(source, int) and source < 0:
        raise ValueError(f"{where}: position {source} is negative")
    if isinstance(source, str) and not _IDENTIFIER.fullmatch(source):
        raise ValueError(f"{where}: source name {source!r} is not a plain name")


def source_reference(source: str | int) -> str:
    """SQL for a source column: quoted by name, or DuckDB's positional reference (robust to
    how it names header-less columns)."""
    if isinstance(source, int):
        return f"#{source + 1}"
    return '"' + str(source).replace('"', '""') + '"'


class TableMapping(BaseModel):
    """How one source table's columns become contract columns."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored
    section: ClassVar[str] = "table"

    columns: dict[str, str | int] = Field(
        description="Contract column -> source column name, or 0-based position without header."
    )
    format: Literal["csv", "parquet", "json"] | None = Field(
        default=None, description="File format; by default from the file's suffix."
    )
    header: bool = True
    delimiter: str | None = Field(default=None, description="CSV delimiter: ',' (tab for .tsv).")
    encoding: str = Field(default="utf-8", description="CSV encoding: utf-8, utf-16, latin-1.")
    constants: dict[str, str] = Field(
        default_factory=dict, description="Contract columns with a fixed value (e.g. event_type)."
    )
    timestamp_format: str | None = Field(
        default=None, description="strptime format of the table's time column."
    )
    category_flags: dict[int | str, str] = Field(
        default_factory=dict, description="One-hot column (position or name) -> category name."
    )

    @field_validator("columns")
    @classmethod
    def _source_names_are_plain(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for target, source in value.items():
            _plain_source(f"column {target!r}", source)
        return value

    @field_validator("delimiter")
    @classmethod
    def _delimiter_is_short(cls, value: str | None) -> str | None:
        if value is not None and not 1 <= len(value.encode()) <= 4:
            raise ValueError(f"{value!r} must be 1 to 4 bytes (DuckDB's limit)")
        if value is not None and any(c in value for c in '"\r\n'):
            raise ValueError(f"{value!r} may not hold a double quote or a line break")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding_is_known(cls, value: str) -> str:
        name = ENCODINGS.get(value.strip().lower().replace("_", "-"))
        if name is None:
            raise ValueError(f"{value!r} is not one of utf-8, utf-16, latin-1")
        return name

    @field_validator("timestamp_format")
    @classmethod
    def _format_parses(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if "%" not in value:
            raise ValueError(f"{value!r} holds no % directive")
        con = duckdb.connect()
        try:
            con.execute(f"SELECT try_strptime('', {quote(value)})")
        except duckdb.Error as exc:
            raise ValueError(f"{value!r}: {str(exc).strip().splitlines()[0]}") from None
        finally:
            con.close()
        return value

    @field_validator("category_flags")
    @classmethod
    def _flags_are_plain(cls, value: dict[int | str, str]) -> dict[int | str, str]:
        for source, name in value.items():
            _plain_source(f"flag {source!r}", source)
            if not name.strip() or "|" in name:
                raise ValueError(f"flag {source!r}: category {name!r} is empty or holds '|'")
        return value

    @model_validator(mode="after")
    def _csv_options_need_csv(self) -> TableMapping:
        csv_options = self.delimiter is not None or self.encoding != "utf-8"
        if self.format in ("parquet", "json") and csv_options:
            raise ValueError(f"delimiter and encoding apply to csv, not {self.format}")
        return self

    def source_column(self, target: str) -> str | None:
        """The quoted source column for a contract column, or None when unmapped."""
        source = self.columns.get(target)
        return None if source is None else source_reference(source)

    def targets(self) -> set[str]:
        """The contract columns this table fills."""
        flags = {"category"} if self.category_flags else set()
        return set(self.columns) | set(self.constants) | flags


class EventsMapping(TableMapping):
    """An events log: columns, event-type names and timestamp unit."""

    section: ClassVar[str] = "events"

    event_types: dict[str, str] = Field(
        default_factory=dict, description="Source event name -> contract event type."
    )
    timestamp_unit: Literal["auto", "s", "ms", "iso"] = "auto"

    @model_validator(mode="after")
    def _one_way_to_read_time(self) -> EventsMapping:
        if self.timestamp_format is not None and self.timestamp_unit in ("s", "ms"):
            raise ValueError("set timestamp_format or timestamp_unit s/ms, not both")
        return self


class ItemsMapping(TableMapping):
    """An item catalogue: columns and the separator of several categories."""

    section: ClassVar[str] = "items"

    category_separator: str = "|"


class SourceMapping(BaseModel):
    """A whole source: its events and, optionally, its items."""

    model_config = ConfigDict(extra="forbid")

    events: EventsMapping
    items: ItemsMapping | None = None
    bad_optional_fields: BadOptional = Field(
        default="null_field",
        description="A bad optional field is nulled and counted (null_field) or "
        "quarantines its row (quarantine_row).",
    )

    @classmethod
    def from_yaml(cls, path: Path) -> SourceMapping:
        """Read and validate a mapping file; errors name the file and the field."""
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
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
            unknown = sorted(table.targets() - set(known))
            if unknown:
                raise IngestError(f"{name} mapping: unknown contract columns {unknown}")
            missing = [c for c in required if c not in table.targets()]
            if missing:
                raise IngestError(f"{name} mapping: required columns {missing} are not mapped")
            if table.category_flags and "category" in set(table.columns) | set(table.constants):
                raise IngestError(f"{name} mapping: set category or category_flags, not both")
        for required in ("event_type", "event_timestamp"):
            if required not in self.events.targets():
                raise IngestError(f"events mapping: {required!r} is not mapped")
