"""Exploration: propensities in (0, 1] that sum to one at each place, match how often
items are really shown there, reproducible by seed, and 1 for a list that does not explore."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from ranking.schema import PROPENSITY
from ranking.serving.exploration import (
    EXPLORE,
    exploration_rng,
    explore,
    place_probabilities,
    target_probability,
)
from ranking.serving.ranker import rank_for_user, served_impressions
from ranking.settings import ServingSettings
from tests.conftest import NOW

TOP = pd.DataFrame({"item_id": ["a", "b", "c"], "score": [3.0, 2.0, 1.0], "rule": "model"})
POOL = pd.DataFrame({"item_id": ["p", "q", "r", "s"], "score": [0.9, 0.8, 0.7, 0.6],
                     "rule": "model"})  # fmt: skip


def test_no_exploration_is_the_deterministic_list_with_propensity_one() -> None:
    shown = explore(TOP, POOL, 0.0, np.random.default_rng(0))
    assert list(shown["item_id"]) == ["a", "b", "c"]
    assert (shown[PROPENSITY] == 1.0).all()
    assert place_probabilities(3, 4, 0.0) == (1.0, 0.0)


@pytest.mark.parametrize(("k", "pool"), [(3, 4), (3, 2), (3, 0)])
def test_the_probabilities_at_a_place_sum_to_one(k: int, pool: int) -> None:
    keep, each = place_probabilities(k, pool, 0.2)
    assert 0 < keep <= 1 and 0 <= each < 1
    assert keep + pool * each == pytest.approx(1.0)


def test_propensities_are_how_often_items_are_shown_there() -> None:
    rng = np.random.default_rng(3)
    counts: Counter = Counter()
    draws = 5_000  # the frequencies' sd is at most 0.007 here: 0.015 is over 2 sd
    for _ in range(draws):
        shown = explore(TOP, POOL, 0.3, rng)
        assert shown["item_id"].is_unique
        assert ((shown[PROPENSITY] > 0) & (shown[PROPENSITY] <= 1)).all()
        assert (shown.loc[shown["rule"] == EXPLORE, "item_id"].isin(POOL["item_id"])).all()
        for j, (item, p) in enumerate(zip(shown["item_id"], shown[PROPENSITY], strict=True)):
            counts[(j, item, p)] += 1
    keep, each = place_probabilities(3, 4, 0.3)
    assert (keep, each) == pytest.approx((0.7, 0.075))
    for (j, item, p), n in counts.items():
        assert p == (keep if item == TOP["item_id"][j] else each)
        assert n / draws == pytest.approx(p, abs=0.015)  # the propensity is the frequency
    assert {item for (_, item, _) in counts} == set("abcpqrs")


def test_target_probability_of_the_logging_policy_is_its_propensity() -> None:
    shown = explore(TOP, POOL, 0.3, np.random.default_rng(5)).assign(position=[1, 2, 3])
    own = target_probability(shown, list(TOP["item_id"]), list(POOL["item_id"]), 0.3)
    assert own == pytest.approx(shown[PROPENSITY].to_numpy())
    # A deterministic policy that ranks b first: probability 1 only where it agrees.
    other = target_probability(shown.assign(item_id=["b", "b", "c"]), ["b", "a", "c"], [], 0.0)
    assert list(other) == [1.0, 0.0, 1.0]


def _candidates(n: int = 30) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"i{i:02d}" for i in range(n)],
                         "category": [f"c{i % 6}" for i in range(n)],
                         "fallback_score": np.linspace(10, 1, n)})  # fmt: skip


def test_a_ranking_call_explores_reproducibly_by_seed_and_logs_propensities() -> None:
    rules = ServingSettings(exploration=0.3)
    first = rank_for_user(None, None, _candidates(), "u1", NOW, k=10, rules=rules, seed=4)
    again = rank_for_user(None, None, _candidates(), "u1", NOW, k=10, rules=rules, seed=4)
    other = rank_for_user(None, None, _candidates(), "u1", NOW, k=10, rules=rules, seed=5)
    assert not first.items.equals(other.items)
    pd.testing.assert_frame_equal(first.items, again.items)
    later = [NOW + timedelta(seconds=s) for s in range(20)]
    lists = {tuple(rank_for_user(None, None, _candidates(), "u1", at, k=10, rules=rules,
                                 seed=4).items["item_id"]) for at in later}  # fmt: skip
    assert len(lists) > 1  # another request time, another draw
    assert (first.items["rule"] == EXPLORE).sum() == (first.items[PROPENSITY] < 0.5).sum()
    rows = served_impressions(first, "req", NOW)
    assert [r["propensity"] for r in rows] == list(first.items[PROPENSITY])
    assert all(0 < r["propensity"] <= 1 for r in rows)
    plain = rank_for_user(None, None, _candidates(), "u1", NOW, k=10, rules=ServingSettings())
    assert (plain.items[PROPENSITY] == 1.0).all()
    assert "explore" not in set(plain.items["rule"])
    assert exploration_rng(4, "u1", NOW).random() == exploration_rng(4, "u1", NOW).random()
