"""One round of the closed loop: each active user is served a list by a policy, the
audience reacts, and what was served is measured, online and against the hidden truth.

Policies: ``champion`` (the serving path itself: the caller passes the ranking call,
the same ``rank_request`` the HTTP service makes), ``popular`` (the items with the most
relevant events in the last week, the same list for everyone) and ``random`` (a seeded
draw from the available catalogue): the baselines a learned policy must leave behind.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from ranking.settings import Settings
from ranking.simulation.audience import Audience
from ranking.warehouse import positive_sql, warehouse

POLICIES = ("champion", "popular", "random")
SERVED_COLUMNS = ["user_id", "item_id", "position", "session_id", "policy", "model_version"]


def popular_items(settings: Settings, at: datetime, k: int) -> list[str]:
    """The ``k`` available items with the most relevant events in the week before ``at``."""
    with warehouse(settings.warehouse_path, read_only=True) as con:
        rows = con.execute(
            f"""
            SELECT e.item_id FROM events e LEFT JOIN items i USING (item_id)
            WHERE e.event_timestamp >= ?::TIMESTAMP AND e.event_timestamp < ?::TIMESTAMP
              AND {positive_sql(settings)} AND coalesce(i.available, true)
            GROUP BY e.item_id ORDER BY count(*) DESC, e.item_id LIMIT ?
            """,
            [at - timedelta(days=7), at, k],
        ).fetchall()
    return [item for (item,) in rows]


def serve_lists(
    audience: Audience,
    users: list[str],
    at: datetime,
    policy: str,
    rng: np.random.Generator,
    k: int = 10,
    ranked_for: Callable[[str], tuple[list[str], str | None]] | None = None,
    popular: list[str] | None = None,
) -> pd.DataFrame:
    """One list of up to ``k`` items per user (a session each), by ``policy``.

    ``ranked_for(user)`` gives the champion's list and the model version that made it;
    ``popular`` is the popular policy's list (:func:`popular_items`)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: one of {', '.join(POLICIES)}")
    catalogue = audience.items
    released = catalogue[catalogue["available"] & (catalogue["created_at"] <= at)]["item_id"]
    rows = []
    for n, user in enumerate(users):
        version = None
        if policy == "champion":
            if ranked_for is None:
                raise ValueError("the champion policy needs the ranking call (ranked_for)")
            items, version = ranked_for(user)
        elif policy == "popular":
            items = list(popular or [])
        else:
            items = list(rng.choice(released.to_numpy(), size=min(k, len(released)), replace=False))
        session = f"sim-{at:%Y%m%dT%H%M%S}-{policy}-{n}"
        rows += [(user, item, pos + 1, session, policy, version)
                 for pos, item in enumerate(items[:k])]  # fmt: skip
    return pd.DataFrame(rows, columns=SERVED_COLUMNS)


def round_metrics(
    audience: Audience, served: pd.DataFrame, events: pd.DataFrame, at: datetime, k: int = 10
) -> dict[str, float]:
    """What one round's lists did: click-through, plays and purchases per session, skips
    per started item, the true NDCG@k against the hidden appeal, and the share of the
    released catalogue served at all (coverage)."""
    counts = events["event_type"].value_counts()
    sessions = max(served["session_id"].nunique(), 1)
    impressions, plays, skips = (int(counts.get(t, 0)) for t in ("impression", "play", "skip"))
    catalogue = audience.items
    released = int((catalogue["available"] & (catalogue["created_at"] <= at)).sum())
    return {
        "sessions": float(served["session_id"].nunique()),
        "ctr": counts.get("click", 0) / impressions if impressions else float("nan"),
        "plays_per_session": plays / sessions,
        "purchases_per_session": counts.get("purchase", 0) / sessions,
        "skip_rate": skips / (plays + skips) if plays + skips else 0.0,
        "true_ndcg@10": audience.true_ndcg(served, at, k),
        "coverage": served["item_id"].nunique() / released if released else float("nan"),
    }
