"""Serving: rank items for a user with online features and the ``champion`` model.

Candidates come from the catalogue (available items, most popular over the last week,
minus what the user already bought). Features come from Feast's online store; the model
is whatever ``models:/<name>@champion`` resolves to. A user the online store does not
know, or a platform with no champion yet, gets the popularity ranking, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd

from ranking.config import Settings
from ranking.events import warehouse
from ranking.registry import Champion
from ranking.store import online_features


@dataclass
class RankedList:
    """A ranked list and how it was made."""

    user_id: str
    items: pd.DataFrame  # rank, item_id, category, score
    model_version: str | None
    fallback: str | None  # why the popularity ranking was used, else None


def candidate_items(
    con: duckdb.DuckDBPyConnection, user_id: str, now: datetime, pool: int
) -> pd.DataFrame:
    """Available items by positive interactions in the week before ``now``, minus purchases."""
    return con.execute(
        """
        WITH pop AS (
            SELECT item_id, count(*) AS popularity FROM events
            WHERE event_timestamp >= ?::TIMESTAMP AND event_timestamp < ?::TIMESTAMP
              AND event_type IN ('click', 'play', 'add_to_cart', 'purchase', 'rating')
            GROUP BY item_id
        ), bought AS (
            SELECT DISTINCT item_id FROM events WHERE user_id = ? AND event_type = 'purchase'
        )
        SELECT i.item_id, coalesce(i.primary_category, 'unknown') AS category,
               coalesce(p.popularity, 0) AS popularity
        FROM items i LEFT JOIN pop p USING (item_id)
        WHERE coalesce(i.available, true) AND i.item_id NOT IN (SELECT item_id FROM bought)
        ORDER BY popularity DESC, i.item_id
        LIMIT ?
        """,
        [now - timedelta(days=7), now, user_id, pool],
    ).df()


def rank_for_user(
    store,
    champion: Champion | None,
    candidates: pd.DataFrame,
    user_id: str,
    now: datetime,
    k: int = 10,
) -> RankedList:
    """Score ``candidates`` for ``user_id`` and return the top ``k``."""
    if candidates.empty:
        return RankedList(user_id, pd.DataFrame(columns=["rank", "item_id", "category", "score"]),
                          None, "no candidate items")  # fmt: skip
    fallback = None if champion is not None else "no champion model registered yet"
    scored = candidates.copy()
    if champion is not None:
        request_s = int(now.replace(tzinfo=UTC).timestamp())
        rows = [
            {"user_id": user_id, "item_id": i, "category": c, "request_timestamp_s": request_s}
            for i, c in zip(scored["item_id"], scored["category"], strict=True)
        ]
        feats = online_features(store, rows, champion.feature_service)
        if feats["user_events_all"].isna().all():
            fallback = f"user {user_id!r} has no features online (unknown or new user)"
        else:
            x = feats[champion.features].astype("float32")
            scored["score"] = champion.model.predict(x)
    if fallback is not None:
        scored["score"] = scored["popularity"].astype(float)
    top = scored.sort_values(["score", "item_id"], ascending=[False, True]).head(k)
    top.insert(0, "rank", range(1, len(top) + 1))
    return RankedList(
        user_id=user_id,
        items=top[["rank", "item_id", "category", "score"]].reset_index(drop=True),
        model_version=None if fallback else champion.version,
        fallback=fallback,
    )


def given_candidates(con: duckdb.DuckDBPyConnection, item_ids: list[str], now: datetime):
    """Caller-supplied candidates with their category and last week's popularity."""
    frame = pd.DataFrame({"item_id": [str(i) for i in item_ids]})
    con.register("given", frame)
    try:
        return con.execute(
            """
            SELECT g.item_id, coalesce(i.primary_category, 'unknown') AS category,
                   count(e.item_id) AS popularity
            FROM given g LEFT JOIN items i USING (item_id)
            LEFT JOIN events e ON e.item_id = g.item_id
                AND e.event_timestamp >= ?::TIMESTAMP AND e.event_timestamp < ?::TIMESTAMP
                AND e.event_type IN ('click', 'play', 'add_to_cart', 'purchase', 'rating')
            GROUP BY g.item_id, i.primary_category
            ORDER BY g.item_id
            """,
            [now - timedelta(days=7), now],
        ).df()
    finally:
        con.unregister("given")


def served_impressions(ranked: RankedList, request_id: str, now: datetime) -> list[dict]:
    """The served list as impression events in the data contract (to close the loop)."""
    stamp = now.replace(tzinfo=UTC).isoformat()
    return [
        {
            "event_id": f"{request_id}-{row.rank}",
            "user_id": ranked.user_id,
            "item_id": row.item_id,
            "event_type": "impression",
            "event_timestamp": stamp,
            "value": None,
            "session_id": request_id,
            "position": int(row.rank),
        }
        for row in ranked.items.itertuples(index=False)
    ]


def rank_request(
    settings: Settings,
    store,
    champion: Champion | None,
    user_id: str,
    now: datetime,
    k: int = 10,
    item_ids: list[str] | None = None,
) -> RankedList:
    """Rank for ``user_id``: the caller's ``item_ids``, or candidates from the catalogue."""
    with warehouse(settings.warehouse_path, read_only=True) as con:
        if item_ids:
            candidates = given_candidates(con, item_ids, now)
        else:
            candidates = candidate_items(con, user_id, now, settings.candidate_pool)
    return rank_for_user(store, champion, candidates, user_id, now, k)
