"""Replaying logged traffic for another policy: a logged row counts for the target only
where the target shows the same item at the same place."""

from __future__ import annotations

import pandas as pd
import pytest

from ranking.schema import PROPENSITY, REWARD
from ranking.serving.replay import estimate_for

#: Two sessions the champion served (exploration 0.2 over a pool of 3: keep 0.8, 0.2/3).
LOGGED = pd.DataFrame({
    "session_id": ["s1", "s1", "s2", "s2"],
    "user_id": ["u1", "u1", "u2", "u2"],
    "item_id": ["a", "x", "b", "c"],
    "position": [1, 2, 1, 2],
    PROPENSITY: [0.8, 0.2 / 3, 0.8, 0.8],
    REWARD: [1, 1, 0, 1],
})  # fmt: skip


def test_a_policy_that_agrees_everywhere_gets_the_logged_click_rate() -> None:
    same = estimate_for(LOGGED, {"s1": ["a", "x"], "s2": ["b", "c"]})
    # Weights 1/0.8, 15, 1/0.8, 1/0.8; clicks on rows 1, 2 and 4.
    w = [1.25, 15.0, 1.25, 1.25]
    assert same.value == pytest.approx((w[0] + w[1] + w[3]) / sum(w))


def test_a_policy_counts_only_the_places_it_agrees_on() -> None:
    # s1's target shows x first (not logged there), s2's agrees on b only.
    est = estimate_for(LOGGED, {"s1": ["x", "a"], "s2": ["b", "z"]})
    assert est.value == 0.0  # the one row it agrees on (b at 1) was not clicked
    assert est.rows == 4 and est.effective_rows == pytest.approx(1.0)
    unknown = estimate_for(LOGGED, {})
    assert unknown.value != unknown.value  # no row agrees: no estimate (NaN)
