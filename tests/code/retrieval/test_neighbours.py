"""The neighbours source (user-based collaborative filtering) on a small real warehouse:
it proposes what users of the same taste took, never from events at or after the query
time, and scores every merged candidate."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from ranking.home import ensure_dirs
from ranking.ingest.contract import ingest
from ranking.retrieval.merge import rank_column, retrieve, score_column
from ranking.retrieval.neighbours import NEIGHBOURS
from ranking.retrieval.sources import SOURCES, prepare, source_candidates
from ranking.settings import Settings
from ranking.warehouse import warehouse
from tests.conftest import NOW

AT = NOW
DAY = timedelta(days=1)
SOURCE = next(s for s in SOURCES if s.name == NEIGHBOURS)


def _rows() -> list[tuple]:
    """Group A (a00..a09) clicks a1..a5 and group B b1..b5, before AT; qa clicked a1, a2.
    At and after AT, group A clicks z1 and qa clicks b1: neither may count."""
    start = datetime(2026, 2, 10)
    rows = [(f"{g}{n:02d}", f"{g}{k}", start + timedelta(hours=7 * n + 13 * k))
            for g in "ab" for n in range(10) for k in range(1, 6)]  # fmt: skip
    rows += [("qa", "a1", start + 9 * DAY), ("qa", "a2", start + 10 * DAY)]
    rows += [(f"a{n:02d}", "z1", AT + timedelta(minutes=n)) for n in range(10)]
    return rows + [("qa", "b1", AT), ("qa", "b2", AT + DAY)]


@pytest.fixture
def tastes(settings: Settings) -> Settings:
    ensure_dirs(settings)
    path = settings.home / "events.csv"
    lines = [f"{u},{i},click,{ts.isoformat()}\n" for u, i, ts in _rows()]
    path.write_text("user_id,item_id,event_type,event_timestamp\n" + "".join(lines))
    report = ingest(settings.warehouse_path, path, settings.event_types, AT + 2 * DAY)[-1]
    assert report.quarantined == 0
    return settings


def _proposed(settings: Settings, users: list[str], at: datetime = AT) -> pd.DataFrame:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        prepare(con, settings, users, at)
        return source_candidates(con, settings, SOURCE)


def test_proposes_what_users_of_the_same_taste_took_and_nothing_seen(tastes: Settings) -> None:
    found = _proposed(tastes, ["qa"])
    assert set(found["item_id"]) == {"a3", "a4", "a5"}  # not a1, a2 (seen), not b*
    assert list(found["rank"]) == [1, 2, 3]


def test_never_uses_events_at_or_after_the_query_time(tastes: Settings) -> None:
    found = _proposed(tastes, ["qa", "a00"])
    assert "z1" not in set(found["item_id"])  # group A took it at and after AT
    qa = found[found["user_id"] == "qa"]
    assert not set(qa["item_id"]) & {"b1", "b2"}  # qa's own later clicks make no neighbour
    later = _proposed(tastes, ["qa"], AT + timedelta(hours=1))
    assert "z1" in set(later["item_id"])  # once the events are in the past, they count


def test_a_user_without_history_gets_nothing(tastes: Settings) -> None:
    assert _proposed(tastes, ["nobody"]).empty


def test_every_merged_candidate_gets_the_neighbours_score(tastes: Settings) -> None:
    with warehouse(tastes.warehouse_path, read_only=True) as con:
        merged = retrieve(con, tastes, ["qa"], AT).set_index("item_id")
    score = merged[score_column(NEIGHBOURS)]
    assert score.notna().all()
    assert (score[["a3", "a4", "a5"]] > 0).all()
    others = merged[merged[rank_column(NEIGHBOURS)].isna()].index
    assert set(others) >= {"b3", "b4", "b5"}  # proposed by popularity, not the neighbours
    assert (score[list(others)] == 0).all()  # no neighbour of qa took them
    off = tastes.updated(retrieval={"neighbours_budget": 0})
    with warehouse(tastes.warehouse_path, read_only=True) as con:
        assert retrieve(con, off, ["qa"], AT)[score_column(NEIGHBOURS)].isna().all()
