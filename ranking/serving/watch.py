"""What a running service keeps current off the request path: the champion and the
publication (:class:`Watch`), and the warm-up before its first request."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from datetime import datetime

from ranking import backends
from ranking.publishing import aliases, models
from ranking.retrieval.published import PublishedCandidates, load_published
from ranking.serving.ranker import rank_request
from ranking.settings import Settings
from ranking.training.tracking import client_for

logger = logging.getLogger(__name__)


class Watch:
    """What every request reads, kept current off the request path: the champion (reloaded
    when the alias moves; the alias is re-read only when the registry's SQLite files
    changed, as any registry write does) and the publication (read into memory when a new
    one appears). A background thread refreshes both every ``serving.refresh_seconds``;
    requests only take the references, so a request sees one whole model and a promotion
    or a features run never stalls them."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.settings, self.clock = settings, clock
        self.champion: models.Champion | None = None
        self.published: PublishedCandidates | None = None
        self.client = client_for(settings)
        db = backends.mlflow_sqlite(settings)
        self.files = None if db is None else [db, db.with_name(db.name + "-wal")]
        self.stamp: tuple | None = None
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def _stamp(self) -> tuple | None:
        if self.files is None:
            return None  # a tracking server or PostgreSQL: ask it every time
        return tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in self.files)

    def refresh(self) -> None:
        """Swap in a moved champion and read a new publication, if any. What they loaded
        is then frozen out of the garbage collector's full passes: with the publication
        in memory a full pass walks about half a million objects (about 190 ms with every
        request stalled, measured on the demo home); frozen, about 1 ms. Memory is still
        freed by reference counting when a newer publication or model replaces them."""
        before = (self.champion, self.published)
        gc.disable()  # no full pass over the half-built publication while requests wait
        try:
            self._load()
        finally:
            gc.enable()
        if (self.champion, self.published) != before:
            gc.freeze()

    def _load(self) -> None:
        stamp = self._stamp()
        if stamp is None or stamp != self.stamp:
            name = self.settings.publishing.model_name
            version = aliases.current_champion_version(self.client, name)
            if version is None:
                self.champion = None
            elif self.champion is None or self.champion.version != version:
                self.champion = models.load_version(self.settings, version)  # then swapped
            self.stamp = stamp
        self.published = load_published(self.settings, self.clock())

    def _loop(self) -> None:
        while not self.stopping.wait(self.settings.serving.refresh_seconds):
            try:
                self.refresh()
            except Exception as error:  # a registry mid-write: keep serving, retry next tick
                logger.warning("serving: refresh failed, retrying: %s", error)

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="serving-watch", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=10)


def warm_up(settings: Settings, store, watch: Watch, now: datetime) -> None:
    """Rank once for a published user with what ``watch`` loaded (nothing logged), so
    that the first request finds the lookups built and the model's predictor ready."""
    published = watch.published
    if published is None or not published.offsets:
        return
    user = next(iter(published.offsets))
    rank_request(settings, store, watch.champion, user, now, settings.serving.candidate_pool)
