"""Candidate sources, each a small declared unit: a name, a budget (how many items it
proposes per user at most) and a readable SQL query that scores items for the query users.

Every source reads only what was known strictly before the query time ``at``; the shared
relations are prepared by :func:`prepare` on the connection:

- ``r_users(user_id)``: the users to retrieve for;
- ``r_pos(user_id, item_id, event_type, ts, age_days)``: relevant events before ``at``
  (the labels' rule: ``label_weights`` > 0, ratings above the offset), ``age_days`` their
  age at ``at``;
- ``r_catalogue(item_id, category, created_at)``: available items known before ``at``
  (``created_at`` is the catalogue's, else the item's first relevant event: an id that was
  only ever shown, e.g. a made-up id a caller had served, is not an item);
- ``r_seen(user_id, item_id)``: what each query user already consumed; no source but
  ``repeat`` proposes it again; ``r_seen_most(most)``: the most items any user (query
  user or not) consumed, so searches go equally deep whoever is asked with whom.

A source's query returns ``(user_id, item_id, score)``, higher is better; it may return
more than its budget, and :func:`source_candidates` keeps the top ``budget`` per user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd

from ranking.retrieval.embeddings import EMBEDDING, embedding_candidates
from ranking.retrieval.neighbours import NEIGHBOURS, neighbour_candidates
from ranking.schema import RATING, UNKNOWN_CATEGORY, sql_list
from ranking.settings import RetrievalSettings, Settings
from ranking.warehouse import positive_sql


@dataclass(frozen=True)
class Source:
    """One candidate source: its name, its budget in the settings, and its query: SQL over
    the prepared relations, or (``compute``) a function returning the same columns."""

    name: str
    budget: Callable[[RetrievalSettings], int]
    sql: Callable[[RetrievalSettings], str] | None = None
    compute: Callable[[duckdb.DuckDBPyConnection, Settings], pd.DataFrame] | None = None


def _covisit_sql(r: RetrievalSettings) -> str:
    # Items met by one user within the window of each other are co-visited; a pair counts
    # more when recent. The user's latest items each vote for their co-visited items.
    return f"""
    WITH recent AS (
        SELECT p.user_id, p.item_id, p.age_days
        FROM r_pos p JOIN r_users USING (user_id)
        QUALIFY row_number() OVER (PARTITION BY p.user_id ORDER BY p.ts DESC, p.item_id)
                <= {int(r.covisit_recent_items)}
    ), pairs AS (
        SELECT a.item_id AS from_item, b.item_id AS to_item,
               sum(pow(0.5, b.age_days / {float(r.half_life_days)})) AS weight
        FROM r_pos a
        JOIN r_pos b ON b.user_id = a.user_id AND b.item_id <> a.item_id
            AND b.ts BETWEEN a.ts - INTERVAL '{int(r.covisit_window_hours * 3600)} seconds'
                         AND a.ts + INTERVAL '{int(r.covisit_window_hours * 3600)} seconds'
        WHERE a.item_id IN (SELECT item_id FROM recent)
        GROUP BY ALL
    )
    SELECT r.user_id, p.to_item AS item_id,
           sum(p.weight * pow(0.5, r.age_days / {float(r.half_life_days)})) AS score
    FROM recent r JOIN pairs p ON p.from_item = r.item_id
    GROUP BY ALL
    """


def _category_sql(r: RetrievalSettings) -> str:
    # A user's categories weighted by recency-decayed interest (a drifting taste moves
    # them), times each category's recently popular items.
    return f"""
    WITH affinity AS (
        SELECT p.user_id, c.category, sum(pow(0.5, p.age_days / {float(r.half_life_days)})) AS w
        FROM r_pos p JOIN r_users USING (user_id) JOIN r_catalogue c USING (item_id)
        GROUP BY p.user_id, c.category
        QUALIFY row_number() OVER (PARTITION BY p.user_id ORDER BY w DESC, c.category)
                <= {int(r.top_categories)}
    ), category_items AS (
        SELECT c.category, p.item_id, sum(pow(0.5, p.age_days / {float(r.half_life_days)})) AS pop
        FROM r_pos p JOIN r_catalogue c USING (item_id)
        WHERE p.age_days <= {float(r.window_days)}
        GROUP BY ALL
    )
    SELECT a.user_id, ci.item_id, a.w * ci.pop AS score
    FROM affinity a JOIN category_items ci USING (category)
    """


def _for_every_user(items_sql: str, budget: int) -> str:
    """``items_sql`` (item_id, score), the same list for every query user. Only its best
    ``budget`` + ``r_seen_most`` items are crossed with the users: a user loses at most
    that many to what they consumed, so each user's top ``budget`` is exactly the one the
    whole list gives (scores rounded and ties broken as :func:`source_candidates` does),
    at a fraction of the rows."""
    return f"""
    SELECT u.user_id, t.item_id, t.score
    FROM r_users u CROSS JOIN (
        SELECT item_id, score FROM ({items_sql}) SEMI JOIN r_catalogue USING (item_id)
        WHERE score::FLOAT::DOUBLE > 0
        QUALIFY row_number() OVER (ORDER BY score::FLOAT::DOUBLE DESC, item_id)
                <= {int(budget)} + (SELECT most FROM r_seen_most)
    ) t
    """


def _popular_sql(r: RetrievalSettings) -> str:
    return _for_every_user(
        f"""
        SELECT item_id, sum(pow(0.5, age_days / {float(r.half_life_days)})) AS score
        FROM r_pos WHERE age_days <= {float(r.window_days)}
        GROUP BY item_id
        """,
        r.popular_budget,
    )


def _fresh_sql(r: RetrievalSettings) -> str:
    # New in the catalogue: the newest first, what users already like first among equals.
    return _for_every_user(
        f"""
        SELECT c.item_id,
               coalesce(p.n, 0) + 1.0 / (1.0 + (epoch(r_at.at) - epoch(c.created_at)) / 86400.0)
                   AS score
        FROM r_catalogue c CROSS JOIN r_at
        LEFT JOIN (SELECT item_id, count(*) AS n FROM r_pos GROUP BY item_id) p USING (item_id)
        WHERE c.created_at >= r_at.at - INTERVAL '{int(r.fresh_days * 86400)} seconds'
        """,
        r.fresh_budget,
    )


def _trending_sql(r: RetrievalSettings) -> str:
    # Growth: the last 3 days' rate over the rate of the rest of the window (smoothed).
    window = float(r.window_days)
    return _for_every_user(
        f"""
        SELECT item_id,
               (count(*) FILTER (WHERE age_days <= 3) / 3.0)
                 / (count(*) FILTER (WHERE age_days > 3) / {window - 3.0} + {1.0 / window})
                 AS score
        FROM r_pos WHERE age_days <= {window}
        GROUP BY item_id
        HAVING count(*) FILTER (WHERE age_days <= 3) >= 2
        """,
        r.trending_budget,
    )


def _repeat_sql(r: RetrievalSettings) -> str:
    return f"""
    SELECT p.user_id, p.item_id, sum(pow(0.5, p.age_days / {float(r.half_life_days)})) AS score
    FROM r_pos p JOIN r_users USING (user_id)
    WHERE p.event_type IN {sql_list(r.repeat_event_types)}
    GROUP BY ALL
    """


#: The popularity backstop.
POPULAR = "popular"
#: Every source, in the order their columns appear.
SOURCES: tuple[Source, ...] = (
    Source("covisit", lambda r: r.covisit_budget, _covisit_sql),
    Source("category", lambda r: r.category_budget, _category_sql),
    Source(POPULAR, lambda r: r.popular_budget, _popular_sql),
    Source("fresh", lambda r: r.fresh_budget, _fresh_sql),
    Source("trending", lambda r: r.trending_budget, _trending_sql),
    Source("repeat", lambda r: r.repeat_budget, _repeat_sql),
    Source(EMBEDDING, lambda r: r.embedding_budget, compute=embedding_candidates),
    Source(NEIGHBOURS, lambda r: r.neighbours_budget, compute=neighbour_candidates),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)
#: The one source allowed to propose what the user already consumed.
REPEAT = "repeat"


def consumed_event_types(settings: Settings) -> list[str]:
    """Event types after which an item is consumed (never proposed again): every positive
    type and ratings of any value, but the repeat types."""
    repeat = set(settings.retrieval.repeat_event_types)
    consumed = [t for t, w in settings.events.label_weights.items() if w > 0 and t not in repeat]
    return consumed + ([] if RATING in repeat else [RATING])


def prepare(
    con: duckdb.DuckDBPyConnection, settings: Settings, user_ids: list[str], at: datetime
) -> None:
    """Create the relations every source reads (temp tables on this connection)."""
    consumed = consumed_event_types(settings)
    con.execute("CREATE OR REPLACE TEMP TABLE r_at AS SELECT ?::TIMESTAMP AS at", [at])
    con.execute("CREATE OR REPLACE TEMP TABLE r_users (user_id VARCHAR)")
    con.executemany("INSERT INTO r_users VALUES (?)", [[u] for u in dict.fromkeys(user_ids)])
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE r_pos AS
        SELECT e.user_id, e.item_id, e.event_type, e.event_timestamp AS ts,
               (epoch(?::TIMESTAMP) - epoch(e.event_timestamp)) / 86400.0 AS age_days
        FROM events e
        WHERE e.event_timestamp < ?::TIMESTAMP AND {positive_sql(settings)}
        """,
        [at, at],
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE r_catalogue AS
        WITH first_seen AS (  -- an item exists once someone took it, not once it was shown
            SELECT item_id, min(event_timestamp) AS first_ts FROM events e
            WHERE event_timestamp < ?::TIMESTAMP AND {positive_sql(settings)} GROUP BY item_id
        )
        SELECT coalesce(i.item_id, f.item_id) AS item_id,
               coalesce(i.primary_category, '{UNKNOWN_CATEGORY}') AS category,
               coalesce(i.created_at, f.first_ts) AS created_at
        FROM items i FULL JOIN first_seen f USING (item_id)
        WHERE coalesce(i.available, true)
          AND (f.item_id IS NOT NULL OR i.created_at IS NULL OR i.created_at < ?::TIMESTAMP)
        """,
        [at, at],
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE r_seen AS
        SELECT DISTINCT e.user_id, e.item_id FROM events e JOIN r_users USING (user_id)
        WHERE e.event_timestamp < ?::TIMESTAMP
          AND e.event_type IN {sql_list(consumed)}
        """,
        [at],
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE r_seen_most AS
        SELECT coalesce(max(n), 0) AS most FROM (
            SELECT count(DISTINCT e.item_id) AS n FROM events e
            WHERE e.event_timestamp < ?::TIMESTAMP AND e.event_type IN {sql_list(consumed)}
            GROUP BY e.user_id
        )
        """,
        [at],
    )


def source_candidates(
    con: duckdb.DuckDBPyConnection, settings: Settings, source: Source
) -> pd.DataFrame:
    """One source's top ``budget`` items per query user: user_id, item_id, score, rank."""
    budget = int(source.budget(settings.retrieval))
    if budget <= 0 or (source.name == REPEAT and not settings.retrieval.repeat_event_types):
        return pd.DataFrame(columns=["user_id", "item_id", "score", "rank"])
    unseen = "" if source.name == REPEAT else "ANTI JOIN r_seen s USING (user_id, item_id)"
    if source.compute is not None:
        computed = source.compute(con, settings)
        con.register("r_computed", computed.astype({"user_id": str, "item_id": str}))
        query = "SELECT user_id, item_id, score FROM r_computed"
    else:
        query = source.sql(settings.retrieval)
    # Scores are rounded to float32 (what the ranker sees) before ranking: DuckDB's parallel
    # sums differ in the last bits from run to run, and a rerun must rank identically.
    found = con.execute(
        f"""
        WITH proposed AS (
            SELECT user_id, item_id, score::FLOAT::DOUBLE AS score FROM ({query})
        )
        SELECT p.user_id, p.item_id, p.score,
               row_number() OVER (PARTITION BY p.user_id ORDER BY p.score DESC, p.item_id)
                   AS rank
        FROM proposed p SEMI JOIN r_catalogue c USING (item_id)
        {unseen}
        WHERE p.score > 0
        QUALIFY rank <= {budget}
        ORDER BY p.user_id, rank
        """
    ).df()
    if source.compute is not None:
        con.unregister("r_computed")
    return found
