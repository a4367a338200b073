"""A round of the loop: lists by policy, the audience's reactions, the round's figures."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.schema import POSITIVE_TYPES
from ranking.settings import Settings
from ranking.simulation.audience import Audience
from ranking.simulation.rounds import popular_items, round_metrics, serve_lists
from tests.conftest import NOW

CFG = synth.SynthConfig(events=20_000, days=14, end=NOW.replace(hour=0, minute=0, second=0,
                                                                microsecond=0), seed=5)  # fmt: skip
AT = CFG.end - timedelta(hours=6)


@pytest.fixture(scope="module")
def audience() -> Audience:
    return Audience.generate(CFG)


def test_popular_items_are_last_weeks_most_engaged(settings: Settings, tmp_path) -> None:
    paths = synth.write(synth.generate(CFG), tmp_path / "raw")
    ingest(settings.warehouse_path, paths["events"], settings.event_types, NOW, paths["items"])
    top = popular_items(settings, AT, 5)
    assert len(top) == 5 and len(set(top)) == 5
    events = pd.read_parquet(paths["events"] / "events.parquet")
    week = events[(events["event_timestamp"] >= pd.Timestamp(AT - timedelta(days=7), tz="UTC"))
                  & (events["event_timestamp"] < pd.Timestamp(AT, tz="UTC"))
                  & events["event_type"].isin(POSITIVE_TYPES)]  # fmt: skip
    counts = week.groupby("item_id", observed=True).size()
    assert counts[top[0]] == counts.max()


def test_lists_by_policy_and_the_rounds_figures(audience: Audience) -> None:
    users = list(audience.user_ids[:300])
    rng = np.random.default_rng(1)
    random = serve_lists(audience, users, AT, "random", rng)
    assert random.groupby("session_id")["position"].apply(list).map(
        lambda p: p == list(range(1, 11))).all()  # fmt: skip
    assert not random.duplicated(["session_id", "item_id"]).any()
    # The best possible list for each user: what a perfect champion would serve.
    items = audience.items[audience.items["available"] & (audience.items["created_at"] <= AT)]

    def best(user: str) -> tuple[list[str], str]:
        appeal = audience.appeal(np.repeat(user, len(items)), items["item_id"], AT)
        return list(items["item_id"].to_numpy()[np.argsort(-appeal, kind="stable")[:10]]), "7"

    oracle = serve_lists(audience, users, AT, "champion", rng, ranked_for=best)
    assert set(oracle["model_version"]) == {"7"}
    figures = {}
    for name, served in (("random", random), ("oracle", oracle)):
        events = audience.react(served, AT, np.random.default_rng(2))
        figures[name] = round_metrics(audience, served, events, AT)
        clicks = (events["event_type"] == "click").sum()
        assert figures[name]["ctr"] == pytest.approx(clicks / len(served))
        assert figures[name]["sessions"] == len(users)
    assert figures["oracle"]["true_ndcg@10"] == pytest.approx(1.0)
    assert figures["oracle"]["ctr"] > 1.5 * figures["random"]["ctr"]
    assert figures["oracle"]["true_ndcg@10"] > figures["random"]["true_ndcg@10"] + 0.2
    assert figures["random"]["coverage"] > figures["oracle"]["coverage"] * 0.5
    with pytest.raises(ValueError, match="unknown policy"):
        serve_lists(audience, users, AT, "greedy", rng)
