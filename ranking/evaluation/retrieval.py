"""How much of what users went on to like the candidate sources find at all: recall@k of
each source and of the merged set, on the same holdout as the rankers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ranking.retrieval.merge import rank_column
from ranking.retrieval.sources import SOURCE_NAMES
from ranking.schema import RETRIEVAL_FUSION

#: Candidate-set sizes the recall is reported at.
RECALL_AT = (50, 100, 200)
#: The row of the merged candidate set (ordered by reciprocal-rank fusion).
MERGED = "merged"


def retrieval_recall(
    candidates: pd.DataFrame, relevant: pd.DataFrame, ks: tuple[int, ...] = RECALL_AT
) -> pd.DataFrame:
    """Share of relevant (user_id, item_id) pairs within each source's top k and within
    the merged set's top k (by ``retrieval_score``); one row per source, then ``merged``.

    ``candidates`` is :func:`ranking.retrieval.merge.retrieve`'s output; ``relevant`` the
    pairs users went on to meet with a positive label.
    """
    pairs = relevant[["user_id", "item_id"]].drop_duplicates()
    if pairs.empty:
        raise ValueError("no relevant pair to measure recall on")
    merged_rank = candidates.groupby("user_id", sort=False).cumcount() + 1
    found = pairs.merge(
        candidates.assign(_merged_rank=merged_rank), on=["user_id", "item_id"], how="left"
    )
    rows = {}
    for name in (*SOURCE_NAMES, MERGED):
        column = "_merged_rank" if name == MERGED else rank_column(name)
        ranks = (
            found[column].to_numpy(dtype=float) if column in found else np.full(len(found), np.nan)
        )
        rows[name] = {f"recall@{k}": float(np.mean(ranks <= k)) for k in ks}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["candidates_per_user"] = np.nan
    table.loc[MERGED, "candidates_per_user"] = float(candidates.groupby("user_id").size().mean())
    return table


def restricted_to(candidates: pd.DataFrame, frame: pd.DataFrame, scores: pd.Series) -> pd.Series:
    """Two stages on a full-catalogue frame: ``scores`` for the retrieved (user, item) rows,
    minus infinity for every other row, so the ranker only orders what retrieval found."""
    keys = frame[["user_id", "item_id"]].merge(
        candidates[["user_id", "item_id"]].assign(_retrieved=True),
        on=["user_id", "item_id"], how="left",
    )  # fmt: skip
    retrieved = keys["_retrieved"].notna().to_numpy()
    return pd.Series(np.where(retrieved, scores.reindex(frame.index).to_numpy(), -np.inf),
                     index=frame.index)  # fmt: skip


#: The scorer that orders by the retrieval stage alone (reciprocal-rank fusion).
FUSION = RETRIEVAL_FUSION


def with_two_stages(
    candidates: pd.DataFrame, frame: pd.DataFrame, scores: dict[str, pd.Series]
) -> dict[str, pd.Series]:
    """``scores`` plus, for each, its two-stage version (``<name>_two_stage``: only the
    retrieved rows, in the scorer's order), the fusion order of retrieval alone, and each
    source alone (``<source>_alone``: its own items in its own order, nothing else)."""
    if "retrieval_score" in frame.columns:  # the frame already carries retrieval's columns
        fused = frame["retrieval_score"]
    else:
        fusion = candidates[["user_id", "item_id", "retrieval_score"]]
        fused = frame.merge(fusion, on=["user_id", "item_id"], how="left")["retrieval_score"]
    out = dict(scores)
    out |= {f"{n}_two_stage": restricted_to(candidates, frame, s) for n, s in scores.items()}
    out[FUSION] = pd.Series(fused.fillna(0.0).to_numpy(), index=frame.index)
    for source in SOURCE_NAMES:  # each source alone, in its own order
        if candidates[rank_column(source)].notna().any():
            own = frame[["user_id", "item_id"]].merge(
                candidates[["user_id", "item_id", rank_column(source)]], how="left",
                on=["user_id", "item_id"])[rank_column(source)]  # fmt: skip
            out[alone(source)] = pd.Series(-own.to_numpy(dtype=float), index=frame.index)
    return out


def alone(source: str) -> str:
    """The scorer name of one source used on its own: ``covisit_alone``."""
    return f"{source}_alone"
