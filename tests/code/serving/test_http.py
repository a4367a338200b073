"""The HTTP service before any model exists: health, the 503 before data, the fallback
order of the retrieved candidates and the served log, and request validation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ranking.home import prepare
from ranking.ingest.contract import ingest
from ranking.serving.http import create_app
from ranking.settings import Settings, get_settings
from tests.conftest import NOW

ITEMS = """\
item_id,category,available
i1,a,true
i2,a,true
i3,b,true
i4,c,false
i5,c,true
"""

EVENTS = """\
user_id,item_id,event_type,event_timestamp
u1,i1,click,2026-02-27T09:00:00
u2,i1,click,2026-02-27T09:00:00
u3,i1,click,2026-02-27T09:00:00
u1,i3,click,2026-02-28T09:00:00
u2,i3,purchase,2026-02-28T09:00:00
u1,i2,click,2026-02-28T10:00:00
u1,i4,click,2026-02-28T10:00:00
u2,i4,click,2026-02-28T10:00:00
u3,i4,click,2026-02-28T10:00:00
u4,i4,click,2026-02-28T10:00:00
"""
# Last week's positive events: i1 3, i3 2, i2 1, i5 0; i4 (4) is unavailable.
# Retrieval at NOW (no created_at: an item's first event dates it, so i1, i2, i3 are fresh;
# i5 has neither events nor a date and is never retrieved):
#   popular (recency-weighted): i1 (3 events 2.1 days old), i3 (2, 1.1 days), i2 (1)
#   fresh (positives + 1 / (1 + age in days)): i1, i3, i2
#   trending (two positives or more in the last 3 days): i1, i3
# Reciprocal-rank fusion: i1 3/61, i3 3/62, i2 2/63.


def _served_file(settings: Settings, when: datetime = NOW) -> Path:
    return settings.raw_dir / "served" / f"served-{when:%Y%m%d}.jsonl"


def _app(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, TestClient]:
    """A service on a fresh home; the environment ``prepare`` exports is restored later."""
    monkeypatch.setenv("RANKING_HOME", str(tmp / "home"))
    monkeypatch.setenv("PREFECT_HOME", str(tmp / "home" / "prefect"))
    settings = prepare(get_settings(home=tmp / "home"))
    return settings, TestClient(create_app(settings, clock=lambda: NOW))


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, TestClient]]:
    """A service on a home with neither a warehouse nor a model (nor ``feast apply``)."""
    with pytest.MonkeyPatch.context() as mp:
        yield _app(tmp_path_factory.mktemp("empty"), mp)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, TestClient]]:
    """A service on a home with a small warehouse and no registered model."""
    tmp = tmp_path_factory.mktemp("shop")
    with pytest.MonkeyPatch.context() as mp:
        # Logging, not the deadline, is tested here: a loaded machine must not turn an
        # answer into the deadline's fallback (which is not logged).
        mp.setenv("RANKING_SERVING__DEADLINE_MS", "10000")
        settings, client = _app(tmp, mp)
        (tmp / "events.csv").write_text(EVENTS)
        (tmp / "items.csv").write_text(ITEMS)
        ingest(
            settings.warehouse_path,
            tmp / "events.csv",
            settings.event_types,
            NOW,
            tmp / "items.csv",
        )
        yield settings, client


def _served_lines(settings: Settings) -> list[dict]:
    path = _served_file(settings)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# Without data --------------------------------------------------------------------------


def test_service_starts_without_feast_apply(empty) -> None:
    """Building the app reads the Feast repo but needs no registry: a fresh home serves."""
    settings, client = empty
    assert not (settings.feast_dir / "registry.db").exists()
    assert client.get("/health").status_code == 200


def test_health_is_alive_but_not_ready_without_data(empty) -> None:
    """Liveness says the process answers; readiness names what is missing."""
    _, client = empty
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False and body["model_version"] is None
    assert body["checks"] == {"candidates": False, "online_store": False, "champion": False}


def test_rank_before_any_warehouse_is_503_naming_the_command(empty) -> None:
    settings, client = empty
    response = client.post("/rank", json={"user_id": "u1"})
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "ranking demo" in detail
    assert "ranking ingest" in detail
    assert not settings.warehouse_path.exists()  # asking did not create one
    assert not _served_file(settings).exists()  # nothing was served


# With a warehouse, no model ----------------------------------------------------------


def test_rank_without_a_model_serves_the_retrieval_order(shop) -> None:
    _, client = shop
    response = client.post("/rank", json={"user_id": "newcomer", "k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == "newcomer"
    assert body["model_version"] is None
    assert body["fallback"] == "no champion model registered yet"
    assert [item["item_id"] for item in body["items"]] == ["i1", "i3", "i2"]
    assert [item["rank"] for item in body["items"]] == [1, 2, 3]
    fallback = [item["fallback_score"] for item in body["items"]]
    assert fallback == pytest.approx([3 / 61, 3 / 62, 2 / 63])
    assert {item["score"] for item in body["items"]} == {None}  # no model scored them
    assert [item["category"] for item in body["items"]] == ["a", "b", "a"]
    assert [item["sources"] for item in body["items"]] == [
        "popular,fresh,trending",
        "popular,fresh,trending",
        "popular,fresh",
    ]
    assert len(body["request_id"]) == 32


def test_rank_default_k_is_ten_and_capped_by_what_retrieval_proposes(shop) -> None:
    _, client = shop
    body = client.post("/rank", json={"user_id": "newcomer"}).json()
    assert [item["item_id"] for item in body["items"]] == ["i1", "i3", "i2"]  # not i5


def test_rank_leaves_out_what_the_user_consumed(shop) -> None:
    """u2 clicked i1 and bought i3: only i2 is left, co-visited with both by u1 (and taken
    by u1, u2's neighbour)."""
    _, client = shop
    body = client.post("/rank", json={"user_id": "u2", "k": 2}).json()
    assert [item["item_id"] for item in body["items"]] == ["i2"]
    assert body["items"][0]["sources"] == "covisit,category,popular,fresh,neighbours"


def test_rank_the_callers_candidates(shop) -> None:
    _, client = shop
    body = client.post("/rank", json={"user_id": "u1", "k": 2, "candidates": ["i5", "i4", "i3"]})
    assert body.status_code == 200
    # u1 clicked i3 (consumed); i4 is unavailable (and clicked): the rules keep both out.
    assert [item["item_id"] for item in body.json()["items"]] == ["i5"]
    assert body.json()["items"][0]["rule"] == "model"
    assert body.json()["dropped"] == {"unavailable": 1, "consumed": 1,
                                      "unanswered_impressions": 0, "category_cap": 0}  # fmt: skip


def test_served_list_is_appended_to_the_days_log(shop) -> None:
    """One JSON line per served item, in the data contract, tagged with the request id;
    each request appends, nothing is overwritten."""
    settings, client = shop
    before = _served_lines(settings)
    first = client.post("/rank", json={"user_id": "logger", "k": 2}).json()
    second = client.post("/rank", json={"user_id": "logger", "k": 3}).json()
    lines = _served_lines(settings)
    assert lines[: len(before)] == before
    new = lines[len(before) :]
    assert len(new) == 5
    assert first["request_id"] != second["request_id"]
    for response, rows in ((first, new[:2]), (second, new[2:])):
        assert [r["item_id"] for r in rows] == [i["item_id"] for i in response["items"]]
        assert [r["position"] for r in rows] == [i["rank"] for i in response["items"]]
        assert {r["session_id"] for r in rows} == {response["request_id"]}
        assert {r["user_id"] for r in rows} == {"logger"}
        assert {r["event_type"] for r in rows} == {"impression"}
        assert {r["event_timestamp"] for r in rows} == {"2026-03-01T12:00:00+00:00"}
    assert sorted(p.name for p in _served_file(settings).parent.iterdir()) == [
        "served-20260301.jsonl"
    ]


def test_served_log_loads_back_with_nothing_rejected(shop, tmp_path: Path) -> None:
    """``ranking ingest <home>/raw/served`` closes the loop: every served line is accepted."""
    settings, client = shop
    client.post("/rank", json={"user_id": "looper", "k": 4})
    lines = _served_lines(settings)
    copy = tmp_path / "warehouse.duckdb"
    (report,) = ingest(copy, settings.raw_dir / "served", settings.event_types, NOW)
    assert report.read == len(lines)
    assert report.accepted == report.read
    assert report.quarantined == 0


# Request validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"user_id": ""},
        {"user_id": "u1", "k": 0},
        {"user_id": "u1", "k": -3},
        {"user_id": "u1", "k": 501},
        {"user_id": "x" * 201},
        {"k": 5},
        {"user_id": "u1", "candidates": "i1"},
    ],
    ids=[
        "empty-user",
        "k-zero",
        "k-negative",
        "k-too-large",
        "user-too-long",
        "no-user",
        "candidates-not-a-list",
    ],
)
def test_invalid_requests_are_422_and_serve_nothing(shop, payload: dict) -> None:
    settings, client = shop
    before = _served_lines(settings)
    response = client.post("/rank", json=payload)
    assert response.status_code == 422
    assert _served_lines(settings) == before
