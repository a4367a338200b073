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

from ranking.retrieval.neighbours import NEIGHBOURS, neighbour_affinity
from ranking.retrieval.sources import SOURCE_NAMES, SOURCES, prepare, source_candidates
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
#: it did not propose the item; the neighbours' score is there for every candidate, see
#: :mod:`ranking.retrieval.neighbours`), the number of sources and the fused score. They
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
    parts = [f.assign(source=name) for name, f in per_source.items() if len(f)]
    columns = ["user_id", "item_id", "sources", SOURCE_COUNT, FUSED_SCORE]
    columns += [c for name in per_source for c in (score_column(name), rank_column(name))]
    if not parts:
        return pd.DataFrame(columns=columns)
    long = pd.concat(parts, ignore_index=True)
    long["rank"] = long["rank"].astype(float)
    wide = long.pivot_table(index=["user_id", "item_id"], columns="source",
                            values=["score", "rank"], aggfunc="first")  # fmt: skip
    out = pd.DataFrame(index=wide.index)
    for name in per_source:
        out[score_column(name)] = wide["score"].get(name, np.nan)
        out[rank_column(name)] = wide["rank"].get(name, np.nan)
    ranks = out[[rank_column(n) for n in per_source]]
    out[FUSED_SCORE] = (1.0 / (RRF_K + ranks)).sum(axis=1)
    proposed = ranks.notna().to_numpy()
    out[SOURCE_COUNT] = proposed.sum(axis=1).astype(float)
    names = np.array(list(per_source))
    out["sources"] = [",".join(names[row]) for row in proposed]
    out = out.reset_index().sort_values(
        ["user_id", FUSED_SCORE, "item_id"], ascending=[True, False, True], kind="stable"
    )
    return out[columns].reset_index(drop=True)


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
    if reuse:  # the data before ``at``, the users, and the settings that shape the sources
        key = (data_before_key(con, at), at, tuple(users), settings.seed,
               settings.retrieval.model_dump_json(), settings.events.model_dump_json())  # fmt: skip
    if key is not None:
        with _reused_lock:
            if key in _reused:
                _reused.move_to_end(key)
                return _reused[key].copy()
    prepare(con, settings, users, at)
    merged = merge_sources({s.name: source_candidates(con, settings, s) for s in SOURCES})
    if settings.retrieval.neighbours_budget > 0:  # the neighbours score every candidate
        merged[score_column(NEIGHBOURS)] = neighbour_affinity(con, settings, merged)
    if key is not None:
        with _reused_lock:
            _reused[key] = merged.copy()
            while sum(len(f) for f in _reused.values()) > REUSE_ROWS and len(_reused) > 1:
                _reused.popitem(last=False)
    return merged


def retrieve_from(
    warehouse_path: Path, settings: Settings, user_ids: list[str], at: datetime,
    reuse: bool = False,
) -> pd.DataFrame:  # fmt: skip
    """:func:`retrieve` on the warehouse, opened read-only."""
    with warehouse(warehouse_path, read_only=True) as con:
        return retrieve(con, settings, user_ids, at, reuse=reuse)
