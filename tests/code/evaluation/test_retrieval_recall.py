"""Retrieval recall per source and merged, and the two-stage restriction of a ranker."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ranking.evaluation.retrieval import MERGED, restricted_to, retrieval_recall
from ranking.retrieval.merge import merge_sources
from ranking.retrieval.sources import SOURCE_NAMES


def _candidates() -> pd.DataFrame:
    def source(rows):
        return pd.DataFrame(rows, columns=["user_id", "item_id", "score", "rank"])

    per_source = dict.fromkeys(SOURCE_NAMES, source([]))
    per_source["covisit"] = source([("u1", "a", 3.0, 1), ("u1", "b", 2.0, 2),
                                    ("u2", "c", 1.0, 1)])  # fmt: skip
    per_source["popular"] = source([("u1", "b", 9.0, 1), ("u1", "z", 8.0, 2),
                                    ("u2", "z", 9.0, 1), ("u2", "c", 1.0, 2)])  # fmt: skip
    return merge_sources(per_source)


def test_recall_counts_each_sources_top_k_and_the_merged_top_k() -> None:
    relevant = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["a", "z", "c", "q"]})
    table = retrieval_recall(_candidates(), relevant, ks=(1, 2))
    assert table.loc["covisit", "recall@1"] == pytest.approx(2 / 4)  # u1:a, u2:c
    assert table.loc["popular", "recall@1"] == pytest.approx(0 / 4)
    assert table.loc["popular", "recall@2"] == pytest.approx(2 / 4)  # u1:z, u2:c
    # Merged order (fusion): u1 -> b (two sources), a, z; u2 -> c (two sources), z.
    assert table.loc[MERGED, "recall@1"] == pytest.approx(1 / 4)  # u2:c
    assert table.loc[MERGED, "recall@2"] == pytest.approx(2 / 4)  # + u1:a
    assert table.loc["fresh", "recall@2"] == 0.0  # a source that proposed nothing
    assert table.loc[MERGED, "candidates_per_user"] == pytest.approx(2.5)


def test_recall_needs_something_to_find() -> None:
    with pytest.raises(ValueError, match="no relevant pair"):
        retrieval_recall(_candidates(), pd.DataFrame(columns=["user_id", "item_id"]))


def test_two_stages_rank_only_what_retrieval_found() -> None:
    frame = pd.DataFrame({"user_id": ["u1"] * 4, "item_id": ["a", "b", "z", "x"]},
                         index=[10, 11, 12, 13])  # fmt: skip
    model = pd.Series([0.1, 0.2, 0.3, 5.0], index=frame.index)  # x: best, but not retrieved
    out = restricted_to(_candidates(), frame, model)
    assert list(out.index) == [10, 11, 12, 13]
    assert out.loc[13] == -np.inf
    assert list(out.loc[[10, 11, 12]]) == [0.1, 0.2, 0.3]
