"""Collaborative-filtering embeddings as a candidate source: implicit-feedback ALS from
the ``implicit`` library, each user's vector searched for its nearest item vectors by
inner product with ``usearch``: an HNSW index above ``embedding_ann_above`` items, its
exact search below (building a graph costs more than scanning a small catalogue: 0.4 s
to index 9k items against 6 ms to scan them for 20 users here).

Point in time: a query at ``at`` uses the model fitted at the last refresh time
``floor(at, embedding_refresh_days)`` on the relevant events strictly before that time,
so a proposal never comes from what happened after the query (nor, between refreshes,
from the newest events: as in production, where the features flow refreshes the model).
Fitted models are kept in a small in-process cache keyed by the warehouse file, the
refresh time, the number of events it was fitted on and the parameters: the training
groups of consecutive query times, and of overlapping cut-offs, share them.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import threadpool_limits
from usearch.index import Index, MetricKind, search

from ranking.settings import RetrievalSettings, Settings
from ranking.times import floor_to
from ranking.warehouse import data_before_key, positive_sql

#: The source's name.
EMBEDDING = "embedding"
#: Below this many (user, item) pairs ALS runs on one thread: the same factors (each
#: user's and item's solve is independent), and on ml-latest-small (90k pairs, 2 busy
#: cores) 0.33 s a fit instead of 0.62 s, the threads costing more than they share.
SINGLE_THREAD_BELOW = 1_000_000
#: How many fitted models the process keeps.
CACHE_SIZE = 64
_cache: OrderedDict[tuple, Embeddings | None] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class Embeddings:
    """A fitted model: users' vectors, and the items' vectors in an ANN index."""

    fitted_at: datetime
    user_rows: dict[str, int]
    user_factors: np.ndarray
    item_ids: np.ndarray  # row / usearch key -> item_id
    item_factors: np.ndarray
    index: object | None  # usearch HNSW index over the item vectors (inner product), or
    # None: a catalogue this small is searched exactly (no graph to build)

    def nearest(self, user_ids: list[str], count: int) -> pd.DataFrame:
        """(user_id, item_id, score): each known user's ``count`` nearest items by inner
        product (the ALS preference estimate); users the model does not know get none."""
        known = [u for u in user_ids if u in self.user_rows]
        count = min(count, len(self.item_ids))
        if not known or count <= 0:
            return pd.DataFrame({"user_id": [], "item_id": [], "score": []})
        vectors = self.user_factors[[self.user_rows[u] for u in known]]
        if self.index is None:
            found = search(self.item_factors, vectors, count, MetricKind.IP, exact=True)
        else:
            found = self.index.search(vectors, count)
        keys = np.asarray(found.keys).reshape(len(known), -1)
        distances = np.asarray(found.distances).reshape(len(known), -1)
        valid = keys < len(self.item_ids)  # unused slots hold a sentinel key
        users = np.repeat(np.array(known, dtype=object), keys.shape[1])[valid.ravel()]
        return pd.DataFrame({
            "user_id": users,
            "item_id": self.item_ids[keys[valid]],
            "score": 1.0 - distances[valid].astype(float),  # usearch: ip distance = 1 - dot
        })  # fmt: skip


def refresh_time(at: datetime, r: RetrievalSettings) -> datetime:
    """The last model refresh at or before ``at``."""
    return floor_to(at, r.embedding_refresh_days * 86400)


def _interactions(con: duckdb.DuckDBPyConnection, settings: Settings, before: datetime):
    r = settings.retrieval
    return con.execute(
        f"""
        SELECT e.user_id, e.item_id,
               sum(pow(0.5, (epoch(?::TIMESTAMP) - epoch(e.event_timestamp)) / 86400.0
                            / {float(r.half_life_days)})) AS weight
        FROM events e
        WHERE e.event_timestamp < ?::TIMESTAMP AND {positive_sql(settings)}
        GROUP BY ALL
        ORDER BY e.user_id, e.item_id
        """,
        [before, before],
    ).df()


def fit_embeddings(
    con: duckdb.DuckDBPyConnection, settings: Settings, fitted_at: datetime
) -> Embeddings | None:
    """ALS on the recency-weighted relevant events before ``fitted_at`` (None when fewer
    than two users or items: nothing to factorise)."""
    from implicit.cpu.als import AlternatingLeastSquares

    r = settings.retrieval
    pairs = _interactions(con, settings, fitted_at)
    users, user_codes = np.unique(pairs["user_id"].to_numpy(dtype=str), return_inverse=True)
    items, item_codes = np.unique(pairs["item_id"].to_numpy(dtype=str), return_inverse=True)
    if len(users) < 2 or len(items) < 2:
        return None
    confidence = r.embedding_alpha * pairs["weight"].to_numpy(dtype=np.float32)
    user_items = sp.csr_matrix((confidence, (user_codes, item_codes)),
                               shape=(len(users), len(items)))  # fmt: skip
    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        # implicit's advice, followed: its own threads, not BLAS's (it warns all the same)
        warnings.simplefilter("ignore", RuntimeWarning)
        model = AlternatingLeastSquares(
            factors=r.embedding_factors, regularization=r.embedding_regularization,
            iterations=r.embedding_iterations, random_state=settings.seed,
            num_threads=1 if user_items.nnz < SINGLE_THREAD_BELOW else 0,
        )  # fmt: skip
        model.fit(user_items, show_progress=False)
    item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    index = None
    if len(items) > r.embedding_ann_above:
        index = Index(ndim=item_factors.shape[1], metric=MetricKind.IP, dtype="f32")
        index.add(np.arange(len(items), dtype=np.uint64), item_factors)
    return Embeddings(
        fitted_at=fitted_at,
        user_rows={u: i for i, u in enumerate(users)},
        user_factors=np.asarray(model.user_factors, dtype=np.float32),
        item_ids=items.astype(object),
        item_factors=item_factors,
        index=index,
    )


def embeddings_at(
    con: duckdb.DuckDBPyConnection, settings: Settings, at: datetime
) -> Embeddings | None:
    """The model a query at ``at`` uses (fitted on first use, then cached)."""
    r = settings.retrieval
    fitted_at = refresh_time(at, r)
    key = (data_before_key(con, fitted_at), fitted_at, settings.seed,
           r.embedding_factors, r.embedding_regularization, r.embedding_iterations,
           r.embedding_alpha, r.embedding_ann_above, r.half_life_days,
           tuple(settings.events.label_weights.items()),
           settings.events.rating_label_offset)  # fmt: skip
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    fitted = fit_embeddings(con, settings, fitted_at)
    with _cache_lock:
        _cache[key] = fitted
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return fitted


def embedding_candidates(con: duckdb.DuckDBPyConnection, settings: Settings) -> pd.DataFrame:
    """The source's proposals for the prepared query (``r_users`` at ``r_at``): each user's
    nearest items, searched deep enough that the budget survives dropping what the user
    already consumed and what is unavailable."""
    at = con.execute("SELECT r_at.at FROM r_at").fetchall()[0][0]
    fitted = embeddings_at(con, settings, at)
    if fitted is None:
        return pd.DataFrame({"user_id": [], "item_id": [], "score": []})
    users = [u for (u,) in con.execute("SELECT user_id FROM r_users").fetchall()]
    # One depth for every user, whoever else is asked with them (a user's candidates must
    # not depend on the batch): the most any user has consumed, plus the model's items
    # that are no longer available.
    deepest = int(con.execute("SELECT most FROM r_seen_most").fetchall()[0][0] or 0)
    available = {i for (i,) in con.execute("SELECT item_id FROM r_catalogue").fetchall()}
    unavailable = sum(1 for i in fitted.item_ids if i not in available)
    return fitted.nearest(users, settings.retrieval.embedding_budget + deepest + unavailable)
