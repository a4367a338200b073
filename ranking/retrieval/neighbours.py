"""User-based collaborative filtering as a candidate source: what the query user's nearest
neighbours took, recency-weighted.

A user's neighbours are the ``neighbours_k`` other users whose sets of relevant items are
most alike (cosine similarity of the binary user x item matrix, all history before the
query time); an item scores the sum over the neighbours of their similarity times their
recency-weighted relevant events on it (``0.5 ** (age_days / half_life_days)``, as the
other sources weigh). It is popularity among the people who share the user's taste, and
it follows what they are taking now: a personal "recently popular".

Unlike the other sources, it scores every candidate, not only its own proposals: after
the merge, :func:`neighbour_affinity` fills ``retrieval_neighbours_score`` for each
retrieved item (0 where no neighbour took it), so the ranker compares any two candidates
on it. Point in time: everything comes from the prepared ``r_pos`` (relevant events
strictly before the query time).
"""

from __future__ import annotations

import threading

import duckdb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ranking.settings import Settings

#: The source's name.
NEIGHBOURS = "neighbours"


class NeighbourScores:
    """Each known query user's score for every item that was taken before the query time."""

    def __init__(self, users: list[str], items: np.ndarray, scores: np.ndarray) -> None:
        self.user_rows = {u: k for k, u in enumerate(users)}
        self.items = items
        self.item_cols = pd.Index(items)
        self.scores = scores  # len(users) x len(items)

    def lookup(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """The score of each (user, item) pair; 0 for users or items it does not know."""
        rows = np.fromiter((self.user_rows.get(u, -1) for u in user_ids), dtype=np.int64,
                           count=len(user_ids))  # fmt: skip
        cols = self.item_cols.get_indexer(item_ids)
        out = np.zeros(len(user_ids))
        known = (rows >= 0) & (cols >= 0)
        out[known] = self.scores[rows[known], cols[known]]
        return out

    def top(self, depth: int) -> pd.DataFrame:
        """(user_id, item_id, score): each user's ``depth`` best items with a positive score."""
        depth = min(depth, len(self.items))
        if not self.user_rows or depth <= 0:
            return pd.DataFrame({"user_id": [], "item_id": [], "score": []})
        best = np.argpartition(-self.scores, depth - 1, axis=1)[:, :depth]
        users = np.repeat(np.array(list(self.user_rows), dtype=object), depth)
        scores = np.take_along_axis(self.scores, best, axis=1).ravel()
        found = pd.DataFrame({"user_id": users, "item_id": self.items[best.ravel()],
                              "score": scores})  # fmt: skip
        return found[found["score"] > 0].reset_index(drop=True)


def neighbour_scores(con: duckdb.DuckDBPyConnection, settings: Settings) -> NeighbourScores:
    """The scores for the prepared query users (``r_users``) from ``r_pos``."""
    r = settings.retrieval
    pos = con.execute("SELECT user_id, item_id, age_days FROM r_pos").df()
    query = [u for (u,) in con.execute("SELECT user_id FROM r_users").fetchall()]
    users, user_codes = np.unique(pos["user_id"].to_numpy(dtype=str), return_inverse=True)
    items, item_codes = np.unique(pos["item_id"].to_numpy(dtype=str), return_inverse=True)
    rows = {u: k for k, u in enumerate(users)}
    known = [u for u in query if u in rows]
    if not known:
        return NeighbourScores([], items.astype(object), np.zeros((0, len(items))))
    shape = (len(users), len(items))
    taken = sp.csr_matrix((np.ones(len(pos)), (user_codes, item_codes)), shape=shape)
    taken.data[:] = 1.0  # a set of items: repeated events count once
    recency = 0.5 ** (pos["age_days"].to_numpy(dtype=float) / float(r.half_life_days))
    recent = sp.csr_matrix((recency, (user_codes, item_codes)), shape=shape)
    q = np.array([rows[u] for u in known])
    norms = np.sqrt(np.asarray(taken.sum(axis=1)).ravel())
    similarity = (taken[q] @ taken.T).toarray() / np.outer(norms[q], norms)
    similarity[np.arange(len(q)), q] = 0.0  # not one's own neighbour
    k = int(r.neighbours_k)
    if k < similarity.shape[1]:  # keep the k most similar (ties at the k-th kept too)
        kth = -np.partition(-similarity, k - 1, axis=1)[:, k - 1 : k]
        similarity = np.where(similarity >= kth, similarity, 0.0)
    scores = np.asarray((recent.T @ similarity.T).T)  # sparse x dense: no users x items array
    return NeighbourScores(known, items.astype(object), scores)


#: The last scores computed (the source and the dense feature of one retrieval share them),
#: keyed by the connection, the query time, the users, the events and the settings.
_last: list[tuple[tuple, NeighbourScores]] = []
_last_lock = threading.Lock()


def scores_for_prepared(con: duckdb.DuckDBPyConnection, settings: Settings) -> NeighbourScores:
    """:func:`neighbour_scores` for the relations prepared on ``con``, computed once per
    preparation."""
    at = con.execute("SELECT r_at.at FROM r_at").fetchall()[0][0]
    users = tuple(u for (u,) in con.execute("SELECT user_id FROM r_users").fetchall())
    n_pos = con.execute("SELECT count(*) FROM r_pos").fetchall()[0][0]
    key = (id(con), at, users, n_pos, settings.retrieval.model_dump_json(),
           settings.events.model_dump_json())  # fmt: skip
    with _last_lock:
        if _last and _last[0][0] == key:
            return _last[0][1]
    found = neighbour_scores(con, settings)
    with _last_lock:
        _last[:] = [(key, found)]
    return found


def neighbour_candidates(con: duckdb.DuckDBPyConnection, settings: Settings) -> pd.DataFrame:
    """The source's proposals: each user's best items, deep enough that the budget survives
    dropping what the user consumed and what is unavailable (as the embedding source)."""
    found = scores_for_prepared(con, settings)
    deepest = int(con.execute("SELECT most FROM r_seen_most").fetchall()[0][0] or 0)
    available = {i for (i,) in con.execute("SELECT item_id FROM r_catalogue").fetchall()}
    unavailable = sum(1 for i in found.items if i not in available)
    return found.top(settings.retrieval.neighbours_budget + deepest + unavailable)


def neighbour_affinity(
    con: duckdb.DuckDBPyConnection, settings: Settings, candidates: pd.DataFrame
) -> np.ndarray:
    """The neighbours' score of every (user_id, item_id) row of ``candidates`` (0 where no
    neighbour took the item), for the relations prepared on ``con``."""
    if candidates.empty:
        return np.zeros(0)
    found = scores_for_prepared(con, settings)
    return found.lookup(candidates["user_id"].to_numpy(dtype=object),
                        candidates["item_id"].to_numpy(dtype=object))  # fmt: skip
