"""Metrics against hand-computed values and against scikit-learn's independent NDCG."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score

from ranking.evaluation.metrics import (
    compare,
    most_popular_scores,
    ndcg_per_query,
    paired,
    ranking_metrics,
)


def test_hand_computed_group() -> None:
    frame = pd.DataFrame({"group_id": [0, 0, 0], "label": [3, 0, 1], "score": [0.1, 0.9, 0.5]})
    m = ranking_metrics(frame, "score", ks=(2, 10))
    dcg = 0 + 1 / math.log2(3) + 7 / math.log2(4)
    idcg = 7 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx(dcg / idcg)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / idcg)
    assert m["map@10"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["recall@10"] == pytest.approx(1.0)
    assert m["mrr"] == pytest.approx(0.5)


def test_perfect_and_groups_without_positives() -> None:
    frame = pd.DataFrame(
        {"group_id": [0, 0, 1, 1], "label": [2, 0, 0, 0], "score": [1.0, 0.0, 0.3, 0.2]}
    )
    m = ranking_metrics(frame, "score")
    assert m["groups"] == 1  # group 1 has nothing relevant and is skipped
    assert m["ndcg@10"] == m["map@10"] == m["mrr"] == 1.0


def test_ndcg_matches_scikit_learn_on_random_groups() -> None:
    rng = np.random.default_rng(5)
    groups, size = 50, 12
    labels = rng.integers(0, 4, size=(groups, size))
    labels[:, 0] = np.maximum(labels[:, 0], 1)  # every group has something relevant
    scores = rng.random((groups, size))
    frame = pd.DataFrame(
        {
            "group_id": np.repeat(np.arange(groups), size),
            "label": labels.ravel(),
            "score": scores.ravel(),
        }
    )
    ours = ranking_metrics(frame, "score", ks=(5, 10))
    # scikit-learn uses linear gain: hand it our exponential gain 2^label - 1.
    for k in (5, 10):
        theirs = ndcg_score(2.0**labels - 1, scores, k=k)
        assert ours[f"ndcg@{k}"] == pytest.approx(theirs, rel=1e-9)


def test_ties_are_not_broken_by_row_order() -> None:
    # All scores tie and positives come first: row order would give a perfect NDCG.
    labels = ([1] + [0] * 9) * 200
    frame = pd.DataFrame({"group_id": np.repeat(np.arange(200), 10), "label": labels, "score": 0.0})
    m = ranking_metrics(frame, "score", seed=1)
    assert 0.2 < m["ndcg@10"] < 0.6  # about the random-order expectation, not 1.0


def test_compare_scores_every_scorer_on_the_same_rows() -> None:
    frame = pd.DataFrame(
        {
            "group_id": [0, 0, 0],
            "label": [1, 0, 0],
            "item_popularity_7d": [0, 5, 1],
            "item_popularity_all": [9, 5, 1],
        }
    )
    table = compare(frame, {"oracle": frame["label"], "pop": most_popular_scores(frame)})
    assert table.loc["oracle", "ndcg@10"] == 1.0
    assert table.loc["pop", "mrr"] == pytest.approx(1 / 3)


def test_ndcg_per_query_is_the_pooled_ndcg_query_by_query() -> None:
    rng = np.random.default_rng(11)
    frame = pd.DataFrame({"group_id": np.repeat(np.arange(30), 8),
                          "label": rng.integers(0, 3, 240).astype(float),
                          "score": rng.integers(0, 4, 240).astype(float)})  # fmt: skip
    frame.loc[frame["group_id"] == 7, "label"] = 0.0  # nothing relevant: no NDCG
    per_query = ndcg_per_query(frame, "score", seed=3)
    assert 7 not in per_query.index and len(per_query) == 29
    assert per_query.mean() == pytest.approx(ranking_metrics(frame, "score", seed=3)["ndcg@10"])
    one = frame[frame["group_id"] == 0]
    assert per_query.loc[0] == pytest.approx(ranking_metrics(one, "score", seed=3)["ndcg@10"])


def test_paired_comparison_counts_and_standard_error() -> None:
    a = pd.Series([0.5, 0.2, 0.3, 0.0, 0.9], index=[1, 2, 3, 4, 5])
    b = pd.Series([0.1, 0.2, 0.6, 0.0, 0.5, 0.7], index=[1, 2, 3, 4, 5, 6])  # 6: only in b
    result = paired(a, b, "model", "baseline")
    diff = np.array([0.4, 0.0, -0.3, 0.0, 0.4])
    assert result.queries == 5
    assert (result.wins, result.losses, result.ties) == (2, 1, 2)
    assert result.diff == pytest.approx(diff.mean())
    assert result.se == pytest.approx(diff.std(ddof=1) / math.sqrt(5))
    assert result.mean_b == pytest.approx(0.28)
    assert "+0.1000" in result.line() and "better on 2, worse on 1" in result.line()
