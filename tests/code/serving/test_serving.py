"""Serving without a model: retrieved candidates, the caller's candidates, the fallback
order and the served impressions that close the loop, on a small real warehouse."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ranking.ingest.contract import ingest
from ranking.retrieval.embeddings import embeddings_at
from ranking.retrieval.merge import FUSED_SCORE, RETRIEVAL_FEATURES, SOURCE_COUNT
from ranking.schema import IMPRESSION
from ranking.serving.candidates import CANDIDATE_COLUMNS, given_candidates, retrieved_for_user
from ranking.serving.ranker import (
    RANKED_COLUMNS,
    RankedList,
    rank_for_user,
    rank_request,
    served_impressions,
)
from ranking.settings import Settings
from ranking.warehouse import warehouse
from tests.conftest import NOW

# Ranking happens at NOW (2026-03-01 12:00) with the default retrieval settings. The
# warehouse is loaded a day later so that events at and after NOW are accepted too.
LOADED_AT = NOW + timedelta(days=1)

# i7 is new in the catalogue (fresh); i8 has neither a category, a creation date nor events;
# i6 is unavailable; i9 (in the events below) is not in the catalogue at all.
ITEMS = """\
item_id,category,created_at,available
i1,a,2025-01-01,true
i2,a,2025-01-01,true
i3,b,2025-01-01,true
i4,b,2025-01-01,true
i5,c,2025-01-01,true
i6,c,2025-01-01,false
i7,d|e,2026-02-26,true
i8,,,true
"""

EVENTS = """\
user_id,item_id,event_type,event_timestamp,value
u1,i1,click,2026-02-25T09:00:00,
u2,i1,click,2026-02-26T09:00:00,
u3,i1,play,2026-02-27T09:00:00,
ua,i2,purchase,2026-02-28T09:00:00,19.9
ub,i2,add_to_cart,2026-02-28T10:00:00,19.9
ub,i3,click,2026-02-28T11:00:00,
uc,i2,view,2026-02-28T11:00:00,
u1,i3,play,2026-02-22T12:00:00,
u1,i3,view,2026-02-26T10:00:00,
u2,i3,view,2026-02-26T10:00:00,
u3,i3,view,2026-02-26T10:00:00,
u5,i3,rating,2026-02-20T09:00:00,1
u1,i4,click,2026-02-20T09:00:00,
u2,i4,click,2026-02-20T09:00:00,
u3,i4,click,2026-02-20T09:00:00,
u4,i4,click,2026-02-20T09:00:00,
u5,i4,click,2026-02-22T11:59:59,
u1,i4,impression,2026-02-27T09:00:00,
u2,i4,impression,2026-02-27T09:00:00,
u3,i4,view,2026-02-27T09:00:00,
u4,i4,skip,2026-02-27T09:00:00,
u5,i4,impression,2026-02-27T09:00:00,
u1,i5,rating,2026-02-27T09:00:00,4
u2,i5,click,2026-03-01T12:00:00,
u3,i5,click,2026-03-01T18:00:00,
u4,i5,purchase,2026-03-01T18:00:00,5
u1,i6,click,2026-02-25T09:00:00,
u2,i6,click,2026-02-25T09:00:00,
u3,i6,click,2026-02-25T09:00:00,
u4,i6,click,2026-02-25T09:00:00,
u1,i9,click,2026-02-25T09:00:00,
"""
# Retrieval at NOW. Positive events (click, play, add_to_cart, purchase, ratings above 2)
# strictly before NOW, each weighted 0.5 ** (age_days / 7), make the "popular" score:
#   i1: three, 4.125, 3.125 and 2.125 days old: 0.665 + 0.734 + 0.810 = 2.209
#   i4: four clicks 9.125 days old, one 7 days old: 4 * 0.405 + 0.500 = 2.120
#   i2: ua's purchase and ub's cart, about a day old: 0.895 + 0.898 = 1.793
#   i3: a play 7 days old and ub's click a day old: 0.500 + 0.902 = 1.402 (views: no)
#   i5: a rating of 4, 2.125 days old: 0.810 (the click at NOW and later events: not yet)
#   i9: a click 4.125 days old: 0.665 (not in the catalogue, but known by its events)
#   i6 is unavailable; i7 and i8 have no events; u5's rating of 1 is not positive.
# popular: i1, i4, i2, i3, i5, i9 (ranks 1 to 6).
# trending (two positives or more in the last 3 days): i2 only (i1 and i5 have one each).
# fresh (created in the last 30 days; created_at is the catalogue's, else the first event):
#   i9 (first seen 02-25 09:00: 1 positive + 1 / (1 + 4.125) = 1.195), then i7 (created
#   02-26: 0 + 1 / (1 + 3.5) = 0.222). i8 has no date and no event: never fresh.
# A user without history (no covisit, no category) gets the fusion of those three sources,
# each contributing 1 / (60 + rank):
NEWCOMER = {
    "i2": ("popular,trending", 1 / 63 + 1 / 61),
    "i9": ("popular,fresh", 1 / 66 + 1 / 61),
    "i1": ("popular", 1 / 61),
    "i4": ("popular", 1 / 62),  # ties with i7 (fresh #2): the smaller item_id first
    "i7": ("fresh", 1 / 62),
    "i3": ("popular", 1 / 64),
    "i5": ("popular", 1 / 65),
}
NEWCOMER_ORDER = list(NEWCOMER)
#: What consumes an item (every positive type, every rating whatever its value), up to NOW.
CONSUMING, NOW_ISO = {"click", "play", "add_to_cart", "purchase", "rating"}, NOW.isoformat()
# Consumed (never proposed again: every positive type and every rating, whatever its value):
#   ua bought i2. Its favourite category a offers i1; i3 is co-visited with i2 (ub met both
#   within an hour); popular without i2: i1, i4, i3, i5, i9.
UA_ORDER = ["i1", "i3", "i9", "i4", "i7", "i5"]
#   ub added i2 to its cart and clicked i3: both consumed. Categories b and a offer i4, i1.
UB_ORDER = ["i1", "i4", "i9", "i7", "i5"]
#   u5 rated i3 with 1 (consumed, though not positive) and clicked i4.
U5_ORDER = ["i2", "i9", "i1", "i7", "i5"]
#   uc only viewed i2: not consumption, so uc gets the newcomer's list, i2 first.

# The caller's candidates: positive events (ratings of any value) in [02-22 12:00, NOW):
#   i1: 3    i2: 2 (a purchase, a cart)    i3: 2 (the play exactly at the window start,
#   and ub's click; views and u5's rating of 02-20 are out)    i4: 0 (clicks before the
#   window, one a second too early; impressions, views, skips)    i5: 1 (the rating; the
#   click exactly at NOW and the ones after it do not count)    i6: 4, though unavailable
#   i7, i8: none    i9: 1
LAST_WEEK = {"i1": 3, "i2": 2, "i3": 2, "i4": 0, "i5": 1, "i6": 4, "i7": 0, "i8": 0, "i9": 1}
CATEGORY = {
    "i1": "a",
    "i2": "a",
    "i3": "b",
    "i4": "b",
    "i5": "c",
    "i6": "c",
    "i7": "d",
    "i8": "unknown",
    "i9": "unknown",
}


@pytest.fixture
def shop(tmp_path: Path, settings: Settings) -> Settings:
    """Settings on a home whose warehouse holds the catalogue and events above."""
    (tmp_path / "events.csv").write_text(EVENTS)
    (tmp_path / "items.csv").write_text(ITEMS)
    reports = ingest(
        settings.warehouse_path,
        tmp_path / "events.csv",
        settings.event_types,
        LOADED_AT,
        tmp_path / "items.csv",
    )
    assert [(r.read, r.accepted) for r in reports] == [(8, 8), (31, 31)]
    return settings


def _retrieved(settings: Settings, user_id: str, pool: int = 100, now=NOW) -> pd.DataFrame:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return retrieved_for_user(con, settings, user_id, now, pool)


def _given(settings: Settings, user_id: str, item_ids: list, now=NOW) -> pd.DataFrame:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return given_candidates(con, settings, user_id, item_ids, now)


def _items(frame: pd.DataFrame) -> list[str]:
    return list(frame["item_id"])


# Retrieved candidates -------------------------------------------------------------------


def test_a_newcomer_gets_popular_fresh_and_trending_items_in_fused_order(shop) -> None:
    """A user the warehouse does not know still gets candidates, and each says which of
    the history-free sources proposed it."""
    frame = _retrieved(shop, "newcomer")
    assert list(frame.columns) == CANDIDATE_COLUMNS
    assert _items(frame) == NEWCOMER_ORDER
    assert list(frame["sources"]) == [s for s, _ in NEWCOMER.values()]
    assert list(frame["fallback_score"]) == pytest.approx([f for _, f in NEWCOMER.values()])
    assert list(frame["category"]) == [CATEGORY[i] for i in NEWCOMER_ORDER]
    assert list(frame[SOURCE_COUNT]) == [2, 2, 1, 1, 1, 1, 1]
    used = {s for sources in frame["sources"] for s in sources.split(",")}
    assert used == {"popular", "fresh", "trending"}


def test_retrieved_candidates_carry_the_retrieval_features(shop) -> None:
    """The fallback score is the fused score; each source's rank is where it put the item,
    NaN where it did not propose it."""
    frame = _retrieved(shop, "newcomer").set_index("item_id")
    assert (frame["fallback_score"] == frame[FUSED_SCORE]).all()
    assert frame.loc["i2", "retrieval_popular_rank"] == 3
    assert frame.loc["i2", "retrieval_trending_rank"] == 1
    assert frame.loc["i9", "retrieval_popular_rank"] == 6
    assert frame.loc["i9", "retrieval_fresh_rank"] == 1
    assert frame.loc["i9", "retrieval_fresh_score"] == pytest.approx(1 + 1 / 5.125)
    assert frame.loc["i7", "retrieval_fresh_score"] == pytest.approx(1 / 4.5)
    assert frame.loc["i1", "retrieval_popular_score"] == pytest.approx(2.2088, abs=1e-4)
    assert pd.isna(frame.loc["i1", "retrieval_fresh_rank"])
    assert frame[["retrieval_covisit_rank", "retrieval_category_rank"]].isna().all().all()
    assert frame["retrieval_repeat_rank"].isna().all()  # no repeat event types by default


def test_retrieved_candidates_are_available_and_known_items_each_once(shop) -> None:
    """The unavailable i6 (four clicks last week) is never proposed; i8 (no date, no
    event) neither. i9 has events but no catalogue row: retrieval knows it from its events
    (``r_catalogue``: created_at is the first event's), with the unknown category."""
    for user in ("newcomer", "ua", "ub", "uc", "u1", "u2", "u3", "u4", "u5"):
        frame = _retrieved(shop, user)
        assert not frame["item_id"].duplicated().any()
        assert not {"i6", "i8"} & set(frame["item_id"])
        assert frame["fallback_score"].is_monotonic_decreasing
        assert (frame["fallback_score"] == frame[FUSED_SCORE]).all()
    assert _retrieved(shop, "newcomer").set_index("item_id").loc["i9", "category"] == "unknown"


def test_retrieved_candidates_never_propose_what_the_user_consumed(shop) -> None:
    """A purchase consumes; so does an add-to-cart (a positive type, not a repeat one) and a
    rating, even a bad one; a view does not. That holds for every source, the embedding one
    included: the model (fitted at 02-26, so it knows u1 to u5) puts u5's own i4 first."""
    lines = [ln.split(",") for ln in EVENTS.splitlines()[1:]]
    for user in ("ua", "ub", "uc", "u1", "u2", "u3", "u4", "u5"):
        consumed = {i for u, i, t, ts, _ in lines if u == user and t in CONSUMING and ts < NOW_ISO}
        assert not consumed & set(_items(_retrieved(shop, user))), user
    assert "i2" in _items(_retrieved(shop, "uc"))  # only viewed: not consumed
    with warehouse(shop.warehouse_path, read_only=True) as con:
        nearest = embeddings_at(con, shop, NOW).nearest(["u5"], 10)
    assert list(nearest["item_id"])[0] == "i4"  # what the embedding source would propose
    u5 = _retrieved(shop, "u5").set_index("item_id")
    assert u5["retrieval_embedding_rank"].notna().any()  # it does propose other items to u5
    # The other sources' exact lists: the collaborative sources off (their proposals reorder
    # them).
    exact = shop.updated(retrieval={"embedding_budget": 0, "neighbours_budget": 0})
    ua, ub = _retrieved(exact, "ua"), _retrieved(exact, "ub")
    assert _items(ua) == UA_ORDER  # i2 bought
    assert _items(ub) == UB_ORDER  # i2 in the cart, i3 clicked
    assert _items(_retrieved(exact, "u5")) == U5_ORDER  # i3 rated 1, i4 clicked
    assert _items(_retrieved(exact, "uc")) == NEWCOMER_ORDER  # i2 only viewed: first
    # What the user met brings in the personal sources.
    assert dict(zip(ua["item_id"], ua["sources"], strict=True))["i1"] == "category,popular"
    assert dict(zip(ua["item_id"], ua["sources"], strict=True))["i3"] == "covisit,popular"
    assert dict(zip(ub["item_id"], ub["sources"], strict=True))["i4"] == "category,popular"


def test_repeat_event_types_let_an_item_be_proposed_again(shop) -> None:
    """With re-purchase allowed, a purchase no longer consumes: i2 comes back to ua, from
    the repeat source among others."""
    repurchase = shop.updated(retrieval={"repeat_event_types": ["purchase"]})
    frame = _retrieved(repurchase, "ua").set_index("item_id")
    assert set(frame.loc["i2", "sources"].split(",")) == {
        "category",
        "popular",
        "trending",
        "repeat",
        "neighbours",  # ua's neighbours bought it too
    }
    assert frame.loc["i2", "retrieval_repeat_rank"] == 1
    assert "i2" not in _items(_retrieved(repurchase, "ub"))  # a cart still consumes


def test_retrieved_candidates_never_see_events_at_or_after_now(shop, tmp_path: Path) -> None:
    """The same warehouse without the events at and after NOW proposes exactly the same."""
    before = shop.updated(home=tmp_path / "before")
    lines = EVENTS.splitlines(keepends=True)
    kept = [lines[0], *(ln for ln in lines[1:] if ln.split(",")[3] < "2026-03-01T12:00:00")]
    assert len(kept) == len(lines) - 3
    (tmp_path / "before.csv").write_text("".join(kept))
    (tmp_path / "items.csv").write_text(ITEMS)
    ingest(before.warehouse_path, tmp_path / "before.csv", before.event_types, LOADED_AT,
           tmp_path / "items.csv")  # fmt: skip
    for user in ("newcomer", "ua", "ub", "u2", "u3", "u4"):
        pd.testing.assert_frame_equal(_retrieved(shop, user), _retrieved(before, user))


def test_a_click_at_now_does_not_count_yet(shop) -> None:
    """u2 clicks i5 exactly at NOW: at NOW i5 is still proposed to u2 and only popular; a
    second later the click counts: consumed by u2, and i5 trends (two positives in 3 days)."""
    assert "i5" in _items(_retrieved(shop, "u2"))
    assert "i5" in _items(_retrieved(shop, "u4"))  # bought at 18:00, after NOW
    later = NOW + timedelta(seconds=1)
    assert "i5" not in _items(_retrieved(shop, "u2", now=later))
    newcomer = _retrieved(shop, "newcomer", now=later).set_index("item_id")
    assert newcomer.loc["i5", "sources"] == "popular,trending"


def test_the_pool_caps_the_candidates_and_keeps_the_fused_order(shop) -> None:
    full = _retrieved(shop, "newcomer")
    for pool in (1, 3, 5):
        capped = _retrieved(shop, "newcomer", pool=pool)
        assert _items(capped) == NEWCOMER_ORDER[:pool]
        pd.testing.assert_frame_equal(capped, full.head(pool))
    assert _items(_retrieved(shop, "ua", pool=2)) == _items(_retrieved(shop, "ua"))[:2]


# Caller's candidates --------------------------------------------------------------------


def test_given_candidates_keep_the_callers_items_with_last_weeks_positive_events(shop) -> None:
    """The caller's list is honoured as given (even unavailable or unknown items), sorted
    by item_id, with last week's positive events as the fallback score."""
    frame = _given(shop, "newcomer", ["i9", "i1", "i6", "i5", "nope", "i3"])
    assert list(frame.columns) == CANDIDATE_COLUMNS
    assert _items(frame) == ["i1", "i3", "i5", "i6", "i9", "nope"]
    assert list(frame["fallback_score"]) == [3.0, 2.0, 1.0, 4.0, 1.0, 0.0]
    assert list(frame["category"]) == ["a", "b", "c", "c", "unknown", "unknown"]
    everything = _given(shop, "newcomer", list(LAST_WEEK))
    assert dict(zip(everything["item_id"], everything["fallback_score"], strict=True)) == LAST_WEEK
    assert dict(zip(everything["item_id"], everything["category"], strict=True)) == CATEGORY


def test_given_candidates_carry_retrieval_features_where_retrieval_proposes_them(shop) -> None:
    """Items retrieval also proposes to the user carry its sources and features; the
    others (unavailable, unknown, never retrieved) have NaN and no source."""
    frame = _given(shop, "newcomer", ["i9", "i1", "i6", "i8", "nope"]).set_index("item_id")
    assert list(frame.index) == ["i1", "i6", "i8", "i9", "nope"]
    assert list(frame["sources"]) == ["popular", "", "", "popular,fresh", ""]
    assert frame.loc["i1", FUSED_SCORE] == pytest.approx(NEWCOMER["i1"][1])
    assert frame.loc["i9", FUSED_SCORE] == pytest.approx(NEWCOMER["i9"][1])
    assert frame.loc["i9", SOURCE_COUNT] == 2
    assert frame.loc["i9", "retrieval_fresh_rank"] == 1
    assert frame.loc[["i6", "i8", "nope"], list(RETRIEVAL_FEATURES)].isna().all().all()
    # The same features as the retrieved candidates' for the same user and time.
    retrieved = _retrieved(shop, "newcomer").set_index("item_id")
    cols = ["sources", *RETRIEVAL_FEATURES]
    pd.testing.assert_frame_equal(frame.loc[["i1", "i9"], cols], retrieved.loc[["i1", "i9"], cols])


def test_given_candidates_do_not_exclude_what_the_user_consumed(shop) -> None:
    """The caller decided what to rank: ua's bought i2 stays, without retrieval features."""
    frame = _given(shop, "ua", ["i2", "i3"])
    assert _items(frame) == ["i2", "i3"]
    assert list(frame["fallback_score"]) == [2.0, 2.0]
    assert list(frame["sources"]) == ["", "covisit,popular,neighbours"]
    assert pd.isna(frame[FUSED_SCORE].iloc[0])


def test_given_candidates_accept_non_string_ids(shop) -> None:
    frame = _given(shop, "newcomer", [7, "i1"])
    assert _items(frame) == ["7", "i1"]
    assert list(frame["fallback_score"]) == [0.0, 3.0]
    assert list(frame["category"]) == ["unknown", "a"]


def test_given_candidates_count_a_repeated_id_once(shop) -> None:
    frame = _given(shop, "newcomer", ["i1", "i1", "i3", "i1"])
    assert dict(zip(frame["item_id"], frame["fallback_score"], strict=True)) == {
        "i1": 3.0,
        "i3": 2.0,
    }


def test_given_candidates_leave_no_registered_view_behind(shop) -> None:
    """The ids go in as a parameter, even when the query runs twice on one connection."""
    with warehouse(shop.warehouse_path, read_only=True) as con:
        given_candidates(con, shop, "ua", ["i1"], NOW)
        given_candidates(con, shop, "ub", ["i2"], NOW)
        names = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    assert "given" not in names
    assert {"events", "items"} <= names


# Ranking without a champion ---------------------------------------------------------------


def test_no_champion_ranks_by_the_fallback_score_and_says_why(shop) -> None:
    ranked = rank_for_user(None, None, _retrieved(shop, "newcomer"), "newcomer", NOW, k=5)
    assert ranked.user_id == "newcomer"
    assert ranked.model_version is None
    assert ranked.fallback == "no champion model registered yet"
    assert list(ranked.items.columns) == [*RANKED_COLUMNS, "fallback_score"]
    assert ranked.items["score"].isna().all()  # the score field is only ever a model's
    assert list(ranked.items["rank"]) == [1, 2, 3, 4, 5]
    assert list(ranked.items["item_id"]) == ["i2", "i9", "i1", "i4", "i7"]  # i4, i7 tie
    assert list(ranked.items["fallback_score"]) == pytest.approx(
        [NEWCOMER[i][1] for i in NEWCOMER_ORDER[:5]]
    )
    assert list(ranked.items["category"]) == ["a", "unknown", "a", "b", "d"]
    assert list(ranked.items["sources"]) == [NEWCOMER[i][0] for i in NEWCOMER_ORDER[:5]]


@pytest.mark.parametrize("k", [1, 3, 7, 50])
def test_k_is_respected(shop, k: int) -> None:
    candidates = _retrieved(shop, "newcomer")
    ranked = rank_for_user(None, None, candidates, "newcomer", NOW, k=k)
    assert len(ranked.items) == min(k, len(candidates))
    assert list(ranked.items["item_id"]) == NEWCOMER_ORDER[:k]


def test_ties_are_broken_by_item_id_whatever_the_input_order() -> None:
    """Equal fallback scores: the smaller item_id first, so a ranking is reproducible; a
    frame without sources gets empty ones."""
    candidates = pd.DataFrame(
        {
            "item_id": ["z", "b", "m", "a", "c"],
            "category": ["x"] * 5,
            "fallback_score": [1.0, 5.0, 1.0, 1.0, 5.0],
        }
    )
    ranked = rank_for_user(None, None, candidates, "u", NOW, k=5)
    assert list(ranked.items["item_id"]) == ["b", "c", "a", "m", "z"]
    assert list(ranked.items["rank"]) == [1, 2, 3, 4, 5]
    assert list(ranked.items["sources"]) == [""] * 5
    assert list(candidates["item_id"]) == ["z", "b", "m", "a", "c"]  # input untouched
    assert "score" not in candidates.columns and "sources" not in candidates.columns


def test_no_candidates_is_an_empty_list_with_a_reason() -> None:
    empty = pd.DataFrame(columns=CANDIDATE_COLUMNS)
    ranked = rank_for_user(None, None, empty, "u", NOW, k=10)
    assert ranked.items.empty
    assert list(ranked.items.columns) == RANKED_COLUMNS
    assert ranked.model_version is None
    assert ranked.fallback == "no candidate items"
    assert served_impressions(ranked, "req", NOW) == []


def test_before_any_signal_retrieval_proposes_nothing(shop) -> None:
    """Mid-2025 no event has happened and no item is fresh: no candidates, and the caller's
    own list is still ranked (by nothing: zero events, no retrieval features)."""
    early = datetime(2025, 6, 1)
    assert _retrieved(shop, "ua", now=early).empty
    ranked = rank_request(shop, None, None, "ua", early, k=10)
    assert ranked.items.empty and ranked.fallback == "no candidate items"
    given = rank_request(shop, None, None, "ua", early, k=10, item_ids=["i2", "i1"])
    assert list(given.items["item_id"]) == ["i1", "i2"]
    assert list(given.items["fallback_score"]) == [0.0, 0.0]
    assert list(given.items["sources"]) == ["", ""]


def test_rank_request_uses_retrieval_without_item_ids(shop) -> None:
    ranked = rank_request(shop, None, None, "ua", NOW, k=3)
    retrieved = _retrieved(shop, "ua").head(3)  # retrieval's own order: no model yet
    assert list(ranked.items["item_id"]) == _items(retrieved) and "i2" not in _items(retrieved)
    assert list(ranked.items["sources"]) == list(retrieved["sources"])
    assert ranked.fallback == "no champion model registered yet"


@pytest.mark.parametrize("item_ids", [None, []])
def test_rank_request_without_a_list_falls_back_to_retrieval(shop, item_ids) -> None:
    ranked = rank_request(shop, None, None, "newcomer", NOW, k=10, item_ids=item_ids)
    assert list(ranked.items["item_id"]) == NEWCOMER_ORDER


def test_rank_request_ranks_the_callers_items(shop) -> None:
    ranked = rank_request(shop, None, None, "ua", NOW, k=10, item_ids=["i4", "i2", "i6"])
    # The business rules: i6 is unavailable, ua bought i2; only i4 is left to rank.
    assert list(ranked.items["item_id"]) == ["i4"]
    assert ranked.dropped["unavailable"] == 1 and ranked.dropped["consumed"] == 1
    # Without them, the fallback order: 4, 2 and 0 positive events last week.
    no_rules = shop.updated(serving={"drop_consumed": False, "fresh_slot_days": 0})
    ranked = rank_request(no_rules, None, None, "ua", NOW, k=10, item_ids=["i4", "i2", "i6"])
    assert list(ranked.items["item_id"]) == ["i2", "i4"]
    assert list(ranked.items["fallback_score"]) == [2.0, 0.0]
    assert list(ranked.items["sources"]) == ["", "popular"]  # retrieval offers ua only i4


def test_rank_request_pool_caps_the_candidates(shop) -> None:
    """The candidate pool is cut before ranking: k larger than the pool gets the pool."""
    small_pool = shop.updated(serving={"candidate_pool": 2})
    ranked = rank_request(small_pool, None, None, "newcomer", NOW, k=5)
    assert list(ranked.items["item_id"]) == ["i2", "i9"]
    # The caller's list is not retrieval's: the pool does not cut it.
    given = rank_request(small_pool, None, None, "newcomer", NOW, k=5, item_ids=["i1", "i3", "i5"])
    assert list(given.items["item_id"]) == ["i1", "i3", "i5"]


def test_rank_request_only_reads_the_warehouse(shop) -> None:
    """It opens the warehouse read-only: ranking (and retrieval's temporary tables) change
    neither the warehouse file nor the files next to it."""
    folder = shop.warehouse_path.parent

    def state() -> tuple[str, list[str]]:
        digest = hashlib.sha256(shop.warehouse_path.read_bytes()).hexdigest()
        return digest, sorted(p.name for p in folder.iterdir())

    before = state()
    rank_request(shop, None, None, "newcomer", NOW, k=3)
    rank_request(shop, None, None, "ua", NOW, k=3, item_ids=["i1", "i2"])
    assert state() == before


# Served impressions -----------------------------------------------------------------------


def _ranked(shop: Settings, k: int = 3) -> RankedList:
    return rank_for_user(None, None, _retrieved(shop, "newcomer"), "newcomer", NOW, k=k)


def _load_served(shop: Settings, rows: list[dict], path: Path):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ingest(shop.warehouse_path, path, shop.event_types, LOADED_AT)


def test_served_impressions_are_contract_rows(shop) -> None:
    rows = served_impressions(_ranked(shop), "req42", NOW)
    assert rows == [
        {
            "event_id": f"req42-{rank}",
            "user_id": "newcomer",
            "item_id": item,
            "event_type": IMPRESSION,
            "event_timestamp": "2026-03-01T12:00:00+00:00",
            "value": None,
            "session_id": "req42",
            "position": rank,
            "score": None,  # no model ranked: the fallback order
            "model_version": None,
            "propensity": 1.0,  # no exploration: the deterministic list
        }
        for rank, item in enumerate(["i2", "i9", "i1"], start=1)
    ]
    assert all(type(r["position"]) is int for r in rows)  # not numpy: JSON must take it
    json.dumps(rows)


def test_served_impressions_load_back_into_the_warehouse(shop, tmp_path: Path) -> None:
    """Closing the loop: every served row is accepted, typed as the contract says, and a
    second load of the same file adds nothing."""
    rows = served_impressions(_ranked(shop, k=4), "req7", NOW)
    served = tmp_path / "served.jsonl"
    (report,) = _load_served(shop, rows, served)
    assert (report.read, report.accepted, report.quarantined) == (4, 4, 0)
    with warehouse(shop.warehouse_path, read_only=True) as con:
        loaded = con.execute(
            "SELECT event_id, item_id, event_type, event_timestamp, value, session_id, position "
            "FROM events WHERE session_id = 'req7' ORDER BY position"
        ).df()
    assert list(loaded["event_id"]) == ["req7-1", "req7-2", "req7-3", "req7-4"]
    assert list(loaded["item_id"]) == ["i2", "i9", "i1", "i4"]
    assert set(loaded["event_type"]) == {IMPRESSION}
    assert list(loaded["position"]) == [1, 2, 3, 4]
    assert (loaded["event_timestamp"] == pd.Timestamp(NOW)).all()  # stored as naive UTC
    assert loaded["value"].isna().all()
    (again,) = ingest(shop.warehouse_path, served, shop.event_types, LOADED_AT)
    assert (again.read, again.accepted, again.duplicates) == (4, 0, 4)


def test_served_impressions_change_nothing_retrieval_proposes(shop, tmp_path: Path) -> None:
    """Showing an item is neither a positive interaction nor consumption: serving cannot
    feed its own popularity, nor hide what it showed."""
    before = {u: _retrieved(shop, u) for u in ("newcomer", "ua")}
    rows = served_impressions(_ranked(shop, k=7), "req8", NOW - timedelta(hours=1))
    assert len(rows) == 7
    _load_served(shop, rows, tmp_path / "served.jsonl")
    for user, frame in before.items():
        pd.testing.assert_frame_equal(_retrieved(shop, user), frame)
    last_week = _given(shop, "newcomer", list(LAST_WEEK))
    assert dict(zip(last_week["item_id"], last_week["fallback_score"], strict=True)) == LAST_WEEK


def test_served_impressions_of_the_callers_items_do_not_become_candidates(
    shop, tmp_path: Path
) -> None:
    """Being shown does not make an id an item: a made-up id and an undated item without
    events, once served and logged, are not proposed as 'fresh' to anyone."""
    before = _retrieved(shop, "newcomer")
    ranked = rank_request(shop, None, None, "newcomer", NOW - timedelta(hours=1), k=10,
                          item_ids=["nope", "i8", "i1"])  # fmt: skip
    _load_served(shop, served_impressions(ranked, "req9", NOW - timedelta(hours=1)),
                 tmp_path / "served.jsonl")  # fmt: skip
    after = _retrieved(shop, "newcomer")
    assert not {"nope", "i8"} & set(after["item_id"])
    pd.testing.assert_frame_equal(after, before)
