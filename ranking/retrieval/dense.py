"""Dense retrieval scores: a source's score for every merged candidate, not only for the
items it proposed itself.

A source's score is a ranking feature; left empty (NaN) for the items the source did not
propose, it cannot tell the ranker how two candidates from other sources compare on it.
Two scores are cheap to compute for any (user, item):

- ``popular``: the item's recency-decayed popularity over the retrieval window, the very
  score the popular source ranks by (the strongest non-learned scorer on MovieLens);
- ``embedding``: the ALS preference estimate, the inner product of the user's and the
  item's vectors in the model the embedding source searches (NaN where the model knows
  neither).

The rank columns still say which source proposed an item. Point in time: both read only
the relations :func:`ranking.retrieval.sources.prepare` made for the query time (``r_pos``,
events strictly before it) and the model fitted at the last refresh before it.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from ranking.retrieval.embeddings import embeddings_at
from ranking.settings import Settings


def popularity_of(
    con: duckdb.DuckDBPyConnection, settings: Settings, candidates: pd.DataFrame
) -> np.ndarray:
    """The popular source's score of each candidate's item (0 where nobody took it in the
    window), rounded to float32 as the source's own scores are."""
    r = settings.retrieval
    scores = con.execute(
        f"""
        SELECT item_id, sum(pow(0.5, age_days / {float(r.half_life_days)}))::FLOAT::DOUBLE
               AS score
        FROM r_pos WHERE age_days <= {float(r.window_days)}
        GROUP BY item_id
        """
    ).df()
    by_item = pd.Series(scores["score"].to_numpy(), index=scores["item_id"].to_numpy())
    found = by_item.reindex(candidates["item_id"].to_numpy()).to_numpy(dtype=float)
    return np.nan_to_num(found, nan=0.0)


def embedding_affinity(
    con: duckdb.DuckDBPyConnection, settings: Settings, candidates: pd.DataFrame
) -> np.ndarray:
    """The ALS inner product of each (user_id, item_id) candidate, float32-rounded; NaN
    where the model (fitted before the query time) knows the user or the item not."""
    out = np.full(len(candidates), np.nan)
    if candidates.empty:
        return out
    at = con.execute("SELECT r_at.at FROM r_at").fetchall()[0][0]
    fitted = embeddings_at(con, settings, at)
    if fitted is None:
        return out
    users = candidates["user_id"].to_numpy(dtype=object)
    rows = np.fromiter((fitted.user_rows.get(u, -1) for u in users), dtype=np.int64,
                       count=len(users))  # fmt: skip
    cols = pd.Index(fitted.item_ids).get_indexer(candidates["item_id"].to_numpy(dtype=object))
    known = (rows >= 0) & (cols >= 0)
    dots = np.einsum("ij,ij->i", fitted.user_factors[rows[known]],
                     fitted.item_factors[cols[known]])  # fmt: skip
    out[known] = dots.astype(np.float32)
    return out
