"""The simulated audience: the generator's users and items, reactions in the data
contract, position bias, and a true NDCG that tells a good list from a bad one."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ranking.ingest import synth
from ranking.simulation.audience import REACTIONS, Audience

CFG = synth.SynthConfig(events=30_000, days=14, end=datetime(2026, 3, 1), seed=11)
AT = CFG.end - timedelta(days=1)


@pytest.fixture(scope="module")
def audience() -> Audience:
    return Audience.generate(CFG)


def _lists(audience: Audience, users: list[str], order) -> pd.DataFrame:
    """One served list of 10 per user, items chosen by ``order(appeal) -> indices``."""
    items = audience.items[audience.items["available"] & (audience.items["created_at"] <= AT)]
    rows = []
    for n, user in enumerate(users):
        appeal = audience.appeal(np.repeat(user, len(items)), items["item_id"], AT)
        picked = items["item_id"].to_numpy()[order(appeal)[:10]]
        rows += [(user, item, pos + 1, f"s{n}") for pos, item in enumerate(picked)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "position", "session_id"])


def test_the_audience_is_the_generators(audience: Audience) -> None:
    data = synth.generate(CFG)
    assert audience.items["item_id"].tolist() == data.items["item_id"].tolist()
    assert audience.items["category"].tolist() == data.items["category"].tolist()
    assert set(data.events["user_id"].to_pylist()) <= set(audience.user_ids)


def test_true_ndcg_is_one_for_the_best_list_and_low_for_the_worst(audience: Audience) -> None:
    users = list(audience.user_ids[:20])
    best = _lists(audience, users, lambda a: np.argsort(-a, kind="stable"))
    worst = _lists(audience, users, lambda a: np.argsort(a, kind="stable"))
    assert audience.true_ndcg(best, AT) == pytest.approx(1.0)
    assert audience.true_ndcg(worst, AT) < 0.5 * audience.true_ndcg(best, AT)
    shuffled = best.assign(position=best.groupby("session_id").cumcount(ascending=False) + 1)
    assert audience.true_ndcg(shuffled, AT) < 1.0  # the right items in the wrong order


def test_reactions_are_contract_events_and_fall_with_the_rank(audience: Audience) -> None:
    users = list(audience.user_ids[:400])
    served = _lists(audience, users, lambda a: np.argsort(-a, kind="stable"))
    events = audience.react(served, AT, np.random.default_rng(0))
    assert set(events["event_type"]) <= set(REACTIONS)
    impressions = events[events["event_type"] == "impression"]
    assert len(impressions) == len(served)  # every served row is an impression
    assert (events["event_timestamp"] >= pd.Timestamp(AT)).all()
    clicks = events[events["event_type"] == "click"].merge(
        served, on=["user_id", "item_id", "session_id", "position"]
    )
    assert len(clicks) > 0
    # The same items shown in reverse order: the top of the list gets more clicks, and
    # the click rate at rank 1-3 beats the rate at rank 8-10 (position bias).
    reversed_ = served.assign(position=11 - served["position"])
    again = audience.react(reversed_, AT, np.random.default_rng(0))
    top = lambda e: (e["event_type"].eq("click") & e["position"].le(3)).sum()  # noqa: E731
    low = lambda e: (e["event_type"].eq("click") & e["position"].ge(8)).sum()  # noqa: E731
    assert top(events) > low(events) and top(again) > 0
    # Seeded: the same generator state gives the same events.
    pd.testing.assert_frame_equal(events, audience.react(served, AT, np.random.default_rng(0)))


def test_a_taste_shift_moves_appeal_towards_the_category() -> None:
    shifted = Audience.generate(CFG.__class__(**{**CFG.__dict__, "taste_shift_to": "horror"}))
    drifting = shifted.user_ids[shifted.drifts][:50]
    horror = shifted.items[shifted.items["category"].str.startswith("horror")]["item_id"]
    item = horror.iloc[0]
    early = shifted.appeal(drifting, np.repeat(item, len(drifting)), CFG.start)
    late = shifted.appeal(drifting, np.repeat(item, len(drifting)), CFG.end)
    assert (late > early).mean() > 0.9
    with pytest.raises(KeyError, match="users unknown"):
        shifted.appeal(["nobody"], [item], AT)
