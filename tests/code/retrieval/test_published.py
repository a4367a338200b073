"""Retrieval published for serving: the same candidates as a live retrieval, looked up
without the warehouse, and used only when they may serve the request."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.retrieval.merge import retrieve
from ranking.retrieval.published import (
    CURRENT,
    load_published,
    publish_candidates,
    retrieval_dir,
    unchanged_publication,
)
from ranking.serving.candidates import (
    CANDIDATE_COLUMNS,
    candidates_for,
    given_candidates,
    retrieved_for_user,
)
from ranking.settings import Settings
from ranking.warehouse import warehouse
from tests.conftest import END, NOW

AT = END - timedelta(days=2)


@pytest.fixture
def loaded(tmp_path: Path, settings: Settings, small_data: synth.SynthData) -> Settings:
    paths = synth.write(small_data, tmp_path / "raw")
    ingest(settings.warehouse_path, paths["events"], settings.event_types, NOW, paths["items"])
    return settings


def _users(settings: Settings, limit: int = 6) -> list[str]:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return [u for (u,) in con.execute(
            "SELECT user_id FROM events WHERE event_timestamp < ? GROUP BY 1 "
            "ORDER BY count(*) DESC, 1 LIMIT ?", [AT, limit]).fetchall()]  # fmt: skip


def _publish(settings: Settings, at=AT):
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return publish_candidates(con, settings, at)


def test_published_candidates_are_the_live_retrieval(loaded: Settings) -> None:
    """For known users, a user never seen and a caller's own list, the lookup returns what
    retrieving live at the publication time returns."""
    publication = _publish(loaded)
    published = load_published(loaded, AT)
    assert published is not None and publication.users > 50
    with warehouse(loaded.warehouse_path, read_only=True) as con:
        for user in [*_users(loaded), "someone-new"]:
            live = retrieved_for_user(con, loaded, user, AT, 500)
            assert len(live) > 20
            pd.testing.assert_frame_equal(
                published.for_user(user, 500)[CANDIDATE_COLUMNS], live, check_dtype=False
            )
            items = [*live["item_id"].iloc[[0, 5, 9]], "not-an-item"]
            pd.testing.assert_frame_equal(
                published.for_items(user, items)[CANDIDATE_COLUMNS],
                given_candidates(con, loaded, user, items, AT),
                check_dtype=False,
            )


def test_a_user_retrieved_in_a_batch_gets_what_they_get_alone(loaded: Settings) -> None:
    """Publishing retrieves thousands of users at once: no source may depend on who else
    is in the batch (the embedding search goes equally deep for everyone, past the items
    that went unavailable)."""
    with warehouse(loaded.warehouse_path) as con:
        con.execute("""UPDATE items SET available = false WHERE item_id IN (
            SELECT item_id FROM events GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 40)""")
    users = _users(loaded, 30)
    shallow = loaded.updated(retrieval={"embedding_budget": 3})  # below the catalogue's size
    with warehouse(loaded.warehouse_path, read_only=True) as con:
        together = retrieve(con, shallow, users, AT)
        assert together["retrieval_embedding_rank"].max() == 3
        for user in users:
            alone = retrieve(con, shallow, [user], AT)
            pd.testing.assert_frame_equal(
                alone, together[together["user_id"] == user].reset_index(drop=True)
            )


def test_serving_reads_the_publication_not_the_warehouse(loaded: Settings) -> None:
    """Candidates and what the rules read (consumed, unanswered impressions, freshness,
    availability) come from the publication as they would live, with no warehouse."""
    user = _users(loaded, 1)[0]
    items = ["not-an-item", *_users_items(loaded, user)]
    live = candidates_for(loaded, user, AT)  # no publication yet
    live_given = candidates_for(loaded, user, AT, items)
    assert live["created_at"].notna().all() and live_given["consumed"].sum() >= 3
    _publish(loaded)
    loaded.warehouse_path.rename(loaded.warehouse_path.with_suffix(".away"))
    for request in (AT, AT + timedelta(hours=5)):
        pd.testing.assert_frame_equal(candidates_for(loaded, user, request), live,
                                      check_dtype=False)  # fmt: skip
        pd.testing.assert_frame_equal(candidates_for(loaded, user, request, items), live_given,
                                      check_dtype=False)  # fmt: skip


def _users_items(settings: Settings, user: str) -> list[str]:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return [i for (i,) in con.execute(
            "SELECT DISTINCT item_id FROM events WHERE user_id = ? AND event_timestamp < ? "
            "ORDER BY 1 LIMIT 8", [user, AT]).fetchall()]  # fmt: skip


def test_a_publication_serves_only_later_requests_with_the_same_settings(
    loaded: Settings,
) -> None:
    _publish(loaded)
    assert load_published(loaded, AT) is not None
    assert load_published(loaded, AT - timedelta(seconds=1)) is None  # it would leak
    other = loaded.updated(retrieval={"popular_budget": 7})
    assert load_published(other, AT + timedelta(days=1)) is None
    with warehouse(loaded.warehouse_path, read_only=True) as con:  # so it retrieves live
        live = retrieved_for_user(con, other, "someone-new", AT, 500)
    assert (live["retrieval_popular_rank"] <= 7).sum() == 7
    served = candidates_for(other, "someone-new", AT)[CANDIDATE_COLUMNS]
    pd.testing.assert_frame_equal(served, live.head(other.serving.candidate_pool))


def test_a_new_publication_replaces_the_current_one(loaded: Settings) -> None:
    first = _publish(loaded, AT - timedelta(days=2))
    older = load_published(loaded, AT)
    second = _publish(loaded, AT - timedelta(days=1))
    third = _publish(loaded, AT)
    root = retrieval_dir(loaded)
    assert (root / CURRENT).read_text().strip() == third.path.name
    assert load_published(loaded, AT).at == AT != older.at
    assert not first.path.exists() and second.path.exists()  # one previous kept for readers
    assert not [p for p in root.iterdir() if ".staging" in p.name]


def test_a_publication_is_kept_only_for_the_same_inputs_time_and_settings(
    loaded: Settings,
) -> None:
    with warehouse(loaded.warehouse_path, read_only=True) as con:
        made = publish_candidates(con, loaded, AT, inputs="digest-a")
    assert made.path.name.startswith(f"{AT:%Y%m%dT%H%M%S}-")
    kept = unchanged_publication(loaded, AT, "digest-a")
    assert kept is not None and kept.path == made.path and kept.rows == made.rows
    assert unchanged_publication(loaded, AT, "digest-b") is None  # other features
    assert unchanged_publication(loaded, AT, "") is None  # inputs unknown
    assert unchanged_publication(loaded, AT - timedelta(days=1), "digest-a") is None
    other = loaded.updated(retrieval={"covisit_budget": 7})
    assert unchanged_publication(other, AT, "digest-a") is None  # other retrieval settings


def test_a_copied_home_serves_from_its_own_publication(loaded: Settings, tmp_path) -> None:
    """Nothing in a publication names the home: a copy works, and the original too."""
    _publish(loaded)
    copy = tmp_path / "copy"
    shutil.copytree(loaded.home, copy)
    shutil.rmtree(loaded.home / "retrieval")
    moved = loaded.updated(home=copy)
    assert load_published(moved, AT) is not None
    assert load_published(loaded, AT) is None
