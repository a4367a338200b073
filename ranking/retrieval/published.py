"""Retrieval published for serving: :func:`retrieve` run once per feature refresh for every
user, so that a ranking call looks its candidates up instead of querying the warehouse.

The features flow calls :func:`publish_candidates` at the newest snapshot time ``at``: the
merged candidates of every user with a relevant event before ``at`` (computed in chunks of
users by the same :func:`retrieve` that builds the training groups), the candidates of a
user with no history (the cold-start list: popularity, fresh, trending), and each item's
category and last week's popularity (the fallback order of a caller's own list). They go
to ``<home>/retrieval/<at>-<digest>/`` as Parquet, and a ``CURRENT`` file names the
newest folder; it is replaced atomically, so a reader sees the old publication or the new
one, never half of one. The folder name holds no absolute path: a home can be moved.

:func:`load_published` reads the current publication into memory (once per publication)
for serving: a user's candidates are then a slice of arrays. A publication is used only
for requests at or after its ``at`` and made with the same retrieval settings; otherwise
serving retrieves live from the warehouse (see ``ranking.serving.candidates``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ranking import progress
from ranking.features.online import ViewTable, read_views
from ranking.retrieval.facts import (
    RULE_COLUMNS,
    add_rule_inputs,
    consumed_pairs,
    item_facts,
    item_rule_inputs,
    unanswered_impressions,
)
from ranking.retrieval.merge import FUSED_SCORE, RETRIEVAL_FEATURES, retrieve
from ranking.schema import UNKNOWN_CATEGORY
from ranking.settings import Settings
from ranking.warehouse import positive_sql

#: The user id the cold-start list is stored under (ingest never accepts an empty id).
COLD_USER = ""
#: Users retrieved per query while publishing (bounds the memory of one chunk).
CHUNK_USERS = 2000
#: The columns of a published candidate row.
PUBLISHED_COLUMNS = ["user_id", "item_id", "category", "sources", *RETRIEVAL_FEATURES]
#: The columns of one user's candidates as a lookup returns them (what serving ranks).
LOOKUP_COLUMNS = ["item_id", "category", "sources", "fallback_score", *RETRIEVAL_FEATURES,
                  *RULE_COLUMNS]  # fmt: skip
CURRENT, MANIFEST = "CURRENT", "manifest.json"
CANDIDATES_FILE, ITEMS_FILE = "candidates.parquet", "items.parquet"
CONSUMED_FILE, UNANSWERED_FILE = "consumed.parquet", "unanswered.parquet"


def retrieval_dir(settings: Settings) -> Path:
    return settings.home / "retrieval"


def retrieval_digest(settings: Settings) -> str:
    """A short hash of what shapes retrieval's output: a publication made with other
    settings is not served. Kept per settings object (a service asks on every request)."""
    known = _digests.get(id(settings))
    if known is not None and known[0] is settings:
        return known[1]
    shape = json.dumps([settings.seed, settings.retrieval.model_dump(mode="json"),
                        settings.events.model_dump(mode="json")], sort_keys=True)  # fmt: skip
    digest = hashlib.sha256(shape.encode()).hexdigest()[:12]
    if len(_digests) >= 16:
        _digests.clear()
    _digests[id(settings)] = (settings, digest)  # the object kept: its id is not reused
    return digest


_digests: dict[int, tuple[Settings, str]] = {}


def _with_category(found: pd.DataFrame, categories: dict[str, str]) -> pd.DataFrame:
    found = found.copy()
    found["category"] = [categories.get(i, UNKNOWN_CATEGORY) for i in found["item_id"]]
    return found[PUBLISHED_COLUMNS]


def _arrow(frame: pd.DataFrame) -> pa.Table:
    fields = [pa.field(c, pa.string()) for c in ("user_id", "item_id", "category", "sources")]
    fields += [pa.field(c, pa.float64()) for c in RETRIEVAL_FEATURES]
    return pa.Table.from_pandas(frame, schema=pa.schema(fields), preserve_index=False)


@dataclass(frozen=True)
class Publication:
    """What :func:`publish_candidates` wrote."""

    path: Path
    at: datetime
    users: int
    rows: int


def feature_entities(
    con: duckdb.DuckDBPyConnection, at: datetime
) -> dict[tuple[str, ...], pd.DataFrame]:
    """Every entity the online store can hold features for at ``at``, by join keys: users
    and items with an event before ``at`` (and catalogue items), and the (user, category)
    pairs of those events (an item's primary category)."""
    query = {
        ("user_id",): "SELECT DISTINCT user_id FROM events WHERE event_timestamp < ?",
        ("item_id",): "SELECT DISTINCT item_id FROM events WHERE event_timestamp < ? "
        "UNION SELECT item_id FROM items",
        ("user_id", "category"): f"""
            SELECT DISTINCT e.user_id, coalesce(i.primary_category, '{UNKNOWN_CATEGORY}')
                   AS category
            FROM events e LEFT JOIN items i USING (item_id) WHERE e.event_timestamp < ?""",
    }
    return {keys: con.execute(sql, [at] if "?" in sql else []).df() for keys, sql in query.items()}


def _view_file(view: str) -> str:
    return f"view_{view}.parquet"


def unchanged_publication(settings: Settings, at: datetime, inputs: str) -> Publication | None:
    """The current publication when it was made at ``at`` from features built from
    ``inputs`` (a :class:`FeatureBuild`'s digest) with today's retrieval settings: what
    publishing again would write."""
    name = current_name(settings)
    if not inputs or name != f"{at:%Y%m%dT%H%M%S}-{retrieval_digest(settings)}":
        return None
    path = retrieval_dir(settings) / name
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("inputs") != inputs:
        return None
    return Publication(path=path, at=at, users=manifest["users"], rows=manifest["rows"])


def publish_candidates(
    con: duckdb.DuckDBPyConnection, settings: Settings, at: datetime, store=None,
    inputs: str = "",
) -> Publication:  # fmt: skip
    """Retrieve at ``at`` for every user with a relevant event before it, and publish;
    with a Feast ``store``, its online features for every entity too (read after the
    materialization of the snapshot at ``at``). ``inputs`` (the features build's digest)
    is kept in the manifest, so an unchanged rerun can keep the publication."""
    users = [u for (u,) in con.execute(
        f"""SELECT DISTINCT e.user_id FROM events e
            WHERE e.event_timestamp < ?::TIMESTAMP AND {positive_sql(settings)} ORDER BY 1""",
        [at],
    ).fetchall()]  # fmt: skip
    digest = retrieval_digest(settings)
    root = retrieval_dir(settings)
    name = f"{at:%Y%m%dT%H%M%S}-{digest}"
    staging = root / f".{name}.staging"
    with _discarded_on_failure(staging):
        facts = item_facts(con, settings, at)
        categories = facts["category"].to_dict()
        rows = 0
        schema = _arrow(pd.DataFrame(columns=PUBLISHED_COLUMNS)).schema
        with pq.ParquetWriter(staging / CANDIDATES_FILE, schema) as writer:
            # The cold-start list first: its user id sorts before every other.
            chunks = [[COLD_USER]] + [
                users[i : i + CHUNK_USERS] for i in range(0, len(users), CHUNK_USERS)
            ]
            for done, chunk in enumerate(chunks):
                progress.advance("retrieval published (user batches)", done, len(chunks))
                found = _with_category(retrieve(con, settings, chunk, at), categories)
                writer.write_table(_arrow(found))
                rows += len(found)
            progress.advance("retrieval published (user batches)", len(chunks), len(chunks))
        facts.reset_index().to_parquet(staging / ITEMS_FILE, index=False)
        consumed_pairs(con, settings, at).to_parquet(staging / CONSUMED_FILE, index=False)
        unanswered_impressions(con, settings, at).to_parquet(staging / UNANSWERED_FILE, index=False)
        views = []
        if store is not None:
            for view, table in read_views(store, feature_entities(con, at)).items():
                table.values.reset_index().to_parquet(staging / _view_file(view), index=False)
                views.append({"view": view, "keys": list(table.keys)})
        manifest = {"at": at.isoformat(), "digest": digest, "users": len(users), "rows": rows,
                    "views": views, "inputs": inputs}  # fmt: skip
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        target = root / name
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    pointer = root / f".{CURRENT}.staging"
    pointer.write_text(name + "\n")
    os.replace(pointer, root / CURRENT)
    _prune(root, keep={name})
    return Publication(path=target, at=at, users=len(users), rows=rows)


@contextmanager
def _discarded_on_failure(staging: Path) -> Iterator[None]:
    """``staging`` created empty for the block, and removed if the block raises (an
    interrupt included): a failed publication leaves nothing behind."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _prune(root: Path, keep: set[str], previous: int = 1) -> None:
    """Drop old publications, keeping the current one and the ``previous`` newest others
    (a reader may still be loading one)."""
    old = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    old = [p for p in old if p.name not in keep]
    for path in old[: max(len(old) - previous, 0)]:
        shutil.rmtree(path, ignore_errors=True)


#: The text columns (read as dictionaries: each distinct string held once in memory).
_TEXT = ("item_id", "category", "sources")


@dataclass(frozen=True)
class PublishedCandidates:
    """A publication in memory: each user's rows are one slice of the column arrays."""

    key: tuple
    at: datetime
    digest: str
    columns: dict[str, np.ndarray]  # PUBLISHED_COLUMNS but user_id, by user then fused score
    offsets: dict[str, tuple[int, int]]
    items: pd.DataFrame  # item_facts: item_id (index), category, created_at, available, ...
    consumed: dict[str, frozenset[str]]
    unanswered: dict[str, dict[str, int]]
    views: dict[str, ViewTable]  # online features read from Feast (empty: none published)

    def _rows(self, user_id: str, pool: int | None = None) -> pd.DataFrame:
        # A user with no relevant event before ``at`` gets the cold-start list.
        start, stop = self.offsets.get(user_id, self.offsets.get(COLD_USER, (0, 0)))
        stop = stop if pool is None else min(stop, start + pool)
        return pd.DataFrame({name: values[start:stop] for name, values in self.columns.items()})

    def knows_user(self, user_id: str) -> bool:
        """Whether the user had a relevant event, or has features online, before ``at``."""
        if user_id in self.offsets and user_id != COLD_USER:
            return True
        return any(t.keys == ("user_id",) and user_id in t.values.index
                   for t in self.views.values())  # fmt: skip

    def for_user(self, user_id: str, pool: int) -> pd.DataFrame:
        """The user's best ``pool`` candidates, ``fallback_score`` the fused score, with
        the rule inputs (prepared for every row when the publication was read)."""
        found = self._rows(user_id, pool)
        if user_id not in self.offsets:  # the cold-start list, with this user's own inputs
            found = self._with_rule_inputs(user_id, found)
        return found

    def _with_rule_inputs(self, user_id: str, found: pd.DataFrame) -> pd.DataFrame:
        return add_rule_inputs(found, self.items, self.consumed.get(user_id, frozenset()),
                               self.unanswered.get(user_id, {}))  # fmt: skip

    def for_items(self, user_id: str, item_ids: list[str]) -> pd.DataFrame:
        """The caller's items (each once, sorted by id), their category, last week's
        popularity as ``fallback_score``, and the retrieval features of those the user's
        retrieval proposed (NaN for the others)."""
        ids = sorted(dict.fromkeys(str(i) for i in item_ids))
        known = self.items.reindex(ids)
        given = pd.DataFrame({
            "item_id": ids,
            "category": known["category"].fillna(UNKNOWN_CATEGORY).to_numpy(dtype=object),
            "fallback_score": known["fallback_score"].fillna(0.0).to_numpy(dtype=float),
        })  # fmt: skip
        retrieved = self._rows(user_id)[["item_id", "sources", *RETRIEVAL_FEATURES]]  # a copy
        out = given.merge(retrieved, on="item_id", how="left")
        out["sources"] = out["sources"].fillna("")
        return self._with_rule_inputs(user_id, out)


_loaded: dict[Path, PublishedCandidates] = {}
_loaded_lock = threading.Lock()


def current_name(settings: Settings) -> str | None:
    """The folder name of the current publication, or None."""
    try:
        return (retrieval_dir(settings) / CURRENT).read_text().strip() or None
    except FileNotFoundError:
        return None


def _runs(users: np.ndarray) -> dict[str, tuple[int, int]]:
    """Each user's (start, stop) in ``users``, grouped as they are."""
    if not len(users):
        return {}
    change = np.flatnonzero(users[1:] != users[:-1]) + 1
    starts = np.concatenate([[0], change]).astype(int).tolist()
    stops = np.concatenate([change, [len(users)]]).astype(int).tolist()
    return {users[s]: (s, e) for s, e in zip(starts, stops, strict=True)}


def _per_user(frame: pd.DataFrame, make: Callable) -> dict:
    """``make(items, n)`` over each user's rows: list slices, not a pandas groupby (which
    holds the interpreter a quarter of a second here, stalling the requests beside it)."""
    frame = frame.sort_values("user_id", kind="stable")
    items = frame["item_id"].tolist()
    n = frame["n"].tolist() if "n" in frame else items
    runs = _runs(frame["user_id"].to_numpy(dtype=object))
    return {user: make(items[s:e], n[s:e]) for user, (s, e) in runs.items()}


def _read(path: Path, key: tuple) -> PublishedCandidates:
    manifest = json.loads((path / MANIFEST).read_text())
    frame = pq.read_table(path / CANDIDATES_FILE, read_dictionary=list(_TEXT)).to_pandas()
    users = frame.pop("user_id").to_numpy(dtype=object)
    offsets = _runs(users)
    columns = {c: frame[c].to_numpy(dtype=object if c in _TEXT else np.float64)
               for c in frame.columns}  # fmt: skip
    items = pd.read_parquet(path / ITEMS_FILE).set_index("item_id")
    consumed = pd.read_parquet(path / CONSUMED_FILE)
    unanswered = pd.read_parquet(path / UNANSWERED_FILE)
    # Every row's fallback score and rule inputs, once: a lookup then only slices.
    columns["fallback_score"] = columns[FUSED_SCORE]
    rows = pd.MultiIndex.from_arrays([users, columns["item_id"]])
    consumed_rows = pd.MultiIndex.from_frame(consumed[["user_id", "item_id"]])
    shown = unanswered.set_index(["user_id", "item_id"])["n"]
    columns.update(item_rule_inputs(items, columns["item_id"]))
    columns["consumed"] = rows.isin(consumed_rows)
    columns["unanswered_impressions"] = shown.reindex(rows).fillna(0).to_numpy(dtype=np.int64)
    columns = {name: columns[name] for name in LOOKUP_COLUMNS}  # a slice is served as is
    views = {}
    for view in manifest.get("views", []):
        values = pd.read_parquet(path / _view_file(view["view"]))
        keys = tuple(view["keys"])
        table = ViewTable(view["view"], keys, values.set_index(list(keys)))
        table.take([]), table.columns  # builds the lookups now, not in the first request
        views[view["view"]] = table
    return PublishedCandidates(
        key=key,
        at=datetime.fromisoformat(manifest["at"]),
        digest=manifest["digest"],
        columns=columns,
        offsets=offsets,
        items=items,
        consumed=_per_user(consumed, lambda items, _: frozenset(items)),
        unanswered=_per_user(unanswered, lambda items, n: dict(zip(items, n, strict=True))),
        views=views,
    )


def load_published(settings: Settings, at: datetime) -> PublishedCandidates | None:
    """The current publication, when it may serve a request at ``at`` (made at or before
    ``at``, with these retrieval settings); None otherwise. Read once per publication."""
    name = current_name(settings)
    if name is None:
        return None
    path = retrieval_dir(settings) / name
    try:
        key = (name, (path / MANIFEST).stat().st_mtime_ns)
        published = _loaded.get(path)
        in_memory = next(iter(_loaded.values()), None)
        # A new publication is read by one thread; meanwhile the others go on with the
        # one in memory (a service's requests never wait for a features run's output).
        if (published is None or published.key != key) and _loaded_lock.acquire(
            blocking=in_memory is None
        ):
            try:
                published = _loaded.get(path)
                if published is None or published.key != key:
                    published = _read(path, key)
                    _loaded.clear()
                    _loaded[path] = published
            finally:
                _loaded_lock.release()
        elif published is None or published.key != key:
            published = in_memory
    except FileNotFoundError:  # pruned as we looked: the next call reads the new one
        return None
    if published.at > at or published.digest != retrieval_digest(settings):
        return None
    return published
