"""Baselines scored on exactly the model's candidates, from raw history before the cut-off.

They read the warehouse, not the feature store, so a bug in the features cannot flatter
the baselines and the model at once. Every score uses only events strictly before
``cutoff``; a higher score means ranked higher.

- ``random``: a seeded uniform score.
- ``most_popular``: relevant interactions with the item, all history.
- ``recently_popular``: the same, each weighted by ``0.5 ** (age_days / half_life)``.
- ``favourite_categories``: the share of the user's relevant history in the item's
  categories (summed over the item's ``|``-separated categories).
- ``cooccurrence``: item-to-item co-occurrence: for each item the user engaged with,
  how many other users engaged with both it and the candidate, summed. Computed as
  ``sum over users v of |history(u) & history(v)| * [v engaged with candidate]``,
  which is the same sum without building the item x item matrix.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import numpy as np
import pandas as pd

from ranking.schema import BASELINES, RANDOM, UNKNOWN_CATEGORY
from ranking.settings import Settings
from ranking.warehouse import positive_sql


def baseline_scores(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    candidates: pd.DataFrame,
    cutoff: datetime,
    seed: int = 0,
    half_life_days: float | None = None,
    memory_limit: str = "1GB",
) -> dict[str, pd.Series]:
    """Every baseline's score for each (user_id, item_id) row of ``candidates`` (index kept)."""
    half_life = float(half_life_days or settings.features.decay_half_life_days)
    pairs = candidates[["user_id", "item_id"]].reset_index(names="_row")
    # The co-occurrence join is wide on popular items: let DuckDB spill rather than grow.
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.register("candidate_pairs", pairs)
    try:
        scored = con.execute(
            f"""
            WITH pos AS (
                SELECT e.user_id, e.item_id, e.event_timestamp FROM events e
                WHERE e.event_timestamp < ?::TIMESTAMP AND {positive_sql(settings)}
            ), pop AS (
                SELECT item_id, count(*) AS n,
                       sum(pow(0.5, (epoch(?::TIMESTAMP) - epoch(event_timestamp))
                                    / 86400.0 / {half_life})) AS decayed
                FROM pos GROUP BY item_id
            ), item_cats AS (
                SELECT item_id,
                       unnest(string_split(coalesce(category, '{UNKNOWN_CATEGORY}'), '|')) AS cat
                FROM items
            ), user_cats AS (
                SELECT p.user_id, coalesce(c.cat, '{UNKNOWN_CATEGORY}') AS cat, count(*) AS n
                FROM pos p LEFT JOIN item_cats c USING (item_id) GROUP BY ALL
            ), user_cat_share AS (
                SELECT user_id, cat, n / sum(n) OVER (PARTITION BY user_id) AS share
                FROM user_cats
            ), fav AS (
                SELECT cp._row, sum(s.share) AS score
                FROM candidate_pairs cp
                JOIN item_cats c ON c.item_id = cp.item_id
                JOIN user_cat_share s ON s.user_id = cp.user_id AND s.cat = c.cat
                GROUP BY cp._row
            ), seen AS (
                SELECT DISTINCT user_id, item_id FROM pos
            ), query_users AS (
                SELECT DISTINCT user_id FROM candidate_pairs
            ), overlap AS (
                SELECT h.user_id AS u, o.user_id AS v, count(*) AS shared
                FROM seen h JOIN query_users q ON q.user_id = h.user_id
                JOIN seen o ON o.item_id = h.item_id AND o.user_id <> h.user_id
                GROUP BY ALL
            ), cooc AS (
                SELECT cp._row, sum(ov.shared) AS score
                FROM candidate_pairs cp
                JOIN overlap ov ON ov.u = cp.user_id
                JOIN seen s ON s.user_id = ov.v AND s.item_id = cp.item_id
                GROUP BY cp._row
            )
            SELECT cp._row,
                   coalesce(pop.n, 0) AS most_popular,
                   coalesce(pop.decayed, 0) AS recently_popular,
                   coalesce(fav.score, 0) AS favourite_categories,
                   coalesce(cooc.score, 0) AS cooccurrence
            FROM candidate_pairs cp
            LEFT JOIN pop USING (item_id)
            LEFT JOIN fav USING (_row)
            LEFT JOIN cooc USING (_row)
            ORDER BY cp._row
            """,
            [cutoff, cutoff],
        ).df()
    finally:
        con.unregister("candidate_pairs")
    scored = scored.set_index("_row").reindex(pairs["_row"]).set_axis(candidates.index)
    rng = np.random.default_rng(seed)
    out = {RANDOM: pd.Series(rng.random(len(candidates)), index=candidates.index)}
    for name in BASELINES:
        if name == RANDOM:
            continue
        out[name] = scored[name].astype(float)
    return out
