"""HTTP ranking service (FastAPI): the same ranking as ``ranking rank``, over HTTP, built
to keep answering.

- ``POST /rank`` ranks for a user (the retrieved candidates, or the caller's), with the
  online features and the model behind ``models:/<name>@champion``, then the business
  rules. Every served list for a known user is appended to
  ``<home>/raw/served/served-<day>.jsonl`` as impression events in the data contract.
- Bounded work: ``serving.worker_threads`` threads rank (one by default: ranking is
  Python, and threads under one interpreter lock only take turns), at most
  ``serving.max_in_flight`` calls are held, running or waiting; one more is refused at
  once with 503 and ``Retry-After`` (no queue that grows under load). uvicorn's
  ``limit_concurrency`` (``serving.max_connections``) refuses connections past it. A call
  past ``serving.deadline_ms`` is answered with the fallback order of its candidates and
  says so; work it abandoned while running still counts against the bound until it ends.
- A warehouse held by a writer (an ingest) never gives a 500: serving reads the
  publication, and where it must read the warehouse, a lock answers 503 and Retry-After.
- ``GET /health`` says the process lives; ``GET /ready`` whether the candidates, the online
  store and a champion are really there (503 otherwise); ``GET /metrics`` is Prometheus.
- With ``serving.api_token`` set, ``/rank`` and ``/metrics`` need ``Authorization: Bearer
  <token>`` (compared in constant time). Requests are bounded (body size, k, number and
  length of ids) and a 422 names the field, never echoing what was sent.

The champion and the publication are kept current by a background thread (see
:class:`ranking.serving.watch.Watch`) and swapped whole, so a request sees one model and
never waits for them.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime

import duckdb
import pandas as pd
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    generate_latest,
)
from pydantic import BaseModel, Field

from ranking import backends
from ranking.features.store import get_store
from ranking.retrieval.published import PublishedCandidates, load_published
from ranking.schema import SERVED_LOG_PREFIX, SERVED_LOG_SUFFIX
from ranking.serving.guards import BodyLimit, fallback_reason, process_metrics
from ranking.serving.ranker import (
    RANKED_COLUMNS,
    RankedList,
    items_as_records,
    rank_for_user,
    rank_request,
    served_impressions,
)
from ranking.serving.watch import Watch, warm_up
from ranking.settings import Settings

logger = logging.getLogger(__name__)

#: Hard bounds of the request model; the settings may only tighten them.
MAX_K, MAX_ID = 500, 10_000


class RankRequest(BaseModel):
    user_id: str = Field(min_length=1, max_length=MAX_ID)
    k: int = Field(default=10, ge=1, le=MAX_K)
    candidates: list[str] | None = Field(
        default=None, description="Item ids to rank; default: the retrieved candidates."
    )


class RankedItem(BaseModel):
    rank: int
    item_id: str
    category: str
    score: float | None = Field(description="The model's score; empty when it did not rank.")
    fallback_score: float | None = Field(
        default=None, description="What ordered the list when no model could: retrieval's "
        "fused score, or last week's popularity for a caller's own candidates.")  # fmt: skip
    sources: str = Field(default="", description="The retrieval sources that proposed it.")
    rule: str = Field(
        default="model",
        description="What placed it: 'model' (the score order), 'fresh_slot', "
        "'category_cap_fill', 'unanswered_fill' (see the business rules) or 'explore'.",
    )
    propensity: float = Field(
        default=1.0, description="The probability the policy showed this item at this "
        "place (below 1 only with exploration, serving.exploration).")  # fmt: skip


class RankResponse(BaseModel):
    request_id: str
    user_id: str
    model_version: str | None
    fallback: str | None
    items: list[RankedItem]
    dropped: dict[str, int] = Field(
        default_factory=dict, description="Candidates each business rule kept out of the list."
    )
    unknown_items: list[str] = Field(
        default_factory=list, description="Caller's ids no catalogue or event knows: not ranked."
    )


class _Busy(Exception):
    """The call cannot be served now; the client should retry."""


def create_app(settings: Settings, clock: Callable[[], datetime]) -> FastAPI:
    """The service for one home; ``clock`` gives the request time (naive UTC). Built
    warm: the champion and the publication are read, and one list ranked, before the first
    request; while the app runs (its lifespan) a thread keeps both current."""
    serving = settings.serving
    watch = Watch(settings, clock)
    store = get_store(settings)
    watch.refresh()
    warm_up(settings, store, watch, clock())

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        watch.start()
        try:
            yield
        finally:
            watch.stop()
            workers.shutdown(wait=False, cancel_futures=True)
            gc.unfreeze()  # what the app held may go now

    app = FastAPI(title="ranking", description="Rank items for a user with the champion.",
                  lifespan=lifespan)  # fmt: skip
    served_dir = settings.raw_dir / "served"
    served_dir.mkdir(parents=True, exist_ok=True)
    write_lock = threading.Lock()
    metrics = process_metrics()
    workers = ThreadPoolExecutor(max_workers=serving.worker_threads, thread_name_prefix="rank")
    busy = {"calls": 0}  # changed on the event loop only
    token = serving.api_token.get_secret_value().encode() if serving.api_token else None

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The field and the reason, never the input: it may be large or someone else's.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type")}
                  for e in exc.errors()]  # fmt: skip
        return JSONResponse({"detail": errors}, status_code=422)

    app.add_middleware(BodyLimit, limit=serving.max_body_bytes)

    def require_token(authorization: str = Header(default="")) -> None:
        """With a token configured, the route needs ``Authorization: Bearer <token>``
        (a route dependency, so a path prefix at a proxy cannot route around it)."""
        if token is not None and not hmac.compare_digest(
            authorization.encode(), b"Bearer " + token
        ):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        """Readiness: the publication (candidates and features), the online store's
        tables and a champion are there."""
        checks = {
            "candidates": load_published(settings, clock()) is not None,
            "online_store": _online_store_ready(settings),
        }
        champion = watch.champion
        checks["champion"] = champion is not None
        body = {"ready": all(checks.values()), "checks": checks,
                "model_version": champion.version if champion else None}  # fmt: skip
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics", dependencies=[Depends(require_token)])
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def check_limits(request: RankRequest) -> None:
        ids = [request.user_id, *(request.candidates or [])]
        if request.candidates is not None and len(request.candidates) > serving.max_candidates:
            raise HTTPException(422, f"candidates: more than {serving.max_candidates} ids")
        if any(len(i) > serving.max_id_length or not i for i in ids):
            raise HTTPException(422, f"ids must be 1 to {serving.max_id_length} characters")

    def rank_now(request: RankRequest, now: datetime) -> tuple[RankedList, list[str]]:
        with metrics.work.time():
            return _rank_now(request, now)

    def _rank_now(request: RankRequest, now: datetime) -> tuple[RankedList, list[str]]:
        items, unknown = _known_candidates(load_published(settings, now), request.candidates)
        if items == []:
            empty = pd.DataFrame(columns=RANKED_COLUMNS)
            return RankedList(request.user_id, empty, None, "no candidate items"), unknown
        try:
            ranked = rank_request(settings, store, watch.champion, request.user_id, now,
                                  request.k, items)  # fmt: skip
        except duckdb.IOException as error:  # a writer holds the warehouse
            raise _Busy(str(error).splitlines()[0]) from error
        return ranked, unknown

    def deadline_answer(request: RankRequest, now: datetime) -> tuple[RankedList, list[str]]:
        """The fallback order of the same candidates, from the publication only."""
        published = load_published(settings, now)
        if published is None:
            raise _Busy(f"no answer within {serving.deadline_ms:.0f} ms")
        items, unknown = _known_candidates(published, request.candidates)
        if items == []:
            empty = pd.DataFrame(columns=RANKED_COLUMNS)
            return RankedList(request.user_id, empty, None, "no candidate items"), unknown
        candidates = (published.for_items(request.user_id, items) if items
                      else published.for_user(request.user_id, serving.candidate_pool))  # fmt: skip
        ranked = rank_for_user(None, None, candidates, request.user_id, now, request.k, serving)
        order = "last week's popularity" if items else "retrieval's fused order"
        ranked.fallback = f"deadline of {serving.deadline_ms:.0f} ms passed: {order}"
        ranked.user_known = published.knows_user(request.user_id)
        return ranked, unknown

    def release(_: object) -> None:
        busy["calls"] -= 1
        metrics.in_flight.set(busy["calls"])

    @app.post("/rank", response_model=RankResponse, dependencies=[Depends(require_token)])
    async def rank(request: RankRequest) -> RankResponse:
        started = time.perf_counter()
        try:
            response = await _rank(request)
        except HTTPException as error:
            metrics.requests.labels(str(error.status_code)).inc()
            raise
        metrics.requests.labels("200").inc()
        metrics.latency.observe(time.perf_counter() - started)
        return response

    async def _rank(request: RankRequest) -> RankResponse:
        check_limits(request)
        if not settings.warehouse_path.exists():
            raise HTTPException(503, "no warehouse yet: run `ranking demo` or `ranking ingest`")
        if busy["calls"] >= serving.max_in_flight:
            raise HTTPException(503, "busy: too many ranking calls at once",
                                headers={"Retry-After": "1"})  # fmt: skip
        now = clock()
        busy["calls"] += 1
        metrics.in_flight.set(busy["calls"])
        queued = workers.submit(rank_now, request, now)
        work = asyncio.wrap_future(queued)
        work.add_done_callback(release)
        try:
            ranked, unknown = await asyncio.wait_for(asyncio.shield(work),
                                                     serving.deadline_ms / 1000)  # fmt: skip
        except TimeoutError:
            # Work still waiting for a thread is dropped (its slot freed now); work
            # already running ends on its own and keeps its slot until then.
            queued.cancel()
            try:
                ranked, unknown = deadline_answer(request, now)
            except _Busy as busy_error:
                raise HTTPException(503, str(busy_error), headers={"Retry-After": "1"}) from None
        except _Busy as busy_error:
            raise HTTPException(503, f"busy: {busy_error}", headers={"Retry-After": "1"}) from None
        if ranked.fallback:
            metrics.fallbacks.labels(fallback_reason(ranked.fallback)).inc()
        if ranked.model_version:
            metrics.model.set(float(ranked.model_version))
        request_id = uuid.uuid4().hex
        if ranked.user_known is not False:  # the log feeds training: no made-up users
            lines = served_impressions(ranked, request_id, now)
            with write_lock, open(served_dir / served_log_name(now), "a") as fh:
                fh.writelines(json.dumps(line) + "\n" for line in lines)
        return RankResponse(
            request_id=request_id,
            user_id=ranked.user_id,
            model_version=ranked.model_version,
            fallback=ranked.fallback,
            items=[RankedItem(**row) for row in items_as_records(ranked.items)],
            dropped=ranked.dropped,
            unknown_items=unknown,
        )

    app.state.metrics = metrics
    return app


def served_log_name(now: datetime) -> str:
    """The day's served log (a name ingest recognises, see ``is_served_log``)."""
    return f"{SERVED_LOG_PREFIX}{now:%Y%m%d}{SERVED_LOG_SUFFIX}"


def _known_candidates(
    published: PublishedCandidates | None, items: list[str] | None
) -> tuple[list[str] | None, list[str]]:
    """The caller's ``items`` the publication knows (None: rank the retrieved candidates;
    an empty list: none known) and the unknown ones, reported instead of ranked. Without a
    publication the warehouse's lookup decides later."""
    if not items or published is None:
        return items or None, []
    known = published.items.index
    unknown = sorted({i for i in items if i not in known})
    return [i for i in items if i in known], unknown


def _online_store_ready(settings: Settings) -> bool:
    """The embedded online store's database holds feature tables (other stores: assumed)."""
    registry, path = backends.feast_registry_file(settings), backends.feast_online_sqlite(settings)
    if registry is not None and not registry.exists():
        return False
    if path is None:
        return True  # Redis
    if not path.exists():
        return False
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            tables = con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
            return tables.fetchone()[0] > 0
    except sqlite3.Error:
        return False
