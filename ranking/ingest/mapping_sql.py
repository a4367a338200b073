"""A mapping's SQL: the relation that reads a source file as the contract's text columns.

Each contract column becomes a constant, a translated or reformatted source column, or
NULL; every value stays text, so the contract's checks (:mod:`ranking.ingest.contract`)
judge the mapped rows as they judge a contract file. A time that the mapping's format
cannot parse stays text the contract cannot read either, to be quarantined
(``event_timestamp``) or nulled (``created_at``) with the others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ranking.errors import IngestError
from ranking.ingest.mapping import (
    FLAG_TRUE,
    EventsMapping,
    ItemsMapping,
    TableMapping,
    source_reference,
)
from ranking.ingest.readers import SUPPORTED_SUFFIXES, read_csv_sql, read_json_sql
from ranking.schema import EVENT_COLUMNS, ITEM_COLUMNS
from ranking.warehouse import quote

#: Suffixes a mapping reads without ``format:`` (a ``.tsv`` file is tab-separated).
MAPPED_SUFFIXES = {**SUPPORTED_SUFFIXES, ".tsv": "csv"}

#: How a reformatted time is handed on: ISO text, naive UTC.
_ISO = "'%Y-%m-%dT%H:%M:%S.%f'"


def file_format(path: Path, table: TableMapping) -> str:
    """The declared format, else the suffix's; one line naming the file if neither."""
    if table.format is not None:
        return table.format
    kind = MAPPED_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise IngestError(
            f"{path}: unknown format {path.suffix or '(no suffix)'!r}; set `format:` (csv, "
            f"parquet or json) in the mapping's {table.section} section"
        )
    return kind


def mapped_suffixes(table: TableMapping) -> tuple[str, ...] | None:
    """What files of a folder a table reads: any (its format is declared) or known ones."""
    return None if table.format is not None else tuple(MAPPED_SUFFIXES)


def _raw_reader(path: Path, table: TableMapping) -> str:
    kind = file_format(path, table)
    if kind == "csv":
        tab = path.suffix.lower() == ".tsv"
        delimiter = table.delimiter or ("\t" if tab else ",")
        return read_csv_sql(path, table.header, delimiter, table.encoding)
    if table.delimiter is not None or table.encoding != "utf-8":
        raise IngestError(
            f"{path}: read as {kind}, but the mapping's {table.section} section sets a "
            "delimiter or an encoding (csv only); set `format: csv` if it is text"
        )
    if kind == "parquet":
        return f"read_parquet({quote(str(path))})"
    names = [c for c in table.columns.values() if isinstance(c, str)]
    names += [c for c in table.category_flags if isinstance(c, str)]
    return read_json_sql(path, names)


def _formatted_time(source: str, fmt: str) -> str:
    """``source`` parsed with a strptime format, as ISO text in UTC. Text not in the format
    is kept with a note, unreadable downstream: only the declared format parses it."""
    text = f"nullif(trim({source}::VARCHAR), '')"
    parsed = f"try_strptime({text}, {quote(fmt)})"
    if "%z" in fmt or "%Z" in fmt:  # DuckDB then returns a time with a zone
        parsed = f"({parsed} AT TIME ZONE 'UTC')"
    note = quote(f" (not {fmt})")
    return f"coalesce(strftime({parsed}, {_ISO}), {text} || {note})"


def _epoch_time(source: str, unit: str) -> str:
    """``source`` as Unix seconds or milliseconds, as ISO text; unparseable stays."""
    divisor = "1000.0" if unit == "ms" else "1.0"
    converted = (
        f"strftime(try(to_timestamp(try_cast({source} AS DOUBLE) / {divisor})) "
        f"AT TIME ZONE 'UTC', {_ISO})"
    )
    return f"coalesce({converted}, {source}::VARCHAR)"


def _category(table: TableMapping, source: str | None, separator: str = "|") -> str | None:
    """The category: the names of the one-hot flags set, or the column (its separator
    made ``|``)."""
    if table.category_flags:
        names = [
            f"CASE WHEN lower(trim({source_reference(flag)}::VARCHAR)) IN "
            f"({', '.join(quote(t) for t in FLAG_TRUE)}) THEN {quote(name)} END"
            for flag, name in table.category_flags.items()
        ]
        return f"nullif(concat_ws('|', {', '.join(names)}), '')"
    if source is not None and separator != "|":
        return f"replace({source}::VARCHAR, {quote(separator)}, '|')"
    return None


#: Given a contract column and its quoted source (None when unmapped), SQL or None.
Special = Callable[[str, "str | None"], "str | None"]


def _relation(path: Path, mapping: TableMapping, columns: list[str], special: Special) -> str:
    """``SELECT`` of every contract column: a constant, a special form, the text or NULL."""
    selects = []
    for target in columns:
        source = mapping.source_column(target)
        if target in mapping.constants:
            expr = quote(mapping.constants[target])
        else:
            expr = special(target, source) or (f"{source}::VARCHAR" if source else "NULL")
        selects.append(f"{expr} AS {target}")
    return f"(SELECT {', '.join(selects)} FROM {_raw_reader(path, mapping)})"


def events_reader(path: Path, mapping: EventsMapping) -> str:
    """SQL relation over ``path`` with the contract's event columns (for the ingester)."""

    def special(target: str, source: str | None) -> str | None:
        if source is None:
            return None
        if target == "event_type" and mapping.event_types:
            cases = " ".join(
                f"WHEN {quote(k.lower())} THEN {quote(v)}" for k, v in mapping.event_types.items()
            )
            return f"CASE lower(trim({source}::VARCHAR)) {cases} ELSE {source}::VARCHAR END"
        if target == "event_timestamp" and mapping.timestamp_format is not None:
            return _formatted_time(source, mapping.timestamp_format)
        if target == "event_timestamp" and mapping.timestamp_unit in ("s", "ms"):
            return _epoch_time(source, mapping.timestamp_unit)
        if target == "event_timestamp":
            return source  # keeps a typed time's type (a Parquet time with a zone)
        return None

    return _relation(path, mapping, EVENT_COLUMNS, special)


def items_reader(path: Path, mapping: ItemsMapping) -> str:
    """SQL relation over ``path`` with the contract's item columns."""

    def special(target: str, source: str | None) -> str | None:
        if target == "category":
            return _category(mapping, source, mapping.category_separator)
        if target == "created_at" and source is not None and mapping.timestamp_format:
            return _formatted_time(source, mapping.timestamp_format)
        return None

    return _relation(path, mapping, ITEM_COLUMNS, special)


def items_from_events_reader(path: Path, mapping: EventsMapping) -> str:
    """One item row per item of an events log that carries the item's category."""
    item = mapping.source_column("item_id")
    category = _category(mapping, mapping.source_column("category"))
    category = category or f"{mapping.source_column('category')}::VARCHAR"
    return (
        f"(SELECT {item}::VARCHAR AS item_id, max({category}) AS category, "
        "NULL AS created_at, NULL AS price, NULL AS available "
        f"FROM {_raw_reader(path, mapping)} GROUP BY 1)"
    )
