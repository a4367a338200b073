"""What serving needs besides the candidates, point in time (events strictly before
``at``): each item's category, creation time, availability and last week's popularity,
what each user consumed, and how often each item was shown to a user with no positive
reaction since. The business rules (``ranking.serving.rules``) read them; the publication
stores them for every user, the live path asks for one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

from ranking.retrieval.sources import consumed_event_types
from ranking.schema import IMPRESSION, UNKNOWN_CATEGORY, sql_list
from ranking.settings import Settings
from ranking.warehouse import positive_sql

#: How far back an item's fallback popularity looks.
POPULARITY_WINDOW = timedelta(days=7)
#: The rule inputs each candidate carries (see ``ranking.serving.rules``).
RULE_COLUMNS = ["available", "consumed", "unanswered_impressions", "created_at"]


def item_facts(con: duckdb.DuckDBPyConnection, settings: Settings, at: datetime) -> pd.DataFrame:
    """One row per item the catalogue or the relevant events know (indexed by item_id):
    ``category``, ``created_at`` (the catalogue's, else the first relevant event's),
    ``available`` (true unless the catalogue says not) and ``fallback_score`` (relevant
    events in the week before ``at``)."""
    return con.execute(
        f"""
        WITH seen AS (
            SELECT e.item_id, min(e.event_timestamp) AS first_ts,
                   count(*) FILTER (WHERE e.event_timestamp >= ?::TIMESTAMP)::DOUBLE AS recent
            FROM events e
            WHERE e.event_timestamp < ?::TIMESTAMP AND {positive_sql(settings)}
            GROUP BY 1
        )
        SELECT coalesce(i.item_id, s.item_id) AS item_id,
               coalesce(i.primary_category, '{UNKNOWN_CATEGORY}') AS category,
               coalesce(i.created_at, s.first_ts) AS created_at,
               coalesce(i.available, true) AS available,
               coalesce(s.recent, 0.0) AS fallback_score
        FROM items i FULL JOIN seen s USING (item_id)
        ORDER BY 1
        """,
        [at - POPULARITY_WINDOW, at],
    ).df().set_index("item_id")  # fmt: skip


def _user_filter(user_id: str | None) -> tuple[str, list]:
    return ("", []) if user_id is None else ("AND e.user_id = ?", [user_id])


def consumed_pairs(
    con: duckdb.DuckDBPyConnection, settings: Settings, at: datetime, user_id: str | None = None
) -> pd.DataFrame:
    """(user_id, item_id) each user consumed before ``at`` (every user, or ``user_id``)."""
    where, params = _user_filter(user_id)
    return con.execute(
        f"""
        SELECT DISTINCT e.user_id, e.item_id FROM events e
        WHERE e.event_timestamp < ?::TIMESTAMP
          AND e.event_type IN {sql_list(consumed_event_types(settings))} {where}
        ORDER BY 1, 2
        """,
        [at, *params],
    ).df()


def unanswered_impressions(
    con: duckdb.DuckDBPyConnection, settings: Settings, at: datetime, user_id: str | None = None
) -> pd.DataFrame:
    """(user_id, item_id, n): impressions of the item to the user before ``at`` and after
    the user's last relevant event on it."""
    where, params = _user_filter(user_id)
    return con.execute(
        f"""
        WITH answered AS (
            SELECT e.user_id, e.item_id, max(e.event_timestamp) AS last_ts FROM events e
            WHERE e.event_timestamp < ?::TIMESTAMP AND {positive_sql(settings)} {where}
            GROUP BY ALL
        )
        SELECT e.user_id, e.item_id, count(*) AS n
        FROM events e LEFT JOIN answered a USING (user_id, item_id)
        WHERE e.event_type = '{IMPRESSION}' AND e.event_timestamp < ?::TIMESTAMP {where}
          AND (a.last_ts IS NULL OR e.event_timestamp > a.last_ts)
        GROUP BY ALL
        ORDER BY 1, 2
        """,
        [at, *params, at, *params],
    ).df()


def add_rule_inputs(
    candidates: pd.DataFrame,
    facts: pd.DataFrame,
    consumed: set[str] | frozenset[str],
    unanswered: dict[str, int],
) -> pd.DataFrame:
    """``candidates`` (one user's) with :data:`RULE_COLUMNS` (items no fact knows are taken
    as available, with no creation time)."""
    out = candidates.copy()
    ids = out["item_id"].to_numpy(dtype=object)
    by_item = item_rule_inputs(facts, ids)
    out["available"] = by_item["available"]
    out["consumed"] = np.fromiter((i in consumed for i in ids), dtype=bool, count=len(ids))
    out["unanswered_impressions"] = np.fromiter(
        (unanswered.get(i, 0) for i in ids), dtype=np.int64, count=len(ids)
    )
    out["created_at"] = by_item["created_at"]
    return out


def item_rule_inputs(facts: pd.DataFrame, item_ids: np.ndarray) -> dict[str, np.ndarray]:
    """``available`` and ``created_at`` of each of ``item_ids`` from :func:`item_facts`
    (items no fact knows: available, no creation time)."""
    rows = facts.index.get_indexer(item_ids)
    known = rows >= 0
    available = np.ones(len(item_ids), dtype=bool)
    available[known] = facts["available"].to_numpy(dtype=bool)[rows[known]]
    created = np.full(len(item_ids), np.datetime64("NaT"), dtype="datetime64[ns]")
    created[known] = facts["created_at"].to_numpy(dtype="datetime64[ns]")[rows[known]]
    return {"available": available, "created_at": created}
