"""Ranking for a user: retrieved candidates, online features from Feast, the ``champion``
model, the top ``k`` with the sources that proposed each item.

A user the online store does not know, or a platform with no champion yet, gets the
fallback order (retrieval's fused order, or popularity for the caller's list), and says
so. The CLI (``ranking rank``) and the HTTP service call the same :func:`rank_request`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from ranking.features.store import online_features
from ranking.publishing.models import Champion
from ranking.schema import IMPRESSION
from ranking.serving.candidates import candidates_for
from ranking.settings import Settings

#: What a ranked list shows for each item.
RANKED_COLUMNS = ["rank", "item_id", "category", "score", "sources"]
#: A feature every known user has online; all-null means the store does not know them.
USER_PRESENCE_FEATURE = "user_events_all"


@dataclass
class RankedList:
    """A ranked list and how it was made."""

    user_id: str
    items: pd.DataFrame  # rank, item_id, category, score, sources
    model_version: str | None
    fallback: str | None  # why the fallback order was used, else None


def rank_for_user(
    store,
    champion: Champion | None,
    candidates: pd.DataFrame,
    user_id: str,
    now: datetime,
    k: int = 10,
) -> RankedList:
    """Score ``candidates`` for ``user_id`` and return the top ``k``.

    The champion's features are the online ones from Feast, then the request-time ones the
    candidates carry (the retrieval features)."""
    if candidates.empty:
        return RankedList(user_id, pd.DataFrame(columns=RANKED_COLUMNS), None,
                          "no candidate items")  # fmt: skip
    fallback = None if champion is not None else "no champion model registered yet"
    scored = candidates.copy()
    if champion is not None:
        request_s = int(now.replace(tzinfo=UTC).timestamp())
        rows = [
            {"user_id": user_id, "item_id": i, "category": c, "request_timestamp_s": request_s}
            for i, c in zip(scored["item_id"], scored["category"], strict=True)
        ]
        feats = online_features(store, rows, champion.feature_service)
        if feats[USER_PRESENCE_FEATURE].isna().all():
            fallback = f"user {user_id!r} has no features online (unknown or new user)"
        else:
            carried = [f for f in champion.features if f not in feats.columns]
            feats[carried] = scored.reindex(columns=carried).to_numpy(dtype=float)
            x = feats[champion.features].astype("float32")
            scored["score"] = champion.model.predict(x)
    if fallback is not None:
        scored["score"] = scored["fallback_score"].astype(float)
    if "sources" not in scored.columns:
        scored["sources"] = ""
    top = scored.sort_values(["score", "item_id"], ascending=[False, True]).head(k)
    top.insert(0, "rank", range(1, len(top) + 1))
    return RankedList(
        user_id=user_id,
        items=top[RANKED_COLUMNS].reset_index(drop=True),
        model_version=None if fallback else champion.version,
        fallback=fallback,
    )


def served_impressions(ranked: RankedList, request_id: str, now: datetime) -> list[dict]:
    """The served list as impression events in the data contract (to close the loop)."""
    stamp = now.replace(tzinfo=UTC).isoformat()
    return [
        {
            "event_id": f"{request_id}-{row.rank}",
            "user_id": ranked.user_id,
            "item_id": row.item_id,
            "event_type": IMPRESSION,
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
    """Rank for ``user_id``: the caller's ``item_ids``, or the retrieved candidates."""
    candidates = candidates_for(settings, user_id, now, item_ids)
    return rank_for_user(store, champion, candidates, user_id, now, k)
