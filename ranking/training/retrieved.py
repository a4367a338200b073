"""Query groups from the retrieval stage: the ranker learns on what it will be asked to
order.

A query is a user at a query time ``t`` (each feature snapshot, plus the validation
start): its candidates are what :func:`ranking.retrieval.merge.retrieve` returns at ``t``,
labelled by what the user did in the label horizon after ``t``. Negatives are the
retrieved items the user did not take (hard negatives), never random draws. The
retrieval columns (:data:`RETRIEVAL_FEATURES`) come along as request-time features; the
stored features join later through Feast at ``t``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

from ranking import progress
from ranking.retrieval.merge import FUSED_SCORE, RETRIEVAL_FEATURES, retrieve, warm
from ranking.schema import TRAIN, VALID
from ranking.settings import Settings
from ranking.times import floor_to
from ranking.training.labels import labelled_events_sql

#: Marks the holdout rows retrieval did not propose: relevant, but no scorer can rank them.
RETRIEVED = "retrieved"


def query_times(start: datetime, end: datetime, every_s: float, extra: tuple = ()) -> list:
    """Snapshot-aligned times in ``[start, end)``, plus ``extra`` times inside it, sorted."""
    first = floor_to(start, every_s)
    step = pd.Timedelta(seconds=every_s)
    grid = pd.date_range(first if first >= start else first + step, end, freq=step)
    times = {t.to_pydatetime() for t in grid if t < pd.Timestamp(end)}
    times |= {t for t in extra if start <= t < end}
    return sorted(times)


def next_labels(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime,
    users: np.ndarray | None = None,
) -> pd.DataFrame:  # fmt: skip
    """(user_id, item_id, label): each user's best graded label per item in ``[start, end)``,
    for users with at least one relevant event there (only ``users``, if given)."""
    chosen = "" if users is None else "WHERE list_contains(?, user_id)"
    params = [start, end] + ([list(users)] if users is not None else [])
    return con.execute(
        f"""
        SELECT user_id, item_id, max(label) AS label
        FROM ({labelled_events_sql(settings)}) {chosen}
        GROUP BY user_id, item_id
        QUALIFY max(max(label)) OVER (PARTITION BY user_id) > 0
        ORDER BY user_id, item_id
        """,
        params,
    ).df()


def labelled_users(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime
) -> np.ndarray:
    """The users :func:`next_labels` keeps for ``[start, end)``, sorted: those with a
    relevant event there."""
    found = con.execute(
        f"""
        SELECT user_id FROM ({labelled_events_sql(settings)})
        GROUP BY user_id HAVING max(label) > 0 ORDER BY user_id
        """,
        [start, end],
    ).fetchnumpy()["user_id"]
    return np.asarray(found, dtype=object)


def retrieved_candidates(
    con: duckdb.DuckDBPyConnection, settings: Settings, user_ids: list[str], at: datetime,
    keep: int | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Retrieval at ``at`` for ``user_ids``: the best ``keep`` per user by fused score
    (all with None)."""
    found = retrieve(con, settings, user_ids, at, reuse=True)
    if keep is None:
        return found
    return found[found.groupby("user_id", sort=False).cumcount() < keep]


def retrieved_groups(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    windows: list[tuple[datetime, datetime]],
    rng: np.random.Generator,
) -> pd.DataFrame:
    """One query group per (query time ``t``, user who acted in ``[t, label_end)``) of each
    window, candidates from retrieval at ``t``, labelled by what the user did in the
    window; groups where retrieval found nothing relevant, or a single candidate, are
    dropped (they teach the ranker nothing). Columns: ``group_ts``, ``user_id``,
    ``item_id``, ``label``, ``sources`` and the retrieval features."""
    per_time = settings.training.users_per_query_time
    chosen = []
    for t, label_end in windows:
        # The users first, the labels of the sampled ones only: a window's labels of every
        # user held 5 GB at 10M events (35 windows), for 100 users a window kept.
        users = labelled_users(con, settings, t, label_end)
        if len(users) > per_time:
            users = np.sort(rng.choice(users, size=per_time, replace=False))
        chosen.append((t, next_labels(con, settings, t, label_end, users), users))
    requests = [(t, list(users)) for t, _, users in chosen if len(users)]
    warm(con, settings, requests, settings.training.retrieval_workers)  # in parallel
    parts = []
    for done, (t, labels, users) in enumerate(chosen):
        progress.advance("training groups (query times)", done, len(windows))
        if len(users) == 0:
            continue
        found = retrieved_candidates(
            con, settings, list(users), t, settings.training.candidates_per_group
        )
        found = found.merge(labels, on=["user_id", "item_id"], how="left")
        found["label"] = found["label"].fillna(0.0)
        by_user = found.groupby("user_id")
        # A group must hold something relevant and a pair to order: one candidate (early
        # in a log, when retrieval knows few items) teaches the ranker nothing.
        found = found[(by_user["label"].transform("max") > 0)
                      & (by_user["item_id"].transform("size") >= 2)]  # fmt: skip
        if len(found):
            parts.append(found.assign(group_ts=pd.Timestamp(t)))
    progress.advance("training groups (query times)", len(windows), len(windows))
    columns = ["group_ts", "user_id", "item_id", "label", "sources", *RETRIEVAL_FEATURES]
    if not parts:
        empty = pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
        return empty.astype({"group_ts": "datetime64[us]", "user_id": str, "item_id": str,
                             "sources": str})  # fmt: skip
    return pd.concat(parts, ignore_index=True)[columns]


def build_retrieved_frame(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, valid_start: datetime,
    end: datetime,
) -> pd.DataFrame:  # fmt: skip
    """Training and validation groups from retrieval in ``[start, end)``: ``split`` is
    'train' for query times before ``valid_start``, else 'valid'; ``group_id`` sorted.

    Labels look ``label_horizon_days`` ahead of each query time, never across
    ``valid_start`` (for training groups) or ``end``: no split learns from the next."""
    every = settings.features.snapshot_every.total_seconds()
    horizon = timedelta(days=settings.training.label_horizon_days)
    times = query_times(start, end, every, extra=(valid_start,))
    windows = [(t, min(t + horizon, valid_start if t < valid_start else end)) for t in times]
    rng = np.random.default_rng(settings.seed)
    frame = retrieved_groups(con, settings, windows, rng)
    frame["group_id"] = frame.groupby(["group_ts", "user_id"], sort=True).ngroup()
    frame["split"] = np.where(frame["group_ts"] < pd.Timestamp(valid_start), TRAIN, VALID)
    frame["sampled"] = False
    return frame.sort_values(["group_id", "item_id"], ignore_index=True)


def with_retrieved_candidates(
    con: duckdb.DuckDBPyConnection, settings: Settings, test: pd.DataFrame, at: datetime
) -> pd.DataFrame:
    """The test queries' candidates as served: everything retrieval returns at ``at``,
    labelled from ``test``, plus the relevant items it missed (``retrieved`` False: they
    count in recall and NDCG but no scorer can rank them)."""
    users = test[["user_id", "group_id", "user_history_events"]].drop_duplicates("user_id")
    test_at = pd.Timestamp(at)
    found = retrieved_candidates(con, settings, list(users["user_id"]), at)
    found = found.merge(users, on="user_id").assign(**{RETRIEVED: True}, group_ts=test_at)
    found = found.merge(test[["user_id", "item_id", "label"]], on=["user_id", "item_id"],
                        how="left").fillna({"label": 0.0})  # fmt: skip
    missed = test[test["label"] > 0].merge(found[["user_id", "item_id"]], how="left",
                                            indicator=True)  # fmt: skip
    missed = missed[missed["_merge"] == "left_only"].drop(columns="_merge")
    frame = pd.concat([found, missed.assign(**{RETRIEVED: False})], ignore_index=True)
    frame[FUSED_SCORE] = frame[FUSED_SCORE].astype(float)
    return frame.assign(sampled=False)


def only_retrieved(frame: pd.DataFrame, scores: pd.Series) -> pd.Series:
    """``scores`` with the rows retrieval did not propose set to NaN (ranked last)."""
    if RETRIEVED not in frame.columns:
        return scores
    retrieved = frame[RETRIEVED].astype("boolean").fillna(True).to_numpy(dtype=bool)
    return scores.where(retrieved)


def with_retrieval_columns(frame: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (e.g. the full catalogue) with the retrieval features and ``sources`` of
    ``candidates`` joined on (user, item); NaN where retrieval did not propose the item."""
    carried = ["sources", *RETRIEVAL_FEATURES]
    rest = frame.drop(columns=[c for c in carried if c in frame.columns])
    joined = rest.merge(candidates[["user_id", "item_id", *carried]], how="left",
                        on=["user_id", "item_id"])  # fmt: skip
    joined.index = frame.index
    return joined
