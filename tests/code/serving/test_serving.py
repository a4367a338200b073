"""Serving without a model: catalogue candidates, the popularity fallback and the served
impressions that close the loop, on a small real warehouse."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from ranking.ingest.contract import ingest
from ranking.schema import IMPRESSION
from ranking.serving.candidates import candidate_items, given_candidates
from ranking.serving.ranker import RankedList, rank_for_user, rank_request, served_impressions
from ranking.settings import Settings
from ranking.warehouse import warehouse
from tests.conftest import NOW

# Ranking happens at NOW (2026-03-01 12:00); the popularity window is [02-22 12:00, NOW).
# The warehouse is loaded a day later so that events at and after NOW are accepted too.
LOADED_AT = NOW + timedelta(days=1)

ITEMS = """\
item_id,category,available
i1,a,true
i2,a,true
i3,b,true
i4,b,true
i5,c,true
i6,c,false
i7,d|e,true
i8,,true
"""

EVENTS = """\
user_id,item_id,event_type,event_timestamp,value
u1,i1,click,2026-02-25T09:00:00,
u2,i1,click,2026-02-26T09:00:00,
u3,i1,play,2026-02-27T09:00:00,
ua,i2,purchase,2026-02-28T09:00:00,19.9
ub,i2,add_to_cart,2026-02-28T10:00:00,19.9
u1,i3,play,2026-02-22T12:00:00,
u1,i3,view,2026-02-26T10:00:00,
u2,i3,view,2026-02-26T10:00:00,
u3,i3,view,2026-02-26T10:00:00,
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
# Positive events (click, play, add_to_cart, purchase, rating) in [02-22 12:00, NOW):
#   i1: 3          i2: 2 (a purchase by ua, a cart by ub)
#   i3: 1 (the play exactly at the window start; views do not count)
#   i4: 0 (clicks before the window, one a second too early; impressions, views, skips)
#   i5: 1 (a rating; the click exactly at NOW and the ones after it do not count)
#   i6: 4, but unavailable         i7, i8: none          i9: 1, but not in the catalogue
POPULARITY = {"i1": 3, "i2": 2, "i3": 1, "i4": 0, "i5": 1, "i7": 0, "i8": 0}
# Most popular first, ties by item_id.
CATALOGUE_ORDER = ["i1", "i2", "i3", "i5", "i4", "i7", "i8"]
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
    assert [(r.read, r.accepted) for r in reports] == [(8, 8), (28, 28)]
    return settings


def _catalogue(settings: Settings, user_id: str, pool: int = 100, now=NOW) -> pd.DataFrame:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return candidate_items(con, user_id, now, pool)


def _given(settings: Settings, item_ids: list[str], now=NOW) -> pd.DataFrame:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return given_candidates(con, item_ids, now)


# Catalogue candidates -------------------------------------------------------------------


def test_catalogue_candidates_are_available_items_by_last_weeks_positive_events(shop) -> None:
    """Popularity counts positive types only, in [now - 7 days, now): the window start is
    in, ``now`` itself and anything after it are out; unavailable items never show."""
    frame = _catalogue(shop, "newcomer")
    assert list(frame.columns) == ["item_id", "category", "popularity"]
    assert list(frame["item_id"]) == CATALOGUE_ORDER
    assert dict(zip(frame["item_id"], frame["popularity"], strict=True)) == POPULARITY
    assert dict(zip(frame["item_id"], frame["category"], strict=True)) == {
        i: CATEGORY[i] for i in CATALOGUE_ORDER
    }
    assert "i6" not in set(frame["item_id"])  # popular, but unavailable
    assert "i9" not in set(frame["item_id"])  # has events, but is not in the catalogue


def test_catalogue_candidates_never_count_events_at_or_after_now(shop) -> None:
    """Ranking a day later sees the click at NOW and the two events after it (and the
    earlier events fall out of the window)."""
    later = _catalogue(shop, "newcomer", now=NOW + timedelta(days=1))
    popularity = dict(zip(later["item_id"], later["popularity"], strict=True))
    assert popularity["i5"] == 4  # rating 02-27, click at NOW, click and purchase after
    assert popularity["i3"] == 0  # its play at 02-22 12:00 is now older than a week
    assert later["item_id"].iloc[0] == "i5"


def test_catalogue_candidates_leave_out_what_the_user_bought(shop) -> None:
    """A purchase removes the item; an add-to-cart does not."""
    assert "i2" not in set(_catalogue(shop, "ua")["item_id"])
    assert list(_catalogue(shop, "ua")["item_id"]) == [i for i in CATALOGUE_ORDER if i != "i2"]
    assert "i2" in set(_catalogue(shop, "ub")["item_id"])


def test_catalogue_candidates_are_the_pool_most_popular(shop) -> None:
    assert list(_catalogue(shop, "newcomer", pool=3)["item_id"]) == CATALOGUE_ORDER[:3]
    assert list(_catalogue(shop, "ua", pool=2)["item_id"]) == ["i1", "i3"]


def test_no_catalogue_means_no_candidates(settings: Settings, tmp_path: Path) -> None:
    """Events without an items file: the catalogue is empty, and so are the candidates."""
    (tmp_path / "events.csv").write_text(EVENTS)
    ingest(settings.warehouse_path, tmp_path / "events.csv", settings.event_types, LOADED_AT)
    assert _catalogue(settings, "newcomer").empty


# Caller's candidates --------------------------------------------------------------------


def test_given_candidates_keep_the_callers_items_with_category_and_popularity(shop) -> None:
    """The caller's list is honoured as given (even unavailable or unknown items), sorted
    by item_id, with the same popularity window as the catalogue's."""
    frame = _given(shop, ["i9", "i1", "i6", "i5", "nope"])
    assert list(frame.columns) == ["item_id", "category", "popularity"]
    assert list(frame["item_id"]) == ["i1", "i5", "i6", "i9", "nope"]
    assert list(frame["popularity"]) == [3, 1, 4, 1, 0]
    assert list(frame["category"]) == ["a", "c", "c", "unknown", "unknown"]


def test_given_candidates_do_not_exclude_purchases(shop) -> None:
    """Unlike the catalogue's candidates: the caller decided what to rank."""
    assert list(_given(shop, ["i2"])["item_id"]) == ["i2"]


def test_given_candidates_accept_non_string_ids(shop) -> None:
    frame = _given(shop, [7, "i1"])  # type: ignore[list-item]
    assert list(frame["item_id"]) == ["7", "i1"]


def test_given_candidates_leave_no_registered_view_behind(shop) -> None:
    """The temporary view is dropped even when the query is run twice on one connection."""
    with warehouse(shop.warehouse_path, read_only=True) as con:
        given_candidates(con, ["i1"], NOW)
        given_candidates(con, ["i2"], NOW)
        names = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    assert "given" not in names


def test_given_candidates_count_a_repeated_id_once(shop) -> None:
    frame = _given(shop, ["i1", "i1", "i3"])
    assert dict(zip(frame["item_id"], frame["popularity"], strict=True)) == {"i1": 3, "i3": 1}


# Ranking without a champion ---------------------------------------------------------------


def test_no_champion_ranks_by_popularity_and_says_why(shop) -> None:
    ranked = rank_for_user(None, None, _catalogue(shop, "newcomer"), "newcomer", NOW, k=4)
    assert ranked.user_id == "newcomer"
    assert ranked.model_version is None
    assert ranked.fallback == "no champion model registered yet"
    assert list(ranked.items.columns) == ["rank", "item_id", "category", "score"]
    assert list(ranked.items["rank"]) == [1, 2, 3, 4]
    assert list(ranked.items["item_id"]) == ["i1", "i2", "i3", "i5"]
    assert list(ranked.items["score"]) == [3.0, 2.0, 1.0, 1.0]
    assert list(ranked.items["category"]) == ["a", "a", "b", "c"]


@pytest.mark.parametrize("k", [1, 3, 7, 50])
def test_k_is_respected(shop, k: int) -> None:
    candidates = _catalogue(shop, "newcomer")
    ranked = rank_for_user(None, None, candidates, "newcomer", NOW, k=k)
    assert len(ranked.items) == min(k, len(candidates))
    assert list(ranked.items["item_id"]) == CATALOGUE_ORDER[:k]


def test_ties_are_broken_by_item_id_whatever_the_input_order() -> None:
    """Equal popularity: the smaller item_id first, so a ranking is reproducible."""
    candidates = pd.DataFrame(
        {
            "item_id": ["z", "b", "m", "a", "c"],
            "category": ["x"] * 5,
            "popularity": [1, 5, 1, 1, 5],
        }
    )
    ranked = rank_for_user(None, None, candidates, "u", NOW, k=5)
    assert list(ranked.items["item_id"]) == ["b", "c", "a", "m", "z"]
    assert list(ranked.items["rank"]) == [1, 2, 3, 4, 5]
    assert list(candidates["item_id"]) == ["z", "b", "m", "a", "c"]  # input untouched
    assert "score" not in candidates.columns


def test_no_candidates_is_an_empty_list_with_a_reason() -> None:
    empty = pd.DataFrame(columns=["item_id", "category", "popularity"])
    ranked = rank_for_user(None, None, empty, "u", NOW, k=10)
    assert ranked.items.empty
    assert list(ranked.items.columns) == ["rank", "item_id", "category", "score"]
    assert ranked.model_version is None
    assert ranked.fallback == "no candidate items"
    assert served_impressions(ranked, "req", NOW) == []


def test_rank_request_uses_the_catalogue_without_item_ids(shop) -> None:
    ranked = rank_request(shop, None, None, "ua", NOW, k=3)
    assert list(ranked.items["item_id"]) == ["i1", "i3", "i5"]  # i2 was bought by ua
    assert ranked.fallback == "no champion model registered yet"


@pytest.mark.parametrize("item_ids", [None, []])
def test_rank_request_without_a_list_falls_back_to_the_catalogue(shop, item_ids) -> None:
    ranked = rank_request(shop, None, None, "newcomer", NOW, k=10, item_ids=item_ids)
    assert list(ranked.items["item_id"]) == CATALOGUE_ORDER


def test_rank_request_ranks_the_callers_items(shop) -> None:
    ranked = rank_request(shop, None, None, "ua", NOW, k=10, item_ids=["i4", "i2", "i6"])
    assert list(ranked.items["item_id"]) == ["i6", "i2", "i4"]  # 4, 2, 0 positive events
    assert list(ranked.items["score"]) == [4.0, 2.0, 0.0]


def test_rank_request_pool_caps_the_candidates(shop) -> None:
    """The candidate pool is cut before ranking: k larger than the pool gets the pool."""
    small_pool = shop.updated(serving={"candidate_pool": 2})
    ranked = rank_request(small_pool, None, None, "newcomer", NOW, k=5)
    assert list(ranked.items["item_id"]) == ["i1", "i2"]


def test_rank_request_only_reads_the_warehouse(shop) -> None:
    """It opens the warehouse read-only: ranking changes no table."""
    with warehouse(shop.warehouse_path, read_only=True) as con:
        before = con.execute("SELECT count(*) FROM events").fetchall()
    rank_request(shop, None, None, "newcomer", NOW, k=3)
    with warehouse(shop.warehouse_path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM events").fetchall() == before


# Served impressions -----------------------------------------------------------------------


def _ranked(shop: Settings, k: int = 3) -> RankedList:
    return rank_for_user(None, None, _catalogue(shop, "newcomer"), "newcomer", NOW, k=k)


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
        }
        for rank, item in enumerate(["i1", "i2", "i3"], start=1)
    ]
    assert all(type(r["position"]) is int for r in rows)  # not numpy: JSON must take it
    json.dumps(rows)


def test_served_impressions_load_back_into_the_warehouse(shop, tmp_path: Path) -> None:
    """Closing the loop: every served row is accepted, typed as the contract says, and a
    second load of the same file adds nothing."""
    rows = served_impressions(_ranked(shop, k=4), "req7", NOW)
    served = tmp_path / "served.jsonl"
    served.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (report,) = ingest(shop.warehouse_path, served, shop.event_types, LOADED_AT)
    assert (report.read, report.accepted, report.quarantined) == (4, 4, 0)
    with warehouse(shop.warehouse_path, read_only=True) as con:
        loaded = con.execute(
            "SELECT event_id, item_id, event_type, event_timestamp, value, session_id, position "
            "FROM events WHERE session_id = 'req7' ORDER BY position"
        ).df()
    assert list(loaded["event_id"]) == ["req7-1", "req7-2", "req7-3", "req7-4"]
    assert list(loaded["item_id"]) == ["i1", "i2", "i3", "i5"]
    assert set(loaded["event_type"]) == {IMPRESSION}
    assert list(loaded["position"]) == [1, 2, 3, 4]
    assert (loaded["event_timestamp"] == pd.Timestamp(NOW)).all()  # stored as naive UTC
    assert loaded["value"].isna().all()
    (again,) = ingest(shop.warehouse_path, served, shop.event_types, LOADED_AT)
    assert (again.read, again.accepted, again.duplicates) == (4, 0, 4)


def test_served_impressions_do_not_count_as_popularity(shop, tmp_path: Path) -> None:
    """Showing an item is not a positive interaction: serving cannot feed its own ranking."""
    rows = served_impressions(_ranked(shop, k=7), "req8", NOW - timedelta(hours=1))
    served = tmp_path / "served.jsonl"
    served.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest(shop.warehouse_path, served, shop.event_types, LOADED_AT)
    frame = _catalogue(shop, "newcomer")
    assert dict(zip(frame["item_id"], frame["popularity"], strict=True)) == POPULARITY
