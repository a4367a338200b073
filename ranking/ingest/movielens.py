"""MovieLens folders (the ml-latest-small / ml-latest layout) as contract events and items.

Ratings become ``rating`` events with the stars as ``value``, tags become ``tag`` events,
movies become items with the genres as categories and the release year (from the title)
as ``created_at``.
"""

from __future__ import annotations

from pathlib import Path

from ranking.warehouse import quote

MOVIELENS_FILES = ("ratings.csv", "movies.csv")


def is_movielens(path: Path) -> bool:
    """A folder in the MovieLens layout (``ratings.csv`` and ``movies.csv``)."""
    path = Path(path)
    return path.is_dir() and all((path / name).is_file() for name in MOVIELENS_FILES)


def movielens_events_reader(path: Path) -> str:
    """``ratings.csv`` as ``rating`` events (value = stars), ``tags.csv`` as ``tag`` events."""
    p = quote(str(path))
    if path.name == "tags.csv":
        return (
            # Several tags by one user on one movie in the same second are distinct events.
            "(SELECT md5(concat_ws('|', userId, movieId, tag, timestamp)) AS event_id, "
            "userId::VARCHAR AS user_id, movieId::VARCHAR AS item_id, "
            "'tag' AS event_type, timestamp::VARCHAR AS event_timestamp, NULL AS value, "
            f"NULL AS session_id, NULL AS position FROM read_csv({p}, all_varchar = true))"
        )
    return (
        "(SELECT NULL AS event_id, userId AS user_id, movieId AS item_id, 'rating' AS event_type, "
        "timestamp AS event_timestamp, rating AS value, NULL AS session_id, NULL AS position "
        f"FROM read_csv({p}, all_varchar = true))"
    )


def movielens_items_reader(path: Path) -> str:
    """``movies.csv`` as items: genres are the categories, the release year is created_at."""
    p = quote(str(path))
    year = r"regexp_extract(trim(title), '\((\d{4})\)$', 1)"
    return (
        "(SELECT movieId AS item_id, "
        "CASE WHEN genres = '(no genres listed)' THEN NULL ELSE genres END AS category, "
        f"CASE WHEN {year} <> '' THEN {year} || '-01-01' END AS created_at, "
        f"NULL AS price, 'true' AS available FROM read_csv({p}, all_varchar = true))"
    )


def movielens_files(path: Path) -> tuple[list[Path], Path]:
    """(event files, items file) of a MovieLens folder."""
    path = Path(path)
    events = [path / "ratings.csv"] + ([path / "tags.csv"] if (path / "tags.csv").exists() else [])
    return events, path / "movies.csv"
