"""The service's guards that are not ranking: Prometheus metrics (one set per process)
and the request body limit (ASGI middleware)."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The service's Prometheus metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ranking_requests", "Ranking calls by HTTP status.",
                                ["status"], registry=self.registry)  # fmt: skip
        self.latency = Histogram(
            "ranking_request_seconds", "Time to answer a ranking call.", registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )  # fmt: skip
        self.work = Histogram(
            "ranking_work_seconds", "Time a worker spent ranking (the rest is waiting).",
            registry=self.registry, buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )  # fmt: skip
        self.fallbacks = Counter("ranking_fallbacks", "Lists served without the model's order.",
                                 ["reason"], registry=self.registry)  # fmt: skip
        self.in_flight = Gauge("ranking_in_flight", "Ranking calls being worked on.",
                               registry=self.registry)  # fmt: skip
        self.model = Gauge("ranking_model_version", "Champion version of the last call.",
                           registry=self.registry)  # fmt: skip


_metrics_of_process: list[Metrics] = []


def process_metrics() -> Metrics:
    """The metrics, one set per process as Prometheus clients expect. (Importing Feast may
    switch prometheus_client to multi-process values, under which two metrics of one name
    in one process share their value whatever registry holds them: a set per app would
    only pretend to be separate.)"""
    if not _metrics_of_process:
        _metrics_of_process.append(Metrics())
    return _metrics_of_process[0]


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is refused with 413 before the
    app reads it, whether it announces its length (Content-Length) or streams in chunks."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await self._refuse(scope, receive, send)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send) -> None:
        answer = JSONResponse({"detail": f"body over {self.limit} bytes"}, status_code=413)
        await answer(scope, receive, send)


def fallback_reason(fallback: str | None) -> str:
    if fallback is None:
        return ""
    for key in ("deadline", "no champion", "no features online", "no candidate"):
        if key in fallback:
            return key.replace(" ", "_")
    return "other"
