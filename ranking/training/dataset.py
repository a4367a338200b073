"""Training sets: query groups, graded labels, sampled negatives, features through Feast.

A query group is a user at a point in time: a session (default) or a day. Its timestamp
is the moment the group starts, so the point-in-time join (Feast's
``get_historical_features``) hands it only snapshots taken before any of its events.
Candidates are the items the user met in the group (shown, clicked, bought...) plus
sampled negatives: popular items and random items. Labels are graded by event type.
The test holdout (:func:`build_holdout_frame`) is one query per returning user at each
of a few rolling cut-offs in the test window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ranking.errors import NoDataError
from ranking.features.store import (
    FeatureMemo,
    historical_features,
    service_features,
    service_name,
)
from ranking.retrieval.merge import RETRIEVAL_FEATURES
from ranking.schema import POSITIVE_SQL_LIST, SPLITS, TEST, TRAIN, UNKNOWN_CATEGORY, VALID
from ranking.settings import Settings
from ranking.times import floor_to, iso_duration
from ranking.training import retrieved
from ranking.training.labels import labelled_events_sql
from ranking.warehouse import event_time_range, warehouse


@dataclass(frozen=True)
class SplitTimes:
    """Time boundaries: train < valid_start <= valid < test_start <= test < end."""

    start: datetime
    valid_start: datetime
    test_start: datetime
    end: datetime


def split_times(
    start: datetime, end: datetime, valid_window: timedelta, test_window: timedelta
) -> SplitTimes:
    """Cut ``[start, end)`` into train / validation / test by time."""
    test_start = end - test_window
    valid_start = test_start - valid_window
    if valid_start <= start:
        raise NoDataError(
            f"training window {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} is too short for "
            f"{iso_duration(valid_window)} of validation and {iso_duration(test_window)} of test: "
            "set shorter "
            "RANKING_TRAINING__VALID_WINDOW / TEST_WINDOW (ISO 8601, e.g. PT6H), or unset them"
        )
    return SplitTimes(start, valid_start, test_start, end)


def split_for(settings: Settings, as_of: datetime) -> SplitTimes:
    """The train / validation / test times for a run at ``as_of`` on this warehouse.

    Training starts at the first snapshot: one cadence after the first event, or the
    start of the ``history_days`` window when that is later.
    """
    span = event_time_range(settings.warehouse_path)
    if span is None:
        raise NoDataError("the warehouse holds no events: run ingestion first")
    cadence = settings.features.snapshot_every
    first = floor_to(span[0], cadence.total_seconds()) + cadence
    if settings.features.history_days is not None:
        first = max(first, as_of - timedelta(days=settings.features.history_days))
    training = settings.training
    return split_times(first, as_of, training.valid_window, training.test_window)


def interacted_items(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, end: datetime
) -> pd.DataFrame:
    """One row per (query group, item the user met in it) with its graded label."""
    if settings.training.group_by == "session":
        key = "coalesce(e.session_id, strftime(e.event_timestamp, '%Y-%m-%d'))"
        group_ts = "min(e.event_timestamp)"
    else:
        key = "strftime(e.event_timestamp, '%Y-%m-%d')"
        group_ts = "date_trunc('day', min(e.event_timestamp))"
    return con.execute(
        f"""
        WITH labelled AS ({labelled_events_sql(settings, key)}
        ), groups AS (
            SELECT user_id, group_key, {group_ts.replace("e.", "")} AS group_ts
            FROM labelled GROUP BY user_id, group_key
            HAVING max(label) > 0   -- a group with nothing relevant teaches nothing
        )
        SELECT g.user_id, g.group_key, g.group_ts, l.item_id, max(l.label) AS label
        FROM labelled l JOIN groups g USING (user_id, group_key)
        GROUP BY ALL
        ORDER BY g.group_ts, g.user_id, g.group_key, l.item_id
        """,
        [start, end],
    ).df()


def item_catalogue(con: duckdb.DuckDBPyConnection, before: datetime) -> pd.DataFrame:
    """Items with their primary category and positive-interaction count before ``before``."""
    return con.execute(
        f"""
        WITH known AS (  -- items that existed before ``before``: nothing from the future
            SELECT item_id FROM items WHERE created_at IS NULL OR created_at < ?::TIMESTAMP
            UNION SELECT DISTINCT item_id FROM events WHERE event_timestamp < ?::TIMESTAMP
        ), pop AS (
            SELECT item_id, count(*) AS popularity FROM events
            WHERE event_timestamp < ?::TIMESTAMP
              AND event_type IN {POSITIVE_SQL_LIST}
            GROUP BY item_id
        )
        SELECT k.item_id, coalesce(i.primary_category, '{UNKNOWN_CATEGORY}') AS category,
               coalesce(i.available, true) AS available, coalesce(p.popularity, 0) AS popularity
        FROM known k LEFT JOIN items i USING (item_id) LEFT JOIN pop p USING (item_id)
        ORDER BY k.item_id
        """,
        [before, before, before],
    ).df()


def add_negatives(
    groups: pd.DataFrame,
    catalogue: pd.DataFrame,
    n_popular: int,
    n_random: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Append sampled negatives (label 0) to each group: popular ones and uniform ones.

    A sampled item the user already met in the group is dropped, not relabelled.
    """
    keys = groups[["group_id", "user_id", "group_ts"]].drop_duplicates("group_id")
    n_groups, items = len(keys), catalogue["item_id"].to_numpy()
    if n_groups == 0 or len(items) == 0:
        return groups.assign(sampled=False)
    pop = catalogue["popularity"].to_numpy(dtype=float) + 1.0
    draws = [
        rng.choice(len(items), size=(n_groups, n_popular), p=pop / pop.sum()),
        rng.integers(0, len(items), size=(n_groups, n_random)),
    ]
    picked = np.concatenate(draws, axis=1)
    neg = pd.DataFrame(
        {
            "group_id": np.repeat(keys["group_id"].to_numpy(), picked.shape[1]),
            "user_id": np.repeat(keys["user_id"].to_numpy(), picked.shape[1]),
            "group_ts": np.repeat(keys["group_ts"].to_numpy(), picked.shape[1]),
            "item_id": items[picked.ravel()],
            "label": 0.0,
            "sampled": True,
        }
    )
    both = pd.concat([groups.assign(sampled=False), neg], ignore_index=True)
    both = both.drop_duplicates(["group_id", "item_id"], keep="first")
    return both.sort_values(["group_id", "sampled", "item_id"], kind="stable", ignore_index=True)


def with_request_columns(frame: pd.DataFrame, catalogue: pd.DataFrame) -> pd.DataFrame:
    """Add ``category`` and the UTC ``event_timestamp`` / ``request_timestamp_s`` Feast needs."""
    frame = frame.merge(catalogue[["item_id", "category"]], on="item_id", how="left")
    frame["category"] = frame["category"].fillna(UNKNOWN_CATEGORY)
    ts = pd.to_datetime(frame.pop("group_ts")).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    frame["event_timestamp"] = ts
    frame["request_timestamp_s"] = (ts.astype("int64") // 1_000_000).astype("int64")
    return frame


def query_group_rows(
    con: duckdb.DuckDBPyConnection, settings: Settings, start: datetime, valid_start: datetime,
    end: datetime,
) -> pd.DataFrame:  # fmt: skip
    """Rows of the query groups that start in ``[start, end)``: one per (group, candidate).

    Groups come from retrieval (:mod:`ranking.training.retrieved`, with the retrieval
    features) or, with ``candidates = 'sampled'``, from sessions or days plus sampled
    negatives. Columns: ``group_id`` (sorted, the XGBoost ``qid``), ``user_id``, ``item_id``,
    ``category``, ``event_timestamp`` (group start, UTC), ``request_timestamp_s``,
    ``label``, ``sampled`` and ``split`` ('train' before ``valid_start``, else 'valid').
    Monitoring builds its current sample with the same function.
    """
    # Categories as known by the end (an item new in validation has its own, as serving
    # would show it); sampled negatives only from items known before validation.
    categories = item_catalogue(con, end)
    if settings.training.candidates == "retrieval":
        frame = retrieved.build_retrieved_frame(con, settings, start, valid_start, end)
        return with_request_columns(frame, categories)
    catalogue = item_catalogue(con, valid_start)
    groups = interacted_items(con, settings, start, end)
    groups["group_id"] = groups.groupby(["group_ts", "user_id", "group_key"], sort=True).ngroup()
    rng = np.random.default_rng(settings.seed)
    frame = add_negatives(
        groups.drop(columns="group_key"),
        catalogue,
        settings.training.negatives_popular,
        settings.training.negatives_random,
        rng,
    )
    frame = with_request_columns(frame, categories)
    naive = frame["event_timestamp"].dt.tz_localize(None)
    frame["split"] = np.where(naive < pd.Timestamp(valid_start), TRAIN, VALID)
    return frame.sort_values(["group_id", "item_id"], ignore_index=True)


def build_entity_frame(
    con: duckdb.DuckDBPyConnection, settings: Settings, times: SplitTimes
) -> pd.DataFrame:
    """Training and validation rows before the test (see :func:`query_group_rows`)."""
    return query_group_rows(con, settings, times.start, times.valid_start, times.test_start)


def holdout_cutoffs(times: SplitTimes, every_s: float, cutoffs: int) -> list[datetime]:
    """Up to ``cutoffs`` snapshot steps from ``times.test_start`` that tile the test window
    (as evenly as whole steps allow); just ``test_start`` when the window is one step."""
    steps = int((times.end - times.test_start).total_seconds() // every_s)
    k = max(1, min(cutoffs, steps))
    offsets = sorted({int(i * steps / k + 0.5) for i in range(k)})  # half up, not to even
    return [times.test_start + timedelta(seconds=o * every_s) for o in offsets]


def build_holdout_frame(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    times: SplitTimes,
    full_catalogue: bool = False,
    first_group_id: int = 0,
    cutoffs: int | None = None,
) -> pd.DataFrame:
    """Test queries at rolling cut-offs that tile ``[test_start, end)``: at each cut-off,
    one per returning user, labelled by what the user did until the next cut-off.

    ``cutoffs`` (default ``evaluation.test_cutoffs``) are snapshot steps apart
    (:func:`holdout_cutoffs`); a user who returns in several windows is several queries,
    as a feed would serve them. See :func:`holdout_at` for one cut-off's queries.
    """
    every = settings.features.snapshot_every.total_seconds()
    starts = holdout_cutoffs(times, every, cutoffs or settings.evaluation.test_cutoffs)
    parts, next_id = [], first_group_id
    for at, until in zip(starts, [*starts[1:], times.end], strict=True):
        part = holdout_at(con, settings, at, until, full_catalogue, next_id)
        if len(part):
            parts.append(part)
            next_id = int(part["group_id"].max()) + 1
    if not parts:
        return holdout_at(con, settings, times.test_start, times.end, full_catalogue, next_id)
    return pd.concat(parts, ignore_index=True)


def holdout_at(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    cutoff: datetime,
    end: datetime,
    full_catalogue: bool = False,
    first_group_id: int = 0,
) -> pd.DataFrame:
    """Test queries at ``cutoff``: one per returning user.

    A test query is a user with events before the cut-off and a relevant event in
    ``[cutoff, end)``. Its candidates are, with ``full_catalogue``, every item known
    before the cut-off; else, with retrieval candidates (the default), what retrieval
    returns at the cut-off plus the relevant items it missed (``retrieved`` False); else
    every item the user met after the cut-off plus sampled popular and random negatives.
    Labels are graded by what the user did after the cut-off. The query's timestamp is
    the cut-off itself, so its features come from snapshots taken before it.
    ``user_history_events`` (events before the cut-off) drives the user segments.
    """
    test = con.execute(
        f"""
        WITH history AS (
            SELECT user_id, count(*) AS user_history_events FROM events
            WHERE event_timestamp < ?::TIMESTAMP GROUP BY user_id
        ), labelled AS ({labelled_events_sql(settings)}
        )
        SELECT l.user_id, l.item_id, max(l.label) AS label, any_value(h.user_history_events)
               AS user_history_events
        FROM labelled l JOIN history h USING (user_id)
        GROUP BY l.user_id, l.item_id
        QUALIFY max(max(l.label)) OVER (PARTITION BY l.user_id) > 0
        ORDER BY l.user_id, l.item_id
        """,
        [cutoff, cutoff, end],
    ).df()
    users = test.drop_duplicates("user_id")[["user_id", "user_history_events"]].reset_index(
        drop=True
    )
    if len(users) > settings.evaluation.test_users_per_cutoff:  # a seeded sample, per cut-off
        rng = np.random.default_rng([settings.seed, int(cutoff.timestamp())])
        cap = settings.evaluation.test_users_per_cutoff
        kept = np.sort(rng.choice(len(users), size=cap, replace=False))
        users = users.iloc[kept].reset_index(drop=True)
        test = test[test["user_id"].isin(users["user_id"])]
    users["group_id"] = np.arange(first_group_id, first_group_id + len(users))
    test = test.merge(users[["user_id", "group_id"]], on="user_id")
    test["group_ts"] = pd.Timestamp(cutoff)
    catalogue = item_catalogue(con, cutoff)
    if not full_catalogue and settings.training.candidates == "retrieval":
        frame = retrieved.with_retrieved_candidates(con, settings, test, cutoff)
    elif full_catalogue:
        others = users.merge(catalogue[catalogue["available"]][["item_id"]], how="cross")
        others = others.assign(label=0.0, sampled=True, group_ts=pd.Timestamp(cutoff))
        frame = pd.concat([test.assign(sampled=False), others], ignore_index=True)
        frame = frame.drop_duplicates(["group_id", "item_id"], keep="first")
    else:
        rng = np.random.default_rng(settings.seed + 1)
        frame = add_negatives(
            test.drop(columns="user_history_events"),
            catalogue,
            settings.evaluation.negatives_popular,  # fixed by themselves: changing how
            settings.evaluation.negatives_random,  # training samples must not move the test
            rng,
        )
        frame = frame.merge(users[["user_id", "user_history_events"]], on="user_id")
    frame = with_request_columns(frame, catalogue)
    frame["split"] = TEST
    return frame.sort_values(["group_id", "item_id"], ignore_index=True)


def split_rows(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of one split (``train``, ``valid`` or ``test``)."""
    return frame[frame["split"] == split]


def training_set_summary(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Rows, groups and positive share per split (for logs and run summaries)."""
    out: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        part = frame[frame["split"] == split]
        out[split] = {
            "rows": float(len(part)),
            "groups": float(part["group_id"].nunique()),
            "positive_share": float((part["label"] > 0).mean()) if len(part) else 0.0,
        }
    return out


def feature_columns(frame: pd.DataFrame, features: list[str]) -> list[str]:
    """The service's features present in ``frame`` (Feast drops none, but be explicit)."""
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise KeyError(f"training set lacks features {missing}")
    return list(features)


def build_training_set(
    warehouse_path: Path,
    store,
    settings: Settings,
    times: SplitTimes,
    memo: FeatureMemo | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Train / valid groups and the test holdout, features from Feast in one retrieval
    (only the rows ``memo`` has not seen, when given: see :class:`FeatureMemo`).

    Returns (frame, feature names); ``split`` tells the parts apart.
    """
    queries = build_query_frame(warehouse_path, settings, times)
    return with_features(store, queries, service_name(settings), memo)


def build_query_frame(warehouse_path: Path, settings: Settings, times: SplitTimes) -> pd.DataFrame:
    """The train / valid query groups and the test holdout, before any feature joins."""
    with warehouse(warehouse_path, read_only=True) as con:
        entities = build_entity_frame(con, settings, times)
        first_test_id = int(entities["group_id"].max()) + 1 if len(entities) else 0
        holdout = build_holdout_frame(con, settings, times, first_group_id=first_test_id)
    if entities.empty:
        raise NoDataError(
            f"no query group with a positive label between {times.start} and {times.test_start}"
        )
    if holdout.empty:
        raise NoDataError(
            f"no returning user with a relevant event between {times.test_start} and {times.end}"
        )
    return pd.concat([entities, holdout], ignore_index=True)


def with_features(
    store, entities: pd.DataFrame, service_name: str, memo: FeatureMemo | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Feast's point-in-time join of a service's features onto an entity frame.

    The features are the service's, then the retrieval features the entity frame carries
    (request-time features, computed by retrieval at the group's time)."""
    frame = historical_features(store, entities, service_name, memo=memo)
    frame = frame.sort_values(["group_id", "item_id"], ignore_index=True)
    carried = [f for f in RETRIEVAL_FEATURES if f in entities.columns]
    return frame, feature_columns(frame, [*service_features(store, service_name), *carried])
