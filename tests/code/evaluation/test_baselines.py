"""SQL baselines on a hand-built warehouse, and evaluation helpers against plain loops."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ranking.evaluation import metrics as evaluate
from ranking.evaluation.baselines import baseline_scores
from ranking.ingest.contract import ingest
from ranking.schema import BASELINES
from ranking.settings import Settings
from ranking.warehouse import warehouse
from tests.conftest import NOW

CUTOFF = datetime(2026, 2, 20)

ITEMS = """\
item_id,category
i1,a
i2,a|b
i3,b
i4,c
i5,c
"""

#: Relevant: click/play/add_to_cart/purchase, and ratings of 3 stars or more.
EVENTS = """\
user_id,item_id,event_type,event_timestamp,value
u1,i1,click,2026-02-19T00:00:00,
u1,i2,purchase,2026-02-13T00:00:00,
u1,i4,view,2026-02-19T00:00:00,
u2,i1,click,2026-02-06T00:00:00,
u2,i3,click,2026-02-19T00:00:00,
u2,i4,rating,2026-02-19T00:00:00,2.5
u3,i2,click,2026-02-13T00:00:00,
u3,i4,play,2026-02-19T00:00:00,
u3,i1,rating,2026-02-13T00:00:00,4
u2,i4,click,2026-02-20T00:00:00,
u3,i3,purchase,2026-02-25T00:00:00,
u4,i1,click,2026-02-21T00:00:00,
"""
# Ages at the cut-off: 1, 7 and 14 days. The last three rows are at or after it.

USERS = ("u1", "u2", "u3", "u4")
ITEM_IDS = ("i1", "i2", "i3", "i4", "i5")
DAY1 = 0.5 ** (1 / 7)  # one day old, half-life 7 days


@pytest.fixture
def tiny(tmp_path: Path, settings: Settings) -> Path:
    (tmp_path / "events.csv").write_text(EVENTS)
    (tmp_path / "items.csv").write_text(ITEMS)
    reports = ingest(
        settings.warehouse_path,
        tmp_path / "events.csv",
        settings.event_types,
        NOW,
        tmp_path / "items.csv",
    )
    assert [r.accepted for r in reports] == [5, 12]
    return settings.warehouse_path


@pytest.fixture
def candidates() -> pd.DataFrame:
    """Every user x item, in a shuffled order and with an index of its own."""
    pairs = [(u, i) for u in USERS for i in ITEM_IDS]
    order = np.random.default_rng(3).permutation(len(pairs))
    frame = pd.DataFrame([pairs[k] for k in order], columns=["user_id", "item_id"])
    return frame.set_axis(1000 + 7 * np.arange(len(frame)))


def _scores(db: Path, settings: Settings, candidates: pd.DataFrame, **kwargs) -> pd.DataFrame:
    with warehouse(db, read_only=True) as con:
        scores = baseline_scores(con, settings, candidates, CUTOFF, **kwargs)
    assert set(scores) == set(BASELINES)
    for series in scores.values():
        assert series.index.equals(candidates.index)
    return candidates.assign(**scores)


def _table(scored: pd.DataFrame, name: str) -> dict[tuple[str, str], float]:
    return {(u, i): s for u, i, s in scored[["user_id", "item_id", name]].itertuples(index=False)}


def _expect(table: dict[tuple[str, str], float], per_item: dict[str, float]) -> None:
    for (_, item), value in table.items():
        assert value == pytest.approx(per_item.get(item, 0.0)), item


def test_most_popular_counts_relevant_events_before_the_cutoff(tiny, settings, candidates):
    scored = _scores(tiny, settings, candidates)
    # i1: 2 clicks + a 4-star rating; i4: the play only (not the view, the 2.5-star rating,
    # nor the click at the cut-off); i3: not the purchase after it.
    _expect(_table(scored, "most_popular"), {"i1": 3, "i2": 2, "i3": 1, "i4": 1})


@pytest.mark.parametrize("half_life", [None, 14.0])
def test_recently_popular_decays_with_the_half_life(tiny, settings, candidates, half_life):
    scored = _scores(tiny, settings, candidates, half_life_days=half_life)
    h = half_life or settings.features.decay_half_life_days

    def w(days: float) -> float:
        return 0.5 ** (days / h)

    _expect(
        _table(scored, "recently_popular"),
        {"i1": w(1) + w(14) + w(7), "i2": w(7) + w(7), "i3": w(1), "i4": w(1)},
    )
    if half_life is None:
        assert scored["recently_popular"].max() == pytest.approx(DAY1 + 0.25 + 0.5)


def test_favourite_categories_are_shares_of_the_users_history(tiny, settings, candidates):
    table = _table(_scores(tiny, settings, candidates), "favourite_categories")
    # u1: i1 (a), i2 (a|b) -> a 2/3, b 1/3. u2: i1 (a), i3 (b) -> a 1/2, b 1/2.
    # u3: i2 (a|b), i4 (c), i1 (a) -> a 2/4, b 1/4, c 1/4. u4: no history.
    shares = {
        "u1": {"a": 2 / 3, "b": 1 / 3},
        "u2": {"a": 1 / 2, "b": 1 / 2},
        "u3": {"a": 1 / 2, "b": 1 / 4, "c": 1 / 4},
        "u4": {},
    }
    cats = {"i1": ["a"], "i2": ["a", "b"], "i3": ["b"], "i4": ["c"], "i5": ["c"]}
    for (user, item), value in table.items():
        expected = sum(shares[user].get(c, 0.0) for c in cats[item])
        assert value == pytest.approx(expected), (user, item)
    assert table[("u1", "i2")] == pytest.approx(1.0)


def test_cooccurrence_by_hand(tiny, settings, candidates):
    table = _table(_scores(tiny, settings, candidates), "cooccurrence")
    # Relevant history before the cut-off: u1 {i1, i2}, u2 {i1, i3}, u3 {i1, i2, i4}.
    # u1 shares 1 item with u2 and 2 with u3; u2 shares 1 with u1 and 1 with u3.
    # Counting u1's own history would add 2 to (u1, i1) and (u1, i2); counting the click at
    # the cut-off would add 1 to (u1, i4); the purchase after it 2 to (u1, i3).
    expected = {
        "u1": {"i1": 1 + 2, "i2": 2, "i3": 1, "i4": 2},
        "u2": {"i1": 1 + 1, "i2": 1 + 1, "i4": 1},
        "u3": {"i1": 2 + 1, "i2": 2, "i3": 1},
        "u4": {},
    }
    for (user, item), value in table.items():
        assert value == pytest.approx(expected[user].get(item, 0)), (user, item)


def test_cooccurrence_matches_a_brute_force_item_by_item_count(tiny, settings, candidates):
    events = pd.read_csv(io.StringIO(EVENTS))
    ts = pd.to_datetime(events["event_timestamp"])
    relevant = events["event_type"].isin(["click", "play", "purchase"]) | (
        (events["event_type"] == "rating") & (events["value"] >= 3)
    )
    seen = events[relevant & (ts < CUTOFF)].groupby("user_id")["item_id"].agg(set).to_dict()
    table = _table(_scores(tiny, settings, candidates), "cooccurrence")
    for (user, candidate), value in table.items():
        brute = sum(
            1
            for item in seen.get(user, set())
            for other, history in seen.items()
            if other != user and item in history and candidate in history
        )
        assert value == brute, (user, candidate)


def test_random_is_seeded(tiny, settings, candidates):
    a = _scores(tiny, settings, candidates, seed=5)["random"]
    b = _scores(tiny, settings, candidates, seed=5)["random"]
    c = _scores(tiny, settings, candidates, seed=6)["random"]
    assert a.equals(b)
    assert not np.allclose(a, c)
    assert a.between(0, 1).all() and a.nunique() == len(a)


# evaluate: coverage, segments, report, MAP@k and recall@k ----------------------------------


def test_catalogue_coverage_counts_distinct_items_in_any_top_k() -> None:
    test = pd.DataFrame(
        {"group_id": [0, 0, 0, 1, 1, 1], "item_id": ["a", "b", "c", "a", "d", "c"]}
    ).set_axis([10, 11, 12, 13, 14, 15])
    score = pd.Series([0.9, 0.5, 0.1, 0.8, np.nan, 0.9], index=test.index)
    assert evaluate.catalogue_coverage(test, score, k=1) == pytest.approx(2 / 4)  # a, c
    assert evaluate.catalogue_coverage(test, score, k=2) == pytest.approx(3 / 4)  # + b
    assert evaluate.catalogue_coverage(test, score, k=3) == pytest.approx(1.0)
    assert evaluate.catalogue_coverage(test, score, k=1, catalogue_size=10) == pytest.approx(0.2)
    # Scores are matched by index, not position.
    shuffled = score.iloc[::-1]
    assert evaluate.catalogue_coverage(test, shuffled, k=2) == pytest.approx(3 / 4)


def test_user_segment_thresholds() -> None:
    history = pd.Series([0, 9, 10, 99, 100, 5000, np.nan], index=list("abcdefg"))
    segments = evaluate.user_segment(history, light_min=10, heavy_min=100)
    assert segments.index.equals(history.index)
    assert segments.tolist() == ["new", "new", "light", "light", "heavy", "heavy", "new"]


def _random_groups(seed: int, groups: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 30, size=groups)  # some smaller than k, some larger
    gid = np.repeat(np.arange(groups), sizes)
    labels = rng.integers(0, 4, size=len(gid)) * (rng.random(len(gid)) < 0.3)
    return pd.DataFrame({"group_id": gid, "label": labels, "score": rng.random(len(gid))})


def _loop_metrics(frame: pd.DataFrame, k: int) -> tuple[float, float]:
    """MAP@k (AP normalised by min(relevant, k)) and recall@k, one group at a time."""
    aps, recalls = [], []
    for _, group in frame.groupby("group_id"):
        ranked = sorted(zip(group["score"], group["label"], strict=True), reverse=True)
        total = sum(1 for _, label in ranked if label > 0)
        if total == 0:
            continue
        hits, precision_sum = 0, 0.0
        for rank, (_, label) in enumerate(ranked[:k], start=1):
            if label > 0:
                hits += 1
                precision_sum += hits / rank
        aps.append(precision_sum / min(total, k))
        recalls.append(hits / total)
    return sum(aps) / len(aps), sum(recalls) / len(recalls)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_map_and_recall_match_a_plain_loop(seed: int) -> None:
    frame = _random_groups(seed)
    ours = evaluate.ranking_metrics(frame, "score", ks=(1, 5, 10, 50))
    for k in (1, 5, 10, 50):
        map_k, recall_k = _loop_metrics(frame, k)
        assert ours[f"map@{k}"] == pytest.approx(map_k, rel=1e-12), k
        assert ours[f"recall@{k}"] == pytest.approx(recall_k, rel=1e-12), k


def test_report_has_every_metric_per_scorer() -> None:
    frame = _random_groups(4)
    frame["item_id"] = "i" + (np.arange(len(frame)) % 40).astype(str)
    frame["item_popularity_all"] = (np.arange(len(frame)) % 40) * 3.0  # per item, as Feast's
    rng = np.random.default_rng(0)
    scores = {
        "model": frame["score"],
        "oracle": frame["label"] + 0.001 * frame["score"],
        "random": pd.Series(rng.random(len(frame)), index=frame.index),
    }
    table = evaluate.report(frame, scores, catalogue_size=40)
    assert list(table.columns) == ["groups", *evaluate.REPORT_METRICS]
    assert list(table.index) == ["model", "oracle", "random"]
    assert table.notna().all().all()
    assert (table.drop(columns=["groups", "novelty@10"]) <= 1.0 + 1e-12).all().all()
    assert (table["novelty@10"] > 0).all()  # bits of self-information
    assert table.loc["oracle", "ndcg@10"] == pytest.approx(1.0)
    assert table.loc["oracle", "ndcg@10"] > table.loc["random", "ndcg@10"]
    direct = evaluate.ranking_metrics(frame, "score", ks=(10,))
    assert table.loc["model", "map@10"] == pytest.approx(direct["map@10"])
    assert table.loc["model", "groups"] == direct["groups"]
    assert table.loc["model", "coverage@10"] == pytest.approx(
        evaluate.catalogue_coverage(frame, scores["model"], 10, catalogue_size=40)
    )


def test_novelty_is_higher_for_lists_of_rarer_items() -> None:
    """Self-information of the recommended items: a list of the least popular items is
    more novel than a list of the most popular ones; a frame without popularity gives NaN."""
    frame = _random_groups(4)
    frame["item_id"] = "i" + (np.arange(len(frame)) % 40).astype(str)
    popularity = pd.Series((np.arange(len(frame)) % 40) * 3.0, index=frame.index)
    head, tail = popularity, -popularity
    rare, common = (
        evaluate.novelty(frame, tail, popularity),
        evaluate.novelty(frame, head, popularity),
    )
    assert rare > common > 0
    total = popularity.groupby(frame["item_id"]).first().sum() + 40
    assert rare <= -np.log2(1.0 / total) + 1e-12  # no item has less than the smoothing
    table = evaluate.report(frame, {"head": head})  # no item_popularity_all column
    assert np.isnan(table.loc["head", "novelty@10"])
