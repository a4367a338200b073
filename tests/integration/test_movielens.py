"""The real MovieLens ml-latest-small folder through the built-in adapter."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from ranking.ingest.contract import LoadReport, ingest
from ranking.ingest.sources import resolve_source
from ranking.schema import DEFAULT_LABEL_WEIGHTS
from ranking.warehouse import warehouse
from tests.conftest import NOW, SHARED_DATA

MOVIELENS = SHARED_DATA / "ml-latest-small"

if not (MOVIELENS / "ratings.csv").is_file():
    pytest.skip(
        f"MovieLens ml-latest-small not found at {MOVIELENS} (shared data not present)",
        allow_module_level=True,
    )

RATINGS, TAGS, MOVIES = 100_836, 3_683, 9_742


def _load(db: Path) -> dict[str, LoadReport]:
    source = resolve_source(MOVIELENS)
    assert source.kind == "movielens"
    reports = ingest(
        db,
        source.events,
        sorted(DEFAULT_LABEL_WEIGHTS),
        NOW,
        items_path=source.items,
        events_reader=source.events_reader,
        items_reader=source.items_reader,
    )
    return {r.target: r for r in reports}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, LoadReport]]:
    db = tmp_path_factory.mktemp("movielens") / "w.duckdb"
    return db, _load(db)


def _fetch(db: Path, sql: str) -> list[tuple]:
    with warehouse(db, read_only=True) as con:
        return con.execute(sql).fetchall()


def test_every_rating_and_tag_is_an_event(loaded) -> None:
    db, reports = loaded
    events = reports["events"]
    assert events.read == events.accepted == RATINGS + TAGS
    assert events.quarantined == events.duplicates == 0 and events.balanced
    counts = dict(_fetch(db, "SELECT event_type, count(*) FROM events GROUP BY 1"))
    assert counts == {"rating": RATINGS, "tag": TAGS}
    assert _fetch(db, "SELECT count(*) FROM quarantine") == [(0,)]


def test_rating_value_is_the_stars_and_time_is_utc(loaded) -> None:
    db, _ = loaded
    # ratings.csv, first row: 1,1,4.0,964982703
    row = _fetch(
        db,
        "SELECT value, event_timestamp FROM events "
        "WHERE user_id = '1' AND item_id = '1' AND event_type = 'rating'",
    )
    assert row == [(4.0, datetime(2000, 7, 30, 18, 45, 3))]
    stars = _fetch(
        db,
        "SELECT min(value), max(value), count(value), count(DISTINCT value) "
        "FROM events WHERE event_type = 'rating'",
    )
    assert stars == [(0.5, 5.0, RATINGS, 10)]
    assert _fetch(db, "SELECT count(value) FROM events WHERE event_type = 'tag'") == [(0,)]


def test_movies_are_items_with_genres_and_release_year(loaded) -> None:
    db, reports = loaded
    items = reports["items"]
    assert items.read == items.accepted == MOVIES and items.balanced
    assert _fetch(db, "SELECT count(*) FROM items") == [(MOVIES,)]
    toy_story = _fetch(
        db,
        "SELECT category, primary_category, created_at, available FROM items WHERE item_id = '1'",
    )
    assert toy_story == [
        ("Adventure|Animation|Children|Comedy|Fantasy", "Adventure", datetime(1995, 1, 1), True)
    ]
    # "(no genres listed)" is no category; a title without a year has no created_at.
    assert _fetch(
        db, "SELECT count(*) - count(category), count(*) - count(created_at) FROM items"
    ) == [(34, 13)]
    assert _fetch(db, "SELECT created_at FROM items WHERE item_id = '40697'") == [(None,)]
    # Every rated or tagged movie is in the catalogue.
    assert _fetch(db, "SELECT count(*) FROM events ANTI JOIN items USING (item_id)") == [(0,)]


def test_a_second_load_adds_nothing(loaded) -> None:
    db, _ = loaded
    again = _load(db)
    assert again["events"].accepted == 0
    assert again["events"].duplicates == RATINGS + TAGS and again["events"].balanced
    assert _fetch(
        db,
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM items), "
        "(SELECT count(*) FROM quarantine)",
    ) == [(RATINGS + TAGS, MOVIES, 0)]
