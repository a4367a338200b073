"""Ranking for a user: retrieved candidates, online features from Feast, the ``champion``
model, the top ``k`` with the sources that proposed each item.

A user the online store does not know, or a platform with no champion yet, gets the
fallback order (retrieval's fused order, or popularity for the caller's list), and says
so. The CLI (``ranking rank``) and the HTTP service call the same :func:`rank_request`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from ranking.features.online import ViewTable, lookup, request_timestamp_s
from ranking.publishing.champion import Champion
from ranking.retrieval.merge import RETRIEVAL_FEATURES
from ranking.retrieval.published import load_published
from ranking.schema import IMPRESSION, PROPENSITY
from ranking.serving.candidates import candidates_for
from ranking.serving.exploration import exploration_rng, explore
from ranking.serving.rules import MODEL, apply_rules
from ranking.settings import ServingSettings, Settings

#: What a ranked list shows for each item.
RANKED_COLUMNS = ["rank", "item_id", "category", "score", "sources", "rule", PROPENSITY]
#: What scoring gives each candidate, the rules keep and exploration may swap in.
SCORED_COLUMNS = ["item_id", "category", "score", "sources"]
#: The ranked list's order when no model scored it (the model's ``score`` is then empty).
FALLBACK_SCORE = "fallback_score"
#: A feature every known user has online; all-null means the store does not know them.
USER_PRESENCE_FEATURE = "user_events_all"


@dataclass
class RankedList:
    """A ranked list and how it was made."""

    user_id: str
    items: pd.DataFrame  # rank, item_id, category, score, sources
    model_version: str | None
    fallback: str | None  # why the fallback order was used, else None
    dropped: dict[str, int] = field(default_factory=dict)  # kept out of the list, per rule
    user_known: bool | None = None  # False: no event or feature knows the user


def rank_for_user(
    store,
    champion: Champion | None,
    candidates: pd.DataFrame,
    user_id: str,
    now: datetime,
    k: int = 10,
    rules: ServingSettings | None = None,
    views: dict[str, ViewTable] | None = None,
    seed: int = 0,
) -> RankedList:
    """Score ``candidates`` for ``user_id`` and return the top ``k``, after the business
    ``rules`` when given (see ``ranking.serving.rules``), else in score order.

    The champion's features are the online ones from Feast (looked up in ``views``, the
    published copy of Feast's online values, when they hold them all), then the
    request-time ones the candidates carry (the retrieval features). With
    ``rules.exploration`` above 0, some places go to the next best items
    (``ranking.serving.exploration``, drawn from ``seed``, the user and ``now``); every
    item carries its propensity."""
    if candidates.empty:
        return RankedList(user_id, pd.DataFrame(columns=RANKED_COLUMNS), None,
                          "no candidate items")  # fmt: skip
    fallback = None if champion is not None else "no champion model registered yet"
    known = None
    scored = candidates.copy()
    if champion is not None:
        feats = _online(store, champion, scored, user_id, now, views)
        if feats[USER_PRESENCE_FEATURE].isna().all():
            fallback = f"user {user_id!r} has no features online (unknown or new user)"
            known = False
        else:
            x = _model_input(champion, feats, scored)
            scored["score"] = champion.model.get_booster().inplace_predict(x)
    if fallback is not None:
        scored["score"] = scored["fallback_score"].astype(float)
    if "sources" not in scored.columns:
        scored["sources"] = ""
    top, dropped = _ruled(scored, k, rules, now)
    if rules is not None and rules.exploration > 0:  # the next k eligible are the pool
        pool, _ = _ruled(scored[~scored["item_id"].isin(top["item_id"])], k, rules, now)
        top = explore(top, pool, rules.exploration, exploration_rng(seed, user_id, now))
    else:
        top[PROPENSITY] = 1.0
    top.insert(0, "rank", range(1, len(top) + 1))
    # A fallback orders by retrieval's fused score (or popularity counts): shown apart,
    # so that ``score`` is only ever a model's.
    top[FALLBACK_SCORE] = top["score"] if fallback is not None else np.nan
    if fallback is not None:
        top["score"] = np.nan
    return RankedList(
        user_id=user_id,
        items=top,
        model_version=None if fallback else champion.version,
        fallback=fallback,
        dropped=dropped,
        user_known=known,
    )


def _ruled(scored: pd.DataFrame, k: int, rules: ServingSettings | None,
           now: datetime) -> tuple[pd.DataFrame, dict[str, int]]:  # fmt: skip
    """The top ``k`` of ``scored`` after the business ``rules`` (else in score order)."""
    if rules is None:
        top = scored.sort_values(["score", "item_id"], ascending=[False, True]).head(k)
        return top[SCORED_COLUMNS].assign(rule=MODEL).reset_index(drop=True), {}
    ruled = apply_rules(scored, k, rules, now, columns=SCORED_COLUMNS)
    return ruled.items, ruled.dropped


def _model_input(champion: Champion, feats: pd.DataFrame, scored: pd.DataFrame) -> np.ndarray:
    """The champion's features in its order: stored and context ones from ``feats``, the
    request-time ones the candidates carry (retrieval's) from ``scored``, NaN if neither.
    Positions come from one vectorised lookup per frame: this runs on every request."""
    names = champion.features
    x = np.full((len(scored), len(names)), np.nan, dtype=np.float32)
    in_feats = feats.columns.get_indexer(names)
    stored = np.flatnonzero(in_feats >= 0)
    if len(stored):
        # The published lookup gives only float columns; Feast's frame has the ids too.
        if all(d.kind == "f" for d in feats.dtypes):
            x[:, stored] = feats.to_numpy(dtype=np.float32)[:, in_feats[stored]]
        else:
            x[:, stored] = feats.iloc[:, in_feats[stored]].to_numpy(dtype=np.float32)
    in_scored = scored.columns.get_indexer(names)
    for j in np.flatnonzero((in_feats < 0) & (in_scored >= 0)):
        x[:, j] = scored[names[j]].to_numpy(dtype=np.float32)
    return x


def _online(store, champion: Champion, scored: pd.DataFrame, user_id: str, now: datetime,
            views: dict[str, ViewTable] | None) -> pd.DataFrame:  # fmt: skip
    """The champion's stored and context features for each candidate."""
    if views:
        wanted = [f for f in champion.features if f not in RETRIEVAL_FEATURES]
        wanted += [] if USER_PRESENCE_FEATURE in wanted else [USER_PRESENCE_FEATURE]
        found = lookup(views, wanted, user_id, scored, now)
        if found is not None:
            return found
    from ranking.features.store import online_features  # Feast: only off the fast path

    request_s = request_timestamp_s(now)
    rows = [
        {"user_id": user_id, "item_id": i, "category": c, "request_timestamp_s": request_s}
        for i, c in zip(scored["item_id"], scored["category"], strict=True)
    ]
    # ``store`` may be a callable that opens it, so a call served from the publication
    # never opens (nor imports) Feast.
    return online_features(store() if callable(store) else store, rows, champion.feature_service)


def items_as_records(items: pd.DataFrame) -> list[dict]:
    """The ranked items as JSON-ready records (an empty score is None, not NaN)."""
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            for row in items.to_dict(orient="records")]  # fmt: skip


def served_impressions(ranked: RankedList, request_id: str, now: datetime) -> list[dict]:
    """The served list as impression events in the data contract (to close the loop),
    each with what off-policy evaluation needs: the score, the model version that served
    it and its propensity (the probability the policy showed that item at that place).
    Ingest keeps the contract's columns; the served log keeps the rest."""
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
            "score": None if row.score != row.score else float(row.score),
            "model_version": ranked.model_version,
            PROPENSITY: float(getattr(row, PROPENSITY)),
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
    published = load_published(settings, now)
    views = published.views if published is not None else None
    ranked = rank_for_user(
        store, champion, candidates, user_id, now, k, settings.serving, views, settings.seed
    )
    if published is not None and not published.knows_user(user_id):
        ranked.user_known = False
    return ranked
