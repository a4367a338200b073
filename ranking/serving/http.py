"""HTTP ranking service (FastAPI): the same ranking as ``ranking rank``, over HTTP.

``POST /rank`` ranks for a user (candidates from the catalogue, or the caller's), with
online features from Feast and the model behind ``models:/<name>@champion``, and answers
with the items, scores and the model version. Every served list is appended to
``<home>/raw/served/served-<day>.jsonl`` as impression events in the data contract, so
``ranking ingest <home>/raw/served`` feeds what users were shown back into the loop.

The champion is resolved per request (one registry read) and its model reloaded only
when the alias has moved, so a promotion or rollback takes effect at the next request.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from ranking.features.store import get_store
from ranking.publishing import aliases, models
from ranking.serving.ranker import rank_request, served_impressions
from ranking.settings import Settings
from ranking.training.tracking import client_for


class RankRequest(BaseModel):
    user_id: str = Field(min_length=1, max_length=200)
    k: int = Field(default=10, ge=1, le=500)
    candidates: list[str] | None = Field(
        default=None, description="Item ids to rank; default: the retrieved candidates."
    )


class RankedItem(BaseModel):
    rank: int
    item_id: str
    category: str
    score: float
    sources: str = Field(default="", description="The retrieval sources that proposed it.")


class RankResponse(BaseModel):
    request_id: str
    user_id: str
    model_version: str | None
    fallback: str | None
    items: list[RankedItem]


class _ChampionCache:
    """The champion model, reloaded only when the alias points somewhere new."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.champion, self.lock = settings, None, threading.Lock()
        self.client = client_for(settings)  # once: requests only read the alias

    def get(self) -> models.Champion | None:
        version = aliases.current_champion_version(self.client, self.settings.publishing.model_name)
        with self.lock:
            if version is None:
                self.champion = None
            elif self.champion is None or self.champion.version != version:
                self.champion = models.load_version(self.settings, version)
            return self.champion


def create_app(settings: Settings, clock: Callable[[], datetime]) -> FastAPI:
    """The service for one home; ``clock`` gives the request time (naive UTC)."""
    app = FastAPI(title="ranking", description="Rank items for a user with the champion.")
    champions = _ChampionCache(settings)
    store = get_store(settings)
    served_dir = settings.raw_dir / "served"
    served_dir.mkdir(parents=True, exist_ok=True)
    write_lock = threading.Lock()

    @app.get("/health")
    def health() -> dict[str, str | None]:
        champion = champions.get()
        return {"status": "ok", "model_version": champion.version if champion else None}

    @app.post("/rank", response_model=RankResponse)
    def rank(request: RankRequest) -> RankResponse:
        if not settings.warehouse_path.exists():
            raise HTTPException(503, "no warehouse yet: run `ranking demo` or `ranking ingest`")
        now = clock()
        ranked = rank_request(settings, store, champions.get(), request.user_id, now,
                                    request.k, request.candidates)  # fmt: skip
        request_id = uuid.uuid4().hex
        lines = served_impressions(ranked, request_id, now)
        with write_lock, open(served_dir / f"served-{now:%Y%m%d}.jsonl", "a") as fh:
            fh.writelines(json.dumps(line) + "\n" for line in lines)
        return RankResponse(
            request_id=request_id,
            user_id=ranked.user_id,
            model_version=ranked.model_version,
            fallback=ranked.fallback,
            items=[RankedItem(**row) for row in ranked.items.to_dict(orient="records")],
        )

    return app
