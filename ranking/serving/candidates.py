"""Candidates to rank, from the retrieval stage: the same :func:`retrieve` that builds the
training groups, so the ranker orders online what it learned to order offline.

:func:`candidates_for` looks them up in the publication the features flow made at the
newest snapshot (``ranking.retrieval.published``: no warehouse query, microseconds), and
retrieves live from the warehouse only when there is none usable (no publication yet, one
made with other retrieval settings, or a request time before it).

Each candidate carries the sources that proposed it and the retrieval features, and a
``fallback_score`` that orders the list when no model can (retrieval's fused order for
retrieved candidates, last week's popularity for the caller's own list).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pandas as pd

from ranking.retrieval.facts import (
    RULE_COLUMNS,
    add_rule_inputs,
    consumed_pairs,
    item_facts,
    unanswered_impressions,
)
from ranking.retrieval.merge import FUSED_SCORE, RETRIEVAL_FEATURES, retrieve
from ranking.retrieval.published import LOOKUP_COLUMNS, load_published
from ranking.schema import UNKNOWN_CATEGORY
from ranking.settings import Settings
from ranking.warehouse import positive_sql, warehouse

#: How far back "recently popular" looks for the caller's candidates.
POPULARITY_WINDOW = timedelta(days=7)
#: The columns every candidate frame has.
CANDIDATE_COLUMNS = ["item_id", "category", "sources", "fallback_score", *RETRIEVAL_FEATURES]
#: What a ranking call gets: the candidates and what the business rules read.
SERVED_COLUMNS = [*CANDIDATE_COLUMNS, *RULE_COLUMNS]
assert SERVED_COLUMNS == LOOKUP_COLUMNS  # the publication serves slices in this order


def _categories(con: duckdb.DuckDBPyConnection, item_ids) -> pd.DataFrame:
    return con.execute(
        f"""
        SELECT c.item_id, coalesce(i.primary_category, '{UNKNOWN_CATEGORY}') AS category
        FROM (SELECT unnest(?::VARCHAR[]) AS item_id) c LEFT JOIN items i USING (item_id)
        """,
        [list(item_ids)],
    ).df()


def retrieved_for_user(
    con: duckdb.DuckDBPyConnection, settings, user_id: str, now: datetime, pool: int
) -> pd.DataFrame:
    """The best ``pool`` retrieved candidates for ``user_id`` at ``now`` (fused order).

    Retrieval proposes available items (the catalogue's, and items known only from
    events) the user has not consumed (the repeat source aside), from events strictly
    before ``now``."""
    found = retrieve(con, settings, [user_id], now).head(pool)
    found = found.merge(_categories(con, found["item_id"]), on="item_id", how="left")
    found["category"] = found["category"].fillna(UNKNOWN_CATEGORY)
    found["fallback_score"] = found[FUSED_SCORE].astype(float)
    return found[CANDIDATE_COLUMNS].reset_index(drop=True)


def given_candidates(
    con: duckdb.DuckDBPyConnection, settings, user_id: str, item_ids: list, now: datetime
) -> pd.DataFrame:
    """The caller's items (each once, as given, sorted by id) with their category, last
    week's popularity as the fallback score, and the retrieval features of those that
    retrieval would also have proposed (NaN for the others)."""
    # The ids go in as a query parameter, not a registered view: concurrent requests on
    # one connection must not share a name.
    ids = list(dict.fromkeys(str(i) for i in item_ids))
    counted = con.execute(
        f"""
        SELECT g.item_id, coalesce(i.primary_category, '{UNKNOWN_CATEGORY}') AS category,
               count(e.item_id)::DOUBLE AS fallback_score
        FROM (SELECT unnest(?::VARCHAR[]) AS item_id) g LEFT JOIN items i USING (item_id)
        LEFT JOIN events e ON e.item_id = g.item_id
            AND e.event_timestamp >= ?::TIMESTAMP AND e.event_timestamp < ?::TIMESTAMP
            AND {positive_sql(settings)}
        GROUP BY g.item_id, i.primary_category
        ORDER BY g.item_id
        """,
        [ids, now - POPULARITY_WINDOW, now],
    ).df()
    found = retrieve(con, settings, [user_id], now)
    out = counted.merge(found[["item_id", "sources", *RETRIEVAL_FEATURES]], how="left",
                        on="item_id")  # fmt: skip
    out["sources"] = out["sources"].fillna("")
    return out[CANDIDATE_COLUMNS]


def candidates_for(
    settings: Settings, user_id: str, now: datetime, item_ids: list | None = None
) -> pd.DataFrame:
    """The caller's ``item_ids``, or the user's best ``serving.candidate_pool`` retrieved
    candidates, with what the business rules read (:data:`RULE_COLUMNS`): from the current
    publication when it may serve ``now``, else live from the warehouse."""
    pool = settings.serving.candidate_pool
    published = load_published(settings, now)
    if published is not None:
        found = published.for_items(user_id, item_ids) if item_ids else (
            published.for_user(user_id, pool))  # fmt: skip
        return found if list(found.columns) == SERVED_COLUMNS else found[SERVED_COLUMNS]
    with warehouse(settings.warehouse_path, read_only=True) as con:
        if item_ids:
            found = given_candidates(con, settings, user_id, item_ids, now)
        else:
            found = retrieved_for_user(con, settings, user_id, now, pool)
        consumed = set(consumed_pairs(con, settings, now, user_id)["item_id"])
        shown = unanswered_impressions(con, settings, now, user_id)
        facts = item_facts(con, settings, now)
    unanswered = dict(zip(shown["item_id"], shown["n"], strict=True))
    return add_rule_inputs(found, facts, consumed, unanswered)[SERVED_COLUMNS]
