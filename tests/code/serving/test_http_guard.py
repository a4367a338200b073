"""The HTTP service's guards: the bearer token, the request limits (a 422 never echoes the
input), unknown candidate ids, the served log only for known users, the deadline answer,
readiness, Prometheus metrics, load shedding on a real server and a writer holding the
warehouse. No mock: real DuckDB warehouses, publications, uvicorn and a second process."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ranking.home import prepare
from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.retrieval.published import load_published, publish_candidates
from ranking.serving.http import create_app
from ranking.settings import Settings, get_settings
from ranking.warehouse import warehouse
from tests.code.serving.test_http import EVENTS, ITEMS
from tests.conftest import NOW

pytestmark = pytest.mark.timeout(60)

#: A deadline no test call reaches (ms), for the tests that are not about the deadline.
NO_DEADLINE = 60_000.0
#: What a deadline test waits for: no ranking call answers within a microsecond.
TINY_DEADLINE = 0.001
TOKEN = "s3cret"
#: A string that must never come back in an error answer.
CANARY = "zq-canary-"


# Homes -------------------------------------------------------------------------------------


def _home(tmp: Path, mp: pytest.MonkeyPatch) -> Settings:
    """A prepared home; the environment ``prepare`` exports is restored by ``mp``."""
    mp.setenv("RANKING_HOME", str(tmp / "home"))
    mp.setenv("PREFECT_HOME", str(tmp / "home" / "prefect"))
    return prepare(get_settings(home=tmp / "home", serving={"deadline_ms": NO_DEADLINE}))


def _variant(settings: Settings, **serving: object) -> Settings:
    """The same home with other serving settings (validated: a token becomes a secret)."""
    return get_settings(home=settings.home, serving={**settings.serving.model_dump(), **serving})


@contextmanager
def _client(settings: Settings, **kwargs: object) -> Iterator[TestClient]:
    """A client on one event loop for its whole life, as under uvicorn: the work a deadline
    abandons still releases its slot when it ends."""
    with TestClient(create_app(settings, clock=lambda: NOW), **kwargs) as client:
        yield client


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A home with neither a warehouse, a publication, a Feast registry nor a model."""
    with pytest.MonkeyPatch.context() as mp:
        yield _home(tmp_path_factory.mktemp("empty"), mp)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The tiny shop of test_http, its retrieval published at NOW; no Feast apply, no model.

    Published candidates (fused order): u4 i3, i1, i2; a user no event knows: i1, i3, i2."""
    tmp = tmp_path_factory.mktemp("published")
    with pytest.MonkeyPatch.context() as mp:
        settings = _home(tmp, mp)
        (tmp / "events.csv").write_text(EVENTS)
        (tmp / "items.csv").write_text(ITEMS)
        ingest(settings.warehouse_path, tmp / "events.csv", settings.event_types, NOW,
               tmp / "items.csv")  # fmt: skip
        with warehouse(settings.warehouse_path, read_only=True) as con:
            publish_candidates(con, settings, NOW)
        yield settings


@pytest.fixture(scope="module")
def client(published: Settings) -> Iterator[TestClient]:
    """The service on the published shop, no token, default limits, no deadline."""
    with _client(published) as c:
        yield c


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, small_data: synth.SynthData
) -> Iterator[Settings]:
    """A home with the generated data (about 20k events) and NO publication: every call
    retrieves live from the warehouse (about 100 ms)."""
    tmp = tmp_path_factory.mktemp("live")
    with pytest.MonkeyPatch.context() as mp:
        settings = _home(tmp, mp)
        paths = synth.write(small_data, tmp / "raw")
        ingest(settings.warehouse_path, paths["events"], settings.event_types, NOW,
               paths["items"])  # fmt: skip
        yield settings


def _served(settings: Settings) -> list[dict]:
    path = settings.raw_dir / "served" / f"served-{NOW:%Y%m%d}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _ids(response: httpx.Response) -> list[str]:
    return [item["item_id"] for item in response.json()["items"]]


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text as {(sample name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _grown(before: dict, after: dict) -> dict[tuple[str, tuple], float]:
    """How much each sample grew (the metrics are the process's, shared by every app)."""
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


# 1. The bearer token -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(published: Settings) -> Iterator[TestClient]:
    with _client(_variant(published, api_token=TOKEN)) as c:
        yield c


def _call(client: TestClient, path: str, headers: dict[str, str]) -> httpx.Response:
    if path == "/rank":
        return client.post("/rank", json={"user_id": "u4", "k": 2}, headers=headers)
    return client.get(path, headers=headers)


@pytest.mark.parametrize("path", ["/rank", "/metrics"])
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        TOKEN,
        f"Basic {TOKEN}",
        f"Bearer  {TOKEN}",
        "Bearer ",
    ],  # fmt: skip
    ids=["none", "wrong", "longer", "shorter", "no-scheme", "basic", "two-spaces", "empty"],
)
def test_without_the_right_token_rank_and_metrics_are_401(
    published: Settings, guarded: TestClient, path: str, authorization: str | None
) -> None:
    before = _served(published)
    headers = {} if authorization is None else {"Authorization": authorization}
    response = _call(guarded, path, headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in response.text
    assert _served(published) == before  # nothing was ranked


@pytest.mark.parametrize("path", ["/rank", "/metrics"])
def test_with_the_token_rank_and_metrics_answer(guarded: TestClient, path: str) -> None:
    response = _call(guarded, path, {"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    if path == "/rank":
        assert _ids(response) == ["i3", "i1"]
    else:
        assert "ranking_requests_total" in response.text


def test_health_and_ready_need_no_token(guarded: TestClient) -> None:
    assert guarded.get("/health").status_code == 200
    assert guarded.get("/health").json() == {"status": "ok"}
    ready = guarded.get("/ready")
    assert ready.status_code == 503  # not ready (no champion), but not 401
    assert ready.json()["checks"]["candidates"] is True


def test_without_a_token_configured_rank_needs_no_header(client: TestClient) -> None:
    assert client.post("/rank", json={"user_id": "u4", "k": 1}).status_code == 200


def test_the_token_is_required_under_a_root_path(published: Settings) -> None:
    with _client(_variant(published, api_token=TOKEN), root_path="/api") as c:
        assert c.post("/api/rank", json={"user_id": "u4"}).status_code == 401
        assert c.get("/api/metrics").status_code == 401


# 2. Request limits ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(published: Settings) -> Iterator[TestClient]:
    settings = _variant(published, max_candidates=3, max_id_length=20, max_body_bytes=20_000)
    with _client(settings) as c:
        yield c


def test_requests_at_the_limits_are_served(limited: TestClient) -> None:
    """Exactly max_candidates ids, ids of exactly max_id_length characters: accepted."""
    response = limited.post("/rank", json={"user_id": "u" * 20, "candidates": ["i1", "i2", "i3"]})
    assert response.status_code == 200
    assert sorted(_ids(response)) == ["i1", "i2", "i3"]
    item = "x" * 20
    response = limited.post("/rank", json={"user_id": "u4", "candidates": ["i1", item]})
    assert response.status_code == 200
    assert response.json()["unknown_items"] == [item]


OVER_LIMITS = {
    "too-many-candidates": {"user_id": "u4", "candidates": [f"{CANARY}{n}" for n in range(4)]},
    "user-id-too-long": {"user_id": CANARY + "u" * 40},
    "item-id-too-long": {"user_id": "u4", "candidates": ["i1", CANARY + "i" * 40]},
    "user-id-past-the-hard-bound": {"user_id": CANARY + "u" * 12_000},
    "k-not-a-number": {"user_id": "u4", "k": CANARY},
    "item-not-a-string": {"user_id": "u4", "candidates": [{CANARY: CANARY + "v"}]},
    "user-id-not-a-string": {"user_id": {CANARY: [CANARY]}},
}


@pytest.mark.parametrize("payload", OVER_LIMITS.values(), ids=OVER_LIMITS.keys())
def test_over_the_limits_is_422_that_echoes_nothing_and_serves_nothing(
    published: Settings, limited: TestClient, payload: dict
) -> None:
    before = _served(published)
    response = limited.post("/rank", json=payload)
    assert response.status_code == 422
    assert CANARY not in response.text
    assert response.json()["detail"]  # says what is wrong
    assert _served(published) == before


def test_a_body_that_is_not_json_is_422_without_an_echo(
    published: Settings, limited: TestClient
) -> None:
    before = _served(published)
    response = limited.post("/rank", content='{"user_id": "' + CANARY,
                            headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 422
    assert CANARY not in response.text
    assert _served(published) == before


def test_a_body_over_max_body_bytes_is_413(published: Settings, limited: TestClient) -> None:
    before = _served(published)
    body = json.dumps({"user_id": "u4", "pad": CANARY + "z" * 20_000})
    response = limited.post("/rank", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert CANARY not in response.text
    assert _served(published) == before


def test_a_chunked_body_over_max_body_bytes_is_413(limited: TestClient) -> None:
    body = json.dumps({"user_id": "u4", "pad": "z" * 50_000}).encode()
    response = limited.post("/rank", content=iter([body]),
                            headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 413


# 3. Unknown candidate ids, 4. the served log ---------------------------------------------------


def test_unknown_candidate_ids_are_reported_never_ranked_nor_logged(
    published: Settings, client: TestClient
) -> None:
    before = len(_served(published))
    response = client.post("/rank", json={"user_id": "u4", "candidates": ["i1", "made-up"]})
    assert response.status_code == 200
    body = response.json()
    assert body["unknown_items"] == ["made-up"]
    assert _ids(response) == ["i1"]
    new = _served(published)[before:]
    assert [line["item_id"] for line in new] == ["i1"]
    assert {line["session_id"] for line in new} == {body["request_id"]}


def test_only_unknown_candidate_ids_give_an_empty_list(
    published: Settings, client: TestClient
) -> None:
    before = len(_served(published))
    response = client.post("/rank", json={"user_id": "u4", "candidates": ["zz", "made-up"]})
    assert response.status_code == 200
    assert response.json()["unknown_items"] == ["made-up", "zz"]
    assert response.json()["items"] == []
    assert _served(published)[before:] == []


def test_a_user_no_event_knows_gets_a_list_but_is_not_logged(
    published: Settings, client: TestClient
) -> None:
    before = _served(published)
    response = client.post("/rank", json={"user_id": "stranger"})
    assert response.status_code == 200
    assert _ids(response) == ["i1", "i3", "i2"]  # the cold-start list, fused order
    assert response.json()["fallback"]
    assert _served(published) == before


def test_a_known_users_list_is_logged(published: Settings, client: TestClient) -> None:
    before = len(_served(published))
    response = client.post("/rank", json={"user_id": "u4"})
    assert response.status_code == 200
    assert _ids(response) == ["i3", "i1", "i2"]
    new = _served(published)[before:]
    assert [line["item_id"] for line in new] == ["i3", "i1", "i2"]
    assert [line["position"] for line in new] == [1, 2, 3]
    assert {(line["user_id"], line["session_id"]) for line in new} == {
        ("u4", response.json()["request_id"])
    }


# 5. The deadline ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hurried(published: Settings) -> Iterator[TestClient]:
    with _client(_variant(published, deadline_ms=TINY_DEADLINE)) as c:
        yield c


def _late(client: TestClient, payload: dict, tries: int = 20) -> httpx.Response:
    """A call answered past the (tiny) deadline, or refused. Almost every call misses a
    microsecond, but one whose work is done by the time the timer fires is answered in
    time (asyncio.wait_for returns a ready result): ask again then."""
    for _ in range(tries):
        response = client.post("/rank", json=payload)
        if response.status_code != 200 or "deadline" in (response.json()["fallback"] or ""):
            return response
    pytest.fail(f"none of {tries} calls passed a {TINY_DEADLINE} ms deadline")


def test_past_the_deadline_the_answer_is_retrievals_fused_order(
    published: Settings, client: TestClient, hurried: TestClient
) -> None:
    before = len(_served(published))
    response = _late(hurried, {"user_id": "u4"})
    assert response.status_code == 200
    body = response.json()
    assert "deadline" in body["fallback"]
    assert body["model_version"] is None
    # The user's published candidates the rules keep, in the publication's (fused) order.
    pool = load_published(published, NOW).for_user("u4", published.serving.candidate_pool)
    kept = pool[pool["available"].astype(bool) & ~pool["consumed"].astype(bool)]
    assert kept["fallback_score"].is_monotonic_decreasing and len(kept) == 3
    assert _ids(response) == kept["item_id"].tolist()
    fallback = [i["fallback_score"] for i in body["items"]]
    assert fallback == pytest.approx(kept["fallback_score"].tolist())
    assert {i["score"] for i in body["items"]} == {None}  # no model scored it
    # The same list the service serves in time without a model.
    assert _ids(response) == _ids(client.post("/rank", json={"user_id": "u4"}))
    # A known user: logged once (the in-time call above logged its own list).
    new = [line for line in _served(published)[before:] if line["session_id"] == body["request_id"]]
    assert [line["item_id"] for line in new] == _ids(response)
    metrics = _samples(hurried.get("/metrics").text)
    assert metrics[("ranking_fallbacks_total", (("reason", "deadline"),))] >= 1


def test_the_deadline_does_not_stick(hurried: TestClient) -> None:
    """The work a deadline abandons releases its slot when it ends: after each call the
    in-flight gauge returns to 0, and more late calls than max_in_flight are served."""
    late = 0
    for _ in range(30):
        response = hurried.post("/rank", json={"user_id": "u3"})
        assert response.status_code == 200
        late += "deadline" in response.json()["fallback"]
        waited = time.monotonic()
        while _samples(hurried.get("/metrics").text)[("ranking_in_flight", ())] != 0:
            assert time.monotonic() - waited < 10, "an abandoned call kept its slot"
            time.sleep(0.005)
        if late > 8:  # past the default max_in_flight: a slot kept per late call would show
            break
    assert late > 8


def test_past_the_deadline_without_a_publication_is_503_retry_after(live: Settings) -> None:
    before = _served(live)
    with _client(_variant(live, deadline_ms=TINY_DEADLINE)) as c:
        response = _late(c, {"user_id": "u000001"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert _served(live) == before


def test_past_the_deadline_the_callers_candidates_are_kept(hurried: TestClient) -> None:
    response = _late(hurried, {"user_id": "u4", "candidates": ["i2", "made-up"]})
    assert response.status_code == 200
    assert set(_ids(response)) <= {"i2"}
    assert response.json()["unknown_items"] == ["made-up"]


def test_past_the_deadline_an_unknown_user_is_not_logged(
    published: Settings, hurried: TestClient
) -> None:
    before = _served(published)
    response = _late(hurried, {"user_id": "deadline-stranger"})
    assert response.status_code == 200
    assert _served(published) == before


# 6. Readiness ---------------------------------------------------------------------------------


def test_an_empty_home_is_not_ready(empty: Settings) -> None:
    with _client(empty) as c:
        assert c.get("/health").json() == {"status": "ok"}
        response = c.get("/ready")
    assert response.status_code == 503
    assert response.json() == {
        "ready": False,
        "checks": {"candidates": False, "online_store": False, "champion": False},
        "model_version": None,
    }


def test_a_publication_makes_candidates_ready_but_not_the_service(
    published: Settings, live: Settings, client: TestClient
) -> None:
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["ready"] is False
    assert response.json()["checks"] == {"candidates": True, "online_store": False,
                                         "champion": False}  # fmt: skip
    with _client(live) as c:  # a warehouse, but nothing published
        assert c.get("/ready").json()["checks"]["candidates"] is False


def test_a_publication_made_after_the_clock_is_not_ready(published: Settings) -> None:
    early = NOW - timedelta(hours=1)
    with TestClient(create_app(published, clock=lambda: early)) as c:
        assert c.get("/ready").json()["checks"]["candidates"] is False


# 7. Metrics -----------------------------------------------------------------------------------


def test_metrics_count_statuses_latency_and_fallbacks(published: Settings) -> None:
    with _client(_variant(published, max_candidates=2)) as c:
        before = _samples(c.get("/metrics").text)
        for user in ("u4", "u3", "stranger"):
            assert c.post("/rank", json={"user_id": user}).status_code == 200
        over = c.post("/rank", json={"user_id": "u4", "candidates": ["i1", "i2", "i3"]})
        assert over.status_code == 422
        after = _samples(c.get("/metrics").text)
    metrics = _grown(before, after)
    assert metrics[("ranking_requests_total", (("status", "200"),))] == 3
    assert metrics[("ranking_requests_total", (("status", "422"),))] == 1
    assert metrics[("ranking_request_seconds_count", ())] == 3
    assert metrics[("ranking_request_seconds_bucket", (("le", "+Inf"),))] == 3
    assert metrics[("ranking_request_seconds_sum", ())] > 0
    assert metrics[("ranking_fallbacks_total", (("reason", "no_champion"),))] == 3
    assert after[("ranking_in_flight", ())] == 0


# 8. Load shedding on a real server ------------------------------------------------------------


@contextmanager
def _serve(settings: Settings) -> Iterator[str]:
    """The service under uvicorn on a free loopback port; its base URL."""
    config = uvicorn.Config(create_app(settings, clock=lambda: NOW), host="127.0.0.1", port=0,
                            log_level="warning", timeout_graceful_shutdown=5)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped before it started"
            assert time.monotonic() - started < 20, "uvicorn did not start within 20 s"
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "uvicorn did not stop"


def _users(settings: Settings, n: int) -> list[str]:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return [u for (u,) in con.execute(
            "SELECT user_id FROM events GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ?", [n]
        ).fetchall()]  # fmt: skip


def test_one_call_too_many_is_refused_at_once_and_the_service_recovers(live: Settings) -> None:
    settings = _variant(live, max_in_flight=1)  # and no deadline
    users = _users(live, 8)
    before = _served(live)
    with _serve(settings) as url:
        with httpx.Client(base_url=url, timeout=20) as http:
            start = _samples(http.get("/metrics").text)
            warm = http.post("/rank", json={"user_id": users[0]})
            assert warm.status_code == 200 and warm.json()["items"]
        barrier = threading.Barrier(len(users), timeout=20)

        def call(user: str) -> httpx.Response:
            with httpx.Client(base_url=url, timeout=20) as http:
                barrier.wait()
                return http.post("/rank", json={"user_id": user})

        with ThreadPoolExecutor(len(users)) as pool:
            burst = list(pool.map(call, users, timeout=40))
        statuses = sorted(r.status_code for r in burst)
        assert set(statuses) <= {200, 503}, statuses
        assert 200 in statuses and 503 in statuses, statuses
        for refused in (r for r in burst if r.status_code == 503):
            assert refused.headers["retry-after"] == "1"
            assert "busy" in refused.json()["detail"]
        with httpx.Client(base_url=url, timeout=20) as http:
            after = http.post("/rank", json={"user_id": users[1]})
            assert after.status_code == 200 and after.json()["items"]
            end = _samples(http.get("/metrics").text)
    metrics = _grown(start, end)
    assert metrics[("ranking_requests_total", (("status", "503"),))] == statuses.count(503)
    assert metrics[("ranking_requests_total", (("status", "200"),))] == statuses.count(200) + 2
    assert end[("ranking_in_flight", ())] == 0
    # The answered calls were logged, the refused ones not (no publication: all logged).
    answered = [warm, *(r for r in burst if r.status_code == 200), after]
    new = _served(live)[len(before) :]
    assert {line["session_id"] for line in new} == {r.json()["request_id"] for r in answered}
    assert len(new) == sum(len(r.json()["items"]) for r in answered)


# 9. A writer holding the warehouse ------------------------------------------------------------


HOLD = """
import sys, time
import duckdb
con = duckdb.connect(sys.argv[1])  # read-write: holds the file's lock, as an ingest does
print("holding", flush=True)
time.sleep(120)
"""


@contextmanager
def _writer_holding(path: Path) -> Iterator[subprocess.Popen]:
    """Another process with the warehouse open read-write, as an ingest has it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the writer did not take the lock within 30 s"
        line = proc.stdout.readline()
        assert line.strip() == "holding", proc.stderr.read() if proc.poll() is not None else line
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_a_held_warehouse_without_a_publication_is_503_not_500(live: Settings) -> None:
    before = _served(live)
    with _client(live) as c, _writer_holding(live.warehouse_path) as writer:
        response = c.post("/rank", json={"user_id": "u000001"})
        assert writer.poll() is None  # still holding when we asked
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "busy" in response.json()["detail"]
    assert _served(live) == before
    with _client(live) as c:  # the writer gone, the same call is served
        assert c.post("/rank", json={"user_id": "u000001"}).status_code == 200


def test_a_held_warehouse_with_a_publication_is_served(
    published: Settings, client: TestClient
) -> None:
    with _writer_holding(published.warehouse_path) as writer:
        response = client.post("/rank", json={"user_id": "u4"})
        with_candidates = client.post("/rank", json={"user_id": "u4", "candidates": ["i2", "i5"]})
        assert writer.poll() is None
    assert response.status_code == 200
    assert _ids(response) == ["i3", "i1", "i2"]
    assert with_candidates.status_code == 200
    assert sorted(_ids(with_candidates)) == ["i2", "i5"]
