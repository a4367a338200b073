"""Merging the sources: one candidate set per user, each item once, with which sources
proposed it and how each scored and ranked it (features for the ranker, and the means to
measure where recall is lost).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ranking.retrieval.dense import embedding_affinity, popularity_of
from ranking.retrieval.embeddings import EMBEDDING
from ranking.retrieval.neighbours import NEIGHBOURS, neighbour_affinity
from ranking.retrieval.sources import POPULAR, SOURCE_NAMES, SOURCES, prepare, source_candidates
from ranking.settings import Settings
from ranking.warehouse import data_before_key, warehouse

#: Reciprocal-rank fusion constant: a source's 1st item adds 1/61, its 100th 1/160.
RRF_K = 60


def score_column(source: str) -> str:
    return f"retrieval_{source}_score"


def rank_column(source: str) -> str:
    return f"retrieval_{source}_rank"


#: How many sources proposed the item, and their reciprocal-rank fusion.
SOURCE_COUNT, FUSED_SCORE = "retrieval_sources", "retrieval_score"
#: What retrieval hands the ranker as features: each source's score and rank (NaN where
#: it did not propose the item; the neighbours', popularity's and the embeddings' scores
#: are there for every candidate, see :mod:`ranking.retrieval.neighbours` and
#: :mod:`ranking.retrieval.dense`), the number of sources and the fused score. They
#: are request-time features: computed by the same :func:`retrieve` offline and online.
RETRIEVAL_FEATURES: tuple[str, ...] = (
    *(c for s in SOURCE_NAMES for c in (score_column(s), rank_column(s))),
    SOURCE_COUNT,
    FUSED_SCORE,
)


def merge_sources(per_source: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (user, item): ``sources`` (names, comma-separated), their number, per-
    source score and rank (NaN where a source did not propose it), and ``retrieval_score``,
    the reciprocal-rank fusion of the sources; rows sorted by user, then that descending."""
    names = list(per_source)
    columns = ["user_id", "item_id", "sources", SOURCE_COUNT, FUSED_SCORE]
    columns += [c for name in names for c in (score_column(name), rank_column(name))]
    parts = [(k, f) for k, f in enumerate(per_source.values()) if len(f)]
    if not parts:
        return pd.DataFrame(columns=columns)
    # One slot per distinct (user, item), filled source by source with numpy: a pivot of
    # the long table costs seconds at a few hundred thousand pairs.
    long = pd.concat([f[["user_id", "item_id"]] for _, f in parts], ignore_index=True)
    user_code, users = pd.factorize(long["user_id"])
    item_code, items = pd.factorize(long["item_id"])
    slot, pair_codes = pd.factorize(user_code.astype(np.int64) * len(items) + item_code)
    scores = np.full((len(pair_codes), len(names)), np.nan)
    ranks = np.full((len(pair_codes), len(names)), np.nan)
    start = 0
    for k, f in parts:
        rows = slot[start : start + len(f)]
        scores[rows, k] = f["score"].to_numpy(dtype=float)
        ranks[rows, k] = f["rank"].to_numpy(dtype=float)
        start += len(f)
    out = pd.DataFrame({"user_id": users.take(pair_codes // len(items)),
                        "item_id": items.take(pair_codes % len(items))})  # fmt: skip
    proposed = ~np.isnan(ranks)
    out["sources"] = source_lists(proposed, names)
    out[SOURCE_COUNT] = proposed.sum(axis=1).astype(float)
    # pandas' NaN-skipping row sum, as the ranker has always been given it (numpy's
    # pairwise nansum differs in the last bit, which reorders exact ties)
    out[FUSED_SCORE] = pd.DataFrame(1.0 / (RRF_K + ranks)).sum(axis=1).to_numpy()
    for k, name in enumerate(names):
        out[score_column(name)] = scores[:, k]
        out[rank_column(name)] = ranks[:, k]
    out = out.sort_values(
        ["user_id", FUSED_SCORE, "item_id"], ascending=[True, False, True], kind="stable"
    )
    return out[columns].reset_index(drop=True)


def source_lists(proposed: np.ndarray, names: list[str]) -> np.ndarray:
    """Each row's proposing sources, comma-separated in ``names`` order: joined once per
    distinct combination (a few dozen), not once per row."""
    masks = proposed.astype(np.int64) @ (np.int64(1) << np.arange(len(names), dtype=np.int64))
    distinct, inverse = np.unique(masks, return_inverse=True)
    joined = np.array([",".join(n for k, n in enumerate(names) if m >> k & 1) for m in distinct],
                      dtype=object)  # fmt: skip
    return joined[inverse]


#: Rows of retrieved candidates the process keeps for reuse (see :func:`retrieve`).
REUSE_ROWS = 3_000_000
_reused: OrderedDict[tuple, pd.DataFrame] = OrderedDict()
_reused_lock = threading.Lock()


def retrieve(
    con: duckdb.DuckDBPyConnection, settings: Settings, user_ids: list[str], at: datetime,
    reuse: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """Every source's candidates for ``user_ids`` at ``at`` (naive UTC), merged.

    With ``reuse``, a result already computed in this process for the same users, time,
    settings and data is returned again (a copy): the training groups of overlapping
    windows (rolling cut-offs, monitoring after training) share their retrievals. The
    prepared relations (``r_*``) are then not rebuilt on ``con``."""
    users = list(dict.fromkeys(user_ids))
    key = None
    if reuse:
        key = _reuse_key(con, settings, users, at)
    if key is not None:
        with _reused_lock:
            if key in _reused:
                _reused.move_to_end(key)
                return _reused[key].copy()
    prepare(con, settings, users, at)
    merged = merge_sources({s.name: source_candidates(con, settings, s) for s in SOURCES})
    if settings.retrieval.neighbours_budget > 0:  # the neighbours score every candidate
        merged[score_column(NEIGHBOURS)] = neighbour_affinity(con, settings, merged)
    if settings.retrieval.dense_scores:  # so do popularity and the embeddings, if asked
        merged[score_column(POPULAR)] = popularity_of(con, settings, merged)
        if settings.retrieval.embedding_budget > 0:
            merged[score_column(EMBEDDING)] = embedding_affinity(con, settings, merged)
    if key is not None:
        with _reused_lock:
            _reused[key] = merged.copy()
            while sum(len(f) for f in _reused.values()) > REUSE_ROWS and len(_reused) > 1:
                _reused.popitem(last=False)
    return merged


def _reuse_key(con: duckdb.DuckDBPyConnection, settings: Settings, users: list[str],
               at: datetime) -> tuple:  # fmt: skip
    """The data before ``at``, the users, and the settings that shape the sources."""
    return (data_before_key(con, at), at, tuple(users), settings.seed,
            settings.retrieval.model_dump_json(), settings.events.model_dump_json())  # fmt: skip


def _retrieve_chunk(warehouse_path: Path, settings: Settings,
                    requests: list[tuple[datetime, list[str]]]) -> list[pd.DataFrame]:  # fmt: skip
    """:func:`retrieve` for each (time, users), in a worker process."""
    with warehouse(warehouse_path, read_only=True) as con:
        return [retrieve(con, settings, users, at) for at, users in requests]


def warm(
    con: duckdb.DuckDBPyConnection, settings: Settings,
    requests: list[tuple[datetime, list[str]]], workers: int,
) -> int:  # fmt: skip
    """Compute the retrievals of ``requests`` (time, users) that this process has not kept
    yet in ``workers`` processes, and keep them, so that :func:`retrieve` with ``reuse``
    returns them: the training groups of every query time, in parallel. The results are
    the same: each retrieval depends only on the data before its time, its users and the
    settings (a worker refits the ALS models it needs, on the same grid and seed).
    Requests go to the workers in contiguous runs of time, so that the runs share their
    fitted models. Returns how many retrievals were computed (none with one worker)."""
    users = {at: list(dict.fromkeys(u)) for at, u in requests}
    if workers <= 1 or len(users) < MIN_PARALLEL:
        return 0
    keys = {at: _reuse_key(con, settings, u, at) for at, u in users.items()}
    with _reused_lock:
        missing = sorted(at for at, key in keys.items() if key not in _reused)
    if len(missing) < MIN_PARALLEL:
        return 0
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    runs = np.array_split(np.arange(len(missing)), workers * 4)
    chunks = [[(missing[i], users[missing[i]]) for i in run] for run in runs if len(run)]
    path = Path(con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal "
                            "ORDER BY database_oid LIMIT 1").fetchall()[0][0])  # fmt: skip
    # spawn: the parent's DuckDB and OpenMP threads must not be forked mid-flight
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
        done = pool.map(_retrieve_chunk, [path] * len(chunks), [settings] * len(chunks),
                        chunks)  # fmt: skip
        found = [(at, frame) for chunk, frames in zip(chunks, done, strict=True)
                 for (at, _), frame in zip(chunk, frames, strict=True)]  # fmt: skip
    with _reused_lock:
        for at, frame in found:
            _reused[keys[at]] = frame
        while sum(len(f) for f in _reused.values()) > REUSE_ROWS and len(_reused) > 1:
            _reused.popitem(last=False)
    return len(found)


#: Fewer missing retrievals than this are not worth starting worker processes for.
MIN_PARALLEL = 40


def retrieve_from(
    warehouse_path: Path, settings: Settings, user_ids: list[str], at: datetime,
    reuse: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """:func:`retrieve` on the warehouse, opened read-only."""
    with warehouse(warehouse_path, read_only=True) as con:
        return retrieve(con, settings, user_ids, at, reuse=reuse)
