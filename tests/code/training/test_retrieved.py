"""Query groups from retrieval on a small real warehouse: query times, what a group may
see (candidates before its time, labels within its horizon and split), the test holdout
with the relevant items retrieval missed, and the helpers that carry retrieval columns."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ranking.ingest.contract import ingest
from ranking.retrieval.merge import FUSED_SCORE, RETRIEVAL_FEATURES, retrieve
from ranking.schema import DEFAULT_LABEL_WEIGHTS
from ranking.settings import Settings
from ranking.training import dataset, retrieved
from ranking.warehouse import warehouse
from tests.conftest import NOW

TIMES = dataset.split_times(
    datetime(2026, 2, 1), datetime(2026, 3, 1), timedelta(days=5), timedelta(days=5)
)
# train [02-01, 02-19), valid [02-19, 02-24), test [02-24, 03-01); query times daily
HORIZON = timedelta(days=2)

ITEMS = """\
item_id,category,available
p1,a,true
p2,a,true
p3,a,true
"""

EVENTS = """\
user_id,item_id,event_type,event_timestamp
bg1,p1,click,2026-02-02T09:00:00
bg1,p2,click,2026-02-02T09:10:00
bg1,p3,click,2026-02-02T09:20:00
bg2,p1,click,2026-02-02T10:00:00
bg2,p2,click,2026-02-02T10:10:00
bg2,p3,purchase,2026-02-02T10:20:00
bg1,iz,click,2026-02-10T12:00:00
bg2,iz,click,2026-02-10T13:00:00
bg3,iz,click,2026-02-10T14:00:00
u1,p1,click,2026-02-03T09:00:00
u1,p2,click,2026-02-10T10:00:00
u1,iz,add_to_cart,2026-02-11T09:00:00
u2,p1,click,2026-02-03T09:00:00
u2,p2,click,2026-02-14T00:00:00
u3,p1,click,2026-02-03T09:00:00
u3,p3,click,2026-02-18T23:00:00
u3,p2,purchase,2026-02-19T00:00:00
u4,p1,click,2026-02-03T09:00:00
u4,p3,click,2026-02-23T20:00:00
u4,p2,click,2026-02-24T00:00:00
u5,p1,click,2026-02-03T09:00:00
u5,p3,view,2026-02-25T09:00:00
u5,p1,click,2026-02-25T10:00:00
u5,inew,purchase,2026-02-26T09:00:00
u5,ix,view,2026-02-27T09:00:00
ur,p1,click,2026-02-05T10:00:00
ur,p1,click,2026-02-08T10:00:00
c1,p1,click,2026-02-03T09:00:00
c2,p1,click,2026-02-03T09:00:00
c3,p1,click,2026-02-03T09:00:00
c4,p1,click,2026-02-03T09:00:00
"""
# bg*: make p1-p3 popular from 02-03; iz is first clicked by everyone on 02-10 (midday).
# u1: p2 on 02-10, then iz on 02-11, after iz became popular.
# u2: a click exactly at 02-14 00:00, two days after 02-12: outside that group's horizon.
# u3: p3 just before valid_start, a purchase exactly at it (never a training label).
# u4: p3 in validation, p2 exactly at test_start (never a validation label): a test user.
# u5: a test user who re-clicks p1 (seen: never retrieved), buys inew and views ix (both
# unknown before).
# ur: re-clicks p1 on 02-08: relevant, but retrieval never re-proposes a seen item.
# c*: with u1-u5, nine users act on 02-03, to sample from.

EV = pd.read_csv(io.StringIO(EVENTS), parse_dates=["event_timestamp"])
EV["label"] = EV["event_type"].map(DEFAULT_LABEL_WEIGHTS)


def _day(day: int, month: int = 2) -> pd.Timestamp:
    return pd.Timestamp(2026, month, day)


def _window_end(t: pd.Timestamp) -> pd.Timestamp:
    boundary = TIMES.valid_start if t < pd.Timestamp(TIMES.valid_start) else TIMES.test_start
    return min(t + HORIZON, pd.Timestamp(boundary))


def _expected_label(user: str, item: str, lo: pd.Timestamp, hi: pd.Timestamp) -> float:
    ev = EV[(EV["user_id"] == user) & (EV["item_id"] == item)]
    ev = ev[(ev["event_timestamp"] >= lo) & (ev["event_timestamp"] < hi)]
    return float(ev["label"].max()) if len(ev) else 0.0


@pytest.fixture
def shop(tmp_path: Path, settings: Settings) -> Settings:
    (tmp_path / "events.csv").write_text(EVENTS)
    (tmp_path / "items.csv").write_text(ITEMS)
    reports = ingest(settings.warehouse_path, tmp_path / "events.csv", settings.event_types,
                     NOW, tmp_path / "items.csv")  # fmt: skip
    assert [r.accepted for r in reports] == [3, len(EV)]
    assert settings.training.candidates == "retrieval"  # the default
    return settings.updated(training={"label_horizon_days": HORIZON.days})


def _entities(settings: Settings) -> pd.DataFrame:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        frame = dataset.build_entity_frame(con, settings, TIMES)
    return frame.assign(t=frame["event_timestamp"].dt.tz_localize(None))


def _group(frame: pd.DataFrame, user: str, t: pd.Timestamp) -> dict[str, float]:
    rows = frame[(frame["user_id"] == user) & (frame["t"] == t)]
    return dict(zip(rows["item_id"], rows["label"], strict=True))


def _times_of(frame: pd.DataFrame, user: str) -> list[pd.Timestamp]:
    return sorted(frame.loc[frame["user_id"] == user, "t"].unique())


def test_query_times_are_the_snapshot_grid_plus_extras_in_range() -> None:
    start, end = datetime(2026, 2, 1, 3), datetime(2026, 2, 2, 6)
    extra = (
        datetime(2026, 2, 1, 4, 30),  # inside: kept
        datetime(2026, 2, 1, 12),  # on the grid: once
        datetime(2026, 2, 1),  # before start
        end,  # end is excluded
    )
    times = retrieved.query_times(start, end, 6 * 3600, extra=extra)
    assert times == [
        datetime(2026, 2, 1, 4, 30),
        datetime(2026, 2, 1, 6),  # 00:00 is before start: the grid starts at 06:00
        datetime(2026, 2, 1, 12),
        datetime(2026, 2, 1, 18),
        datetime(2026, 2, 2),  # 02-02 06:00 == end: excluded
    ]
    aligned = retrieved.query_times(datetime(2026, 2, 1), datetime(2026, 2, 4), 86400)
    assert aligned == [datetime(2026, 2, 1), datetime(2026, 2, 2), datetime(2026, 2, 3)]


def test_candidates_come_only_from_before_the_query_time(shop: Settings) -> None:
    frame = _entities(shop)
    first_seen = EV.groupby("item_id")["event_timestamp"].min()
    assert (frame["item_id"].map(first_seen) < frame["t"]).all()
    # iz is first clicked (by everyone) on 02-10 at noon: not a candidate at 02-10, though
    # u1 adds it to the cart in that group's horizon; a candidate (and a positive) at 02-11.
    assert _group(frame, "u1", _day(10)) == {"p2": 1.0, "p3": 0.0}
    assert _group(frame, "u1", _day(11)) == {"iz": 2.0, "p3": 0.0}


def test_labels_come_only_from_the_horizon_and_never_cross_a_split(shop: Settings) -> None:
    frame = _entities(shop)
    expected = [
        _expected_label(u, i, t, _window_end(t))
        for u, i, t in frame[["user_id", "item_id", "t"]].itertuples(index=False)
    ]
    assert frame["label"].tolist() == expected
    # (Every u* first acts on 02-03: a group then.) u2's click at 02-14 00:00 is two days
    # after 02-12: outside that group's horizon.
    assert _times_of(frame, "u2") == [_day(3), _day(13), _day(14)]
    # u3's purchase at valid_start never labels a training group; it does label the valid one.
    assert _times_of(frame, "u3") == [_day(3), _day(17), _day(18), _day(19)]
    assert _group(frame, "u3", _day(18)) == {"iz": 0.0, "p2": 0.0, "p3": 1.0}
    assert _group(frame, "u3", _day(19)) == {"iz": 0.0, "p2": 3.0}
    # u4's click at test_start never labels a validation group; there is none at test_start.
    assert _times_of(frame, "u4") == [_day(3), _day(22), _day(23)]
    assert _group(frame, "u4", _day(23)) == {"iz": 0.0, "p2": 0.0, "p3": 1.0}
    assert frame["t"].max() < pd.Timestamp(TIMES.test_start)


def test_validation_start_is_a_query_time_off_the_snapshot_grid(shop: Settings) -> None:
    every = timedelta(days=2)
    frame = _entities(shop.updated(features={"snapshot_every": every}))
    grid = retrieved.query_times(TIMES.start, TIMES.test_start, every.total_seconds())
    assert TIMES.valid_start not in grid and _day(18) in grid  # 02-02, 02-04, ... 02-22
    assert set(frame["t"]) <= {pd.Timestamp(t) for t in [*grid, TIMES.valid_start]}
    u3 = frame[frame["user_id"] == "u3"]
    assert sorted(u3["t"].unique()) == [_day(18), _day(19)]
    assert _group(frame, "u3", _day(19)) == {"iz": 0.0, "p2": 3.0}
    assert u3.loc[u3["t"] == _day(19), "split"].eq("valid").all()


def test_groups_hold_retrieved_items_and_hard_negatives(shop: Settings) -> None:
    frame = _entities(shop)
    assert frame["sources"].map(lambda s: isinstance(s, str) and s != "").all()
    assert not frame["sampled"].any()
    assert set(RETRIEVAL_FEATURES) <= set(frame.columns)
    assert not frame.duplicated(["group_id", "item_id"]).any()
    by_group = frame.groupby("group_id")["label"]
    assert (by_group.max() > 0).all()
    assert (by_group.min() == 0).sum() > len(by_group) // 2  # hard negatives in most groups
    # group_id follows (time, user); split by the group's time.
    keys = frame.drop_duplicates("group_id")
    assert keys["group_id"].tolist() == list(range(len(keys)))
    assert keys[["t", "user_id"]].equals(keys.sort_values(["t", "user_id"])[["t", "user_id"]])
    valid = pd.Timestamp(TIMES.valid_start)
    assert (frame["split"] == np.where(frame["t"] < valid, "train", "valid")).all()
    assert set(frame["split"]) == {"train", "valid"}
    # ur re-clicks p1 on 02-08: relevant, but p1 is seen and never retrieved for ur again.
    with warehouse(shop.warehouse_path, read_only=True) as con:
        labels = retrieved.next_labels(con, shop, _day(7), _day(9))
    assert labels.loc[labels["user_id"] == "ur", "label"].tolist() == [1.0]
    assert _times_of(frame, "ur") == [_day(4), _day(5)]
    assert "bg1" not in set(frame["user_id"])  # only acted on nothing retrievable


def test_candidates_per_group_keeps_the_best_by_fused_score(shop: Settings) -> None:
    full = _entities(shop)
    assert full.groupby("group_id").size().max() > 2
    capped = shop.updated(training={"candidates_per_group": 2})
    frame = _entities(capped)
    assert frame.groupby("group_id").size().max() == 2
    pairs = set(zip(frame["t"], frame["user_id"], strict=True))
    assert pairs < set(zip(full["t"], full["user_id"], strict=True))  # some lose their positive
    with warehouse(shop.warehouse_path, read_only=True) as con:
        for t, user in pairs:
            best = retrieve(con, capped, [user], t.to_pydatetime()).head(2)
            rows = frame[(frame["t"] == t) & (frame["user_id"] == user)]
            assert set(rows["item_id"]) == set(best["item_id"]), (t, user)
            assert sorted(rows[FUSED_SCORE]) == pytest.approx(sorted(best[FUSED_SCORE]))


def test_users_per_query_time_caps_the_users_reproducibly(shop: Settings) -> None:
    full = _entities(shop)
    assert full.loc[full["t"] == _day(3), "user_id"].nunique() == 9
    capped = shop.updated(training={"users_per_query_time": 2})
    frame = _entities(capped)
    assert frame.groupby("t")["user_id"].nunique().max() == 2
    assert set(zip(frame["t"], frame["user_id"], strict=True)) <= set(
        zip(full["t"], full["user_id"], strict=True)
    )
    pd.testing.assert_frame_equal(frame, _entities(capped))
    chosen = set()
    with warehouse(shop.warehouse_path, read_only=True) as con:
        for seed in range(8):
            rng = np.random.default_rng(seed)
            groups = retrieved.retrieved_groups(con, capped, [(_day(3), _day(5))], rng)
            chosen.add(tuple(sorted(groups["user_id"].unique())))
    assert all(len(users) == 2 for users in chosen)
    assert len(chosen) > 1  # the seed decides who is drawn


def _holdout(settings: Settings) -> pd.DataFrame:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return dataset.build_holdout_frame(con, settings, TIMES, first_group_id=5, cutoffs=1)


def test_holdout_is_retrieval_plus_the_relevant_items_it_missed(shop: Settings) -> None:
    frame = _holdout(shop)
    assert set(frame["user_id"]) == {"u4", "u5"}
    assert sorted(frame["group_id"].unique()) == [5, 6]
    cutoff = pd.Timestamp(TIMES.test_start, tz="UTC")
    assert (frame["event_timestamp"] == cutoff).all() and (frame["split"] == "test").all()
    assert not frame["sampled"].any()
    with warehouse(shop.warehouse_path, read_only=True) as con:
        found = retrieve(con, shop, ["u4", "u5"], TIMES.test_start)
    hits = frame[frame["retrieved"].astype(bool)]
    got = hits.set_index(["user_id", "item_id"])[FUSED_SCORE].sort_index()
    want = found.set_index(["user_id", "item_id"])[FUSED_SCORE].astype(float).sort_index()
    pd.testing.assert_series_equal(got, want)
    missed = frame[~frame["retrieved"].astype(bool)]
    assert set(zip(missed["user_id"], missed["item_id"], strict=True)) == {
        ("u5", "p1"),  # seen before the cut-off: never re-proposed
        ("u5", "inew"),  # unknown before the cut-off
    }
    assert "ix" not in set(frame["item_id"])  # missed too, but not relevant: not added
    assert missed["sources"].isna().all() and missed[FUSED_SCORE].isna().all()
    labels = {(u, i): y for u, i, y in frame[["user_id", "item_id", "label"]].itertuples(False)}
    assert labels[("u5", "p3")] == 0.0  # retrieved, only viewed
    positives = {k: y for k, y in labels.items() if y > 0}
    assert positives == {("u4", "p2"): 1.0, ("u5", "p1"): 1.0, ("u5", "inew"): 3.0}
    sampled = _holdout(shop.updated(training={"candidates": "sampled"}))
    met = sampled[sampled["label"] > 0]
    assert {(u, i): y for u, i, y in met[["user_id", "item_id", "label"]].itertuples(False)} == (
        positives
    )


def test_only_retrieved_blanks_the_rows_retrieval_did_not_propose() -> None:
    frame = pd.DataFrame({"retrieved": pd.array([True, False, None], dtype="boolean")})
    frame.index = [10, 11, 12]
    scores = pd.Series([0.3, 0.2, 0.1], index=frame.index)
    out = retrieved.only_retrieved(frame, scores)
    assert out.index.tolist() == [10, 11, 12]
    assert out.tolist()[0] == 0.3 and np.isnan(out[11]) and out[12] == 0.1  # NA: retrieved
    untouched = retrieved.only_retrieved(frame.drop(columns="retrieved"), scores)
    pd.testing.assert_series_equal(untouched, scores)


def test_with_retrieval_columns_keeps_the_frames_rows() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["i2", "i1", "i1"],
            "sources": ["stale", "stale", "stale"],
            "price": [1.0, 2.0, 3.0],
        },
        index=[5, 3, 9],
    )
    candidates = pd.DataFrame(
        {"user_id": ["u2", "u1", "u3"], "item_id": ["i1", "i1", "i9"], "sources": ["a", "b", "c"]}
    )
    for n, column in enumerate(RETRIEVAL_FEATURES):
        candidates[column] = [float(n), float(n) + 0.5, 99.0]
    out = retrieved.with_retrieval_columns(frame, candidates)
    assert out.index.tolist() == [5, 3, 9]
    assert out[["user_id", "item_id", "price"]].equals(frame[["user_id", "item_id", "price"]])
    assert out["sources"].tolist()[1:] == ["b", "a"] and pd.isna(out.loc[5, "sources"])
    assert out.loc[5, list(RETRIEVAL_FEATURES)].isna().all()
    assert out.loc[3, FUSED_SCORE] == len(RETRIEVAL_FEATURES) - 0.5
    assert out.loc[9, FUSED_SCORE] == len(RETRIEVAL_FEATURES) - 1.0


def test_sampled_setting_still_gives_the_session_groups(shop: Settings) -> None:
    frame = _entities(shop.updated(training={"candidates": "sampled"}))
    assert "sources" not in frame.columns and FUSED_SCORE not in frame.columns
    assert frame["sampled"].any() and (frame.loc[frame["sampled"], "label"] == 0).all()
    relevant = EV[(EV["label"] > 0) & (EV["event_timestamp"] < pd.Timestamp(TIMES.test_start))]
    positives = frame[frame["label"] > 0]
    assert set(zip(positives["user_id"], positives["item_id"], strict=True)) == set(
        zip(relevant["user_id"], relevant["item_id"], strict=True)
    )


def test_with_features_adds_the_carried_retrieval_features(monkeypatch) -> None:
    monkeypatch.setattr(
        dataset, "historical_features", lambda store, e, name, **_: e.assign(f1=1.0)
    )
    monkeypatch.setattr(dataset, "service_features", lambda store, name: ["f1"])
    entities = pd.DataFrame({"group_id": [1, 0], "item_id": ["a", "b"]})
    frame, features = dataset.with_features(None, entities, "svc")
    assert features == ["f1"] and frame["group_id"].tolist() == [0, 1]
    carried = entities.assign(**{c: 0.0 for c in RETRIEVAL_FEATURES})
    assert dataset.with_features(None, carried, "svc")[1] == ["f1", *RETRIEVAL_FEATURES]


def test_labelled_users_and_their_labels_are_those_of_the_whole_window(shop: Settings) -> None:
    """Sampling the users before reading their labels changes nothing: the users are those
    with a relevant event in the window, and each one's labels are its rows of the whole."""
    with warehouse(shop.warehouse_path, read_only=True) as con:
        whole = retrieved.next_labels(con, shop, _day(1), _day(9))
        users = retrieved.labelled_users(con, shop, _day(1), _day(9))
        assert users.tolist() == sorted(whole["user_id"].unique()) and len(users) > 2
        some = users[::2]
        chosen = retrieved.next_labels(con, shop, _day(1), _day(9), some)
    expected = whole[whole["user_id"].isin(some)].reset_index(drop=True)
    pd.testing.assert_frame_equal(chosen, expected)
    assert len(chosen) < len(whole)


def test_a_group_of_one_candidate_is_dropped(shop: Settings) -> None:
    """One candidate is no pair to order: kept to one per group, nothing is left."""
    two = _entities(shop.updated(training={"candidates_per_group": 2}))
    assert len(two) and two.groupby("group_id").size().min() == 2
    assert _entities(shop.updated(training={"candidates_per_group": 1})).empty
