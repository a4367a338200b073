"""Candidates to rank: the catalogue's (available items, most popular over the last week,
minus what the user already bought) or the caller's own list.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pandas as pd

from ranking.schema import POSITIVE_SQL_LIST, PURCHASE, UNKNOWN_CATEGORY

#: How far back "recently popular" looks when ordering candidates.
POPULARITY_WINDOW = timedelta(days=7)


def candidate_items(
    con: duckdb.DuckDBPyConnection, user_id: str, now: datetime, pool: int
) -> pd.DataFrame:
    """Available items by positive interactions in the week before ``now``, minus purchases."""
    return con.execute(
        f"""
        WITH pop AS (
            SELECT item_id, count(*) AS popularity FROM events
            WHERE event_timestamp >= ?::TIMESTAMP AND event_timestamp < ?::TIMESTAMP
              AND event_type IN {POSITIVE_SQL_LIST}
            GROUP BY item_id
        ), bought AS (
            SELECT DISTINCT item_id FROM events WHERE user_id = ? AND event_type = '{PURCHASE}'
        )
        SELECT i.item_id, coalesce(i.primary_category, '{UNKNOWN_CATEGORY}') AS category,
               coalesce(p.popularity, 0) AS popularity
        FROM items i LEFT JOIN pop p USING (item_id)
        WHERE coalesce(i.available, true) AND i.item_id NOT IN (SELECT item_id FROM bought)
        ORDER BY popularity DESC, i.item_id
        LIMIT ?
        """,
        [now - POPULARITY_WINDOW, now, user_id, pool],
    ).df()


def given_candidates(con: duckdb.DuckDBPyConnection, item_ids: list[str], now: datetime):
    """Caller-supplied candidates with their category and last week's popularity."""
    # Each id once, in the caller's order: a repeated id must not count its events twice.
    frame = pd.DataFrame({"item_id": list(dict.fromkeys(str(i) for i in item_ids))})
    con.register("given", frame)
    try:
        return con.execute(
            f"""
            SELECT g.item_id, coalesce(i.primary_category, '{UNKNOWN_CATEGORY}') AS category,
                   count(e.item_id) AS popularity
            FROM given g LEFT JOIN items i USING (item_id)
            LEFT JOIN events e ON e.item_id = g.item_id
                AND e.event_timestamp >= ?::TIMESTAMP AND e.event_timestamp < ?::TIMESTAMP
                AND e.event_type IN {POSITIVE_SQL_LIST}
            GROUP BY g.item_id, i.primary_category
            ORDER BY g.item_id
            """,
            [now - POPULARITY_WINDOW, now],
        ).df()
    finally:
        con.unregister("given")
