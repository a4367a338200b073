"""The contract's row rules as SQL ``CASE`` branches: ids, served logs, optional fields.

An optional field is typed here, with what makes it bad and what then.

A bad optional field (a price that is not a number, an unparseable ``created_at``, a
negative ``position``...) either quarantines its row with the reason (the contract's rule
for contract files) or, for other people's logs read through a mapping, is set to NULL
while the row is kept; the load report then counts the nulled fields per column, measured
on the stored rows (text present in the file, no value stored).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import duckdb

from ranking.schema import ID_FORBIDDEN_CHARACTERS, IMPRESSION, MAX_ID_LENGTH
from ranking.warehouse import quote

#: What a bad optional field does: quarantine its row, or become NULL in a kept row.
BadOptional = Literal["quarantine_row", "null_field"]


def served_log_reasons(max_id_length: int) -> str:
    """CASE branches for a served log's rows: what the service could not have written (it
    serves ids up to ``max_id_length`` characters, only impressions, only items the
    catalogue or the events know, and logs only users some event knows)."""
    n = int(max_id_length)
    return f"""
                WHEN length(user_id) > {n} OR length(item_id) > {n}
                    THEN 'served log: id over {n} characters'
                WHEN lower(event_type) <> '{IMPRESSION}' THEN 'served log: not an impression'
                WHEN item_id NOT IN (SELECT item_id FROM items)
                     AND item_id NOT IN (SELECT item_id FROM events)
                    THEN 'served log: item unknown to the catalogue and the events'
                WHEN user_id NOT IN (SELECT user_id FROM events)
                    THEN 'served log: user unknown to the events'"""


def id_reasons(columns: Iterable[str]) -> str:
    """CASE branches: the contract's id rules (length, characters) for ``columns``."""
    branches = []
    for col in columns:
        branches.append(f"""
                WHEN length({col}) > {MAX_ID_LENGTH}
                    THEN '{col} over {MAX_ID_LENGTH} characters'
                WHEN regexp_matches({col}, {quote(ID_FORBIDDEN_CHARACTERS)})
                    THEN '{col} holds control characters'""")
    return "".join(branches)


@dataclass(frozen=True)
class OptionalField:
    """One optional contract column: ``typed`` (SQL over the staged text) becomes column
    ``alias`` of the checked rows; ``problems`` are (SQL condition, reason), in order."""

    column: str
    typed: str
    alias: str
    problems: tuple[tuple[str, str], ...]


_VALUE = "try_cast(value AS DOUBLE)"
_POSITION = "try_cast(position AS DOUBLE)"
_PRICE = "try_cast(price AS DOUBLE)"
_BOOLEANS = {"true": "true", "1": "true", "yes": "true", "false": "false", "0": "false",
             "no": "false"}  # fmt: skip

EVENT_FIELDS = (
    OptionalField("value", _VALUE, "value_num", (
        (f"value IS NOT NULL AND {_VALUE} IS NULL", "value is not a number"),
        (f"NOT isfinite({_VALUE})", "value is not finite"),
        (f"{_VALUE} < 0", "negative value"),
    )),
    OptionalField("position", f"try_cast({_POSITION} AS INTEGER)", "position_num", (
        (f"position IS NOT NULL AND NOT coalesce({_POSITION} = floor({_POSITION}) "
         f"AND abs({_POSITION}) < 2147483648, false)", "position is not an integer"),
        (f"{_POSITION} < 0", "negative position"),
    )),
)  # fmt: skip

ITEM_FIELDS = (
    OptionalField("created_at", "_created_at_parsed", "created_at_ts", (
        ("created_at IS NOT NULL AND _created_at_parsed IS NULL", "unparseable created_at"),
    )),
    OptionalField("price", _PRICE, "price_num", (
        (f"price IS NOT NULL AND {_PRICE} IS NULL", "price is not a number"),
        (f"NOT isfinite({_PRICE})", "price is not finite"),
        (f"{_PRICE} < 0", "negative price"),
    )),
    OptionalField(
        "available",
        "CASE lower(available) "
        + " ".join(f"WHEN '{k}' THEN {v}" for k, v in _BOOLEANS.items()) + " END",
        "avail",
        ((f"available IS NOT NULL AND lower(available) NOT IN "
          f"({', '.join(repr(k) for k in _BOOLEANS)})", "available is not a boolean"),),
    ),
)  # fmt: skip


def _bad(field: OptionalField) -> str:
    return " OR ".join(f"coalesce({condition}, false)" for condition, _ in field.problems)


def reason_branches(fields: Iterable[OptionalField], bad: BadOptional) -> str:
    """``WHEN ... THEN reason`` branches quarantining bad fields (none when they are nulled)."""
    if bad == "null_field":
        return ""
    return "".join(
        f"\n                WHEN {condition} THEN '{reason}'"
        for field in fields
        for condition, reason in field.problems
    )


def typed_columns(fields: Iterable[OptionalField], bad: BadOptional) -> str:
    """``SELECT`` items with each field's typed value, NULL when bad and to be nulled."""
    return ", ".join(
        f"CASE WHEN {_bad(f)} THEN NULL ELSE {f.typed} END AS {f.alias}"
        if bad == "null_field"
        else f"{f.typed} AS {f.alias}"
        for f in fields
    )


def count_nulled(
    con: duckdb.DuckDBPyConnection, fields: Iterable[OptionalField], relation: str
) -> dict[str, int]:
    """Per column, the rows of ``relation`` whose file held text but whose value is NULL;
    only columns with at least one."""
    fields = list(fields)
    counts = ", ".join(
        f"count(*) FILTER (WHERE {f.column} IS NOT NULL AND {f.alias} IS NULL)" for f in fields
    )
    row = con.execute(f"SELECT {counts} FROM {relation}").fetchall()[0]
    return {f.column: int(n) for f, n in zip(fields, row, strict=True) if n}
