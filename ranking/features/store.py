"""The Feast feature store: apply the repo, materialize, read features offline and online.

``feast apply`` runs as the real CLI in a child process: Feast imports every file of the
repo as a top-level module, and a fresh process keeps those imports (and the inputs they
read) from going stale between calls in one long-lived process.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from feast import FeatureService, FeatureStore
from pandas.api.types import is_numeric_dtype

from ranking import backends, home
from ranking.errors import FeastError
from ranking.features import families, repo
from ranking.features.definitions import resolve_service
from ranking.features.materialize import MaterializeReport, materialize_newest
from ranking.settings import Settings
from ranking.warehouse import limit


def service_name(settings: Settings) -> str:
    """The concrete feature service of the settings ('latest' resolved to a version)."""
    return resolve_service(settings.features.service, settings.definitions_dir)


def feast_executable() -> str:
    """The ``feast`` CLI installed beside this Python."""
    candidate = Path(sys.executable).parent / "feast"
    return str(candidate) if candidate.exists() else "feast"


def apply_repo(settings: Settings) -> str:
    """Run ``feast apply`` in the feature repo against the configured home (and the
    profile's ``feature_store.yaml``)."""
    home.prepare(settings)
    env = os.environ | backends.feast_env(settings) | repo.RepoInputs.of(settings).to_env()
    done = subprocess.run(
        [feast_executable(), "-f", str(backends.feast_yaml(settings)), "apply"],
        cwd=settings.feature_repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise FeastError(f"feast apply failed in {settings.feature_repo}:\n{tail}")
    return done.stdout


def repo_fingerprint(settings: Settings) -> str:
    """A hash of everything ``feast apply`` reads: the repo files and the feature specs."""
    digest = hashlib.sha256(str(settings.home).encode())
    sources = sorted(settings.feature_repo.glob("*.py")) + sorted(
        settings.feature_repo.glob("*.yaml")
    )
    definitions = sorted(Path(settings.definitions_dir).glob("*.yaml"))
    code = [Path(families.__file__), Path(repo.__file__), backends.feast_yaml(settings)]
    for path in [*sources, *definitions, *code]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(repo.RepoInputs.of(settings).to_env()[repo.INPUTS_ENV].encode())
    digest.update(repr(sorted(backends.feast_env(settings).items())).encode())
    return digest.hexdigest()


def _home_stamp(settings: Settings) -> Path:
    return settings.feast_dir / "registry.home.sha256"


def _home_digest(settings: Settings) -> str:
    return hashlib.sha256(str(settings.home).encode()).hexdigest()


def registry_is_elsewhere(settings: Settings) -> bool:
    """Whether the registry was applied for another home (this one was copied or moved).

    Feast stores absolute paths in ``registry.db``: the Parquet sources and the online
    tables it created. Used as it is, a copy reads the original's files, and the next
    ``feast apply`` tears down the infrastructure the registry lists, which drops the
    original's online tables. Only a digest of the home it was applied for is kept. A
    registry in PostgreSQL (shared profile) belongs to no home folder."""
    registry = backends.feast_registry_file(settings)
    stamp = _home_stamp(settings)
    if registry is None or not registry.exists():
        return False
    return not stamp.exists() or stamp.read_text() != _home_digest(settings)


def apply_if_changed(settings: Settings) -> bool:
    """Run ``feast apply`` unless the registry already holds this exact repo; True if run.

    ``feast apply`` costs several seconds (a child process importing Feast); an unchanged
    repo over an existing registry needs none of it. A registry applied for another home
    is removed first (this home's own copy of it), so the apply starts from nothing and
    never touches the home it came from; the online values copied with the home stay.
    """
    stamp = settings.feast_dir / "applied.sha256"
    registry = backends.feast_registry_file(settings)
    if registry_is_elsewhere(settings):
        registry.unlink()
        stamp.unlink(missing_ok=True)
    fingerprint = repo_fingerprint(settings)
    # A registry in PostgreSQL is taken to hold what the stamp says was applied to it
    # (the stamp digests its URL): `ranking features --force` applies again regardless.
    present = registry is None or registry.exists()
    if present and stamp.exists() and stamp.read_text() == fingerprint:
        return False
    apply_repo(settings)
    stamp.write_text(fingerprint)
    _home_stamp(settings).write_text(_home_digest(settings))
    return True


def get_store(settings: Settings) -> FeatureStore:
    """A :class:`FeatureStore` over the repo, with paths from ``settings.home`` (a registry
    brought along by copying or moving the home is applied again here first)."""
    if registry_is_elsewhere(settings):
        apply_if_changed(settings)
    home.export_env(settings)
    _limit_offline_duckdb()
    return FeatureStore(repo_path=str(settings.feature_repo),
                        fs_yaml_file=backends.feast_yaml(settings))  # fmt: skip


def _limit_offline_duckdb() -> None:
    """Feast's DuckDB offline store runs its point-in-time joins on ibis's default
    backend, an in-memory DuckDB that may take 80 % of the machine and keeps what it
    took: joining 10M random entity rows (in chunks of 250k) grew to 24 GB here and was
    killed. It gets the warehouse's limit instead, and spills past it."""
    import ibis

    backend = ibis.get_backend()
    if backend.name == "duckdb":
        limit(backend.con)


def materialize_latest(
    store: FeatureStore, start: datetime, end: datetime, force: bool = False
) -> MaterializeReport:
    """Load the newest value of every entity with a snapshot in ``[start, end]`` online
    (Feast's rows, written by whole columns; a view whose rows are already there is
    skipped: :mod:`ranking.features.materialize`)."""
    return materialize_newest(store, start, end, force)


def service_features(store: FeatureStore, service_name: str) -> list[str]:
    """Feature names (without view prefix) that a feature service serves, in order."""
    service: FeatureService = store.get_feature_service(service_name)
    return [f.name for projection in service.feature_view_projections for f in projection.features]


class FeatureMemo:
    """Point-in-time feature rows already fetched, for callers that join the same (entity
    keys, timestamp) rows again on unchanged feature tables: the rolling cut-offs of the
    quality benchmark, whose expanding training windows share most of their query groups.

    A row's features depend only on its keys, its timestamp and the feature tables, so a
    remembered row is what Feast would return again. One memo serves one feature service
    on one set of feature tables; the caller keeps it no longer than those.
    """

    KEYS = ("user_id", "item_id", "category", "event_timestamp", "request_timestamp_s")

    def __init__(self) -> None:
        self.rows: pd.DataFrame | None = None

    def join(self, store: FeatureStore, entity_df: pd.DataFrame, service_name: str,
             **fetch) -> pd.DataFrame:  # fmt: skip
        """``entity_df`` with the service's features: Feast fetches only the rows this memo
        has not seen (keys and timestamp only), the rest come from the memo."""
        keys = list(self.KEYS)
        wanted = entity_df[keys].drop_duplicates()
        if self.rows is not None:
            seen = wanted.merge(self.rows[keys], on=keys, how="left", indicator=True)
            wanted = seen.loc[seen["_merge"] == "left_only", keys]
        if len(wanted) or self.rows is None:
            fetched = historical_features(store, wanted.reset_index(drop=True), service_name,
                                          **fetch)  # fmt: skip
            fetched = fetched.astype({"event_timestamp": entity_df["event_timestamp"].dtype})
            both = [fetched] if self.rows is None else [self.rows, fetched]
            self.rows = pd.concat(both, ignore_index=True)
        rest = entity_df.drop(columns=[c for c in self.rows.columns
                                       if c in entity_df.columns and c not in keys])  # fmt: skip
        joined = rest.merge(self.rows, on=keys, how="left")
        joined.index = entity_df.index
        return joined


#: The extra entity column that numbers the distinct rows handed to Feast.
_ROW = "ranking_entity_row"


def historical_features(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    service_name: str,
    chunk_rows: int = 250_000,
    memo: FeatureMemo | None = None,
) -> pd.DataFrame:
    """Point-in-time join of the service's features onto ``entity_df`` (Feast's job).

    Feast joins each group of views that share join keys on the distinct (keys,
    timestamp) rows of ``entity_df`` only (a few thousand users' query times, not one row
    per candidate), in chunks of ``chunk_rows``; the values are then broadcast back to
    every row. A point-in-time row depends on nothing but its keys and timestamp, so this
    is exactly Feast's join of the whole frame, at a fraction of the rows. Numeric
    features come back as float32 (what XGBoost uses anyway). With ``memo``, rows it
    already holds are not fetched again (see :class:`FeatureMemo`).
    """
    if memo is not None:
        return memo.join(store, entity_df, service_name, chunk_rows=chunk_rows)
    joined = entity_df.reset_index(drop=True)
    for keys, refs in _views_by_join_keys(store, service_name).items():
        on = [*keys, "event_timestamp"]
        # Each row's distinct (keys, timestamp) as a number, handed to Feast as an extra
        # entity column (it comes back with the features): the broadcast is then a take,
        # where a merge on the keys cost about a fifth of the join.
        row_of = joined.groupby(on, sort=False, dropna=False).ngroup().to_numpy()
        first = np.unique(row_of, return_index=True)[1]
        distinct = joined.loc[first, on].assign(**{_ROW: np.arange(len(first))})
        parts = []
        for start in range(0, max(len(distinct), 1), chunk_rows):
            chunk = distinct.iloc[start : start + chunk_rows]
            part = store.get_historical_features(entity_df=chunk, features=refs).to_df()
            part = part[[_ROW, *(r.split(":")[1] for r in refs)]]
            numeric = [c for c in part.columns if c != _ROW and is_numeric_dtype(part[c])]
            parts.append(part.astype(dict.fromkeys(numeric, "float32")))  # half, chunk by chunk
        found = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        del parts
        found = found.sort_values(_ROW, ignore_index=True).drop(columns=_ROW)
        if len(found) != len(distinct):
            raise FeastError(f"Feast returned {len(found)} rows for {len(distinct)} entity rows")
        joined = joined.drop(columns=[c for c in found.columns if c in joined])
        broadcast = found.take(row_of).reset_index(drop=True)
        joined = pd.concat([joined, broadcast], axis=1)
    return joined


def _views_by_join_keys(store: FeatureStore, service_name: str) -> dict[tuple, list[str]]:
    """The service's feature references (``view:feature``) grouped by the columns their
    view joins on: its entities' join keys, or an on-demand view's request fields."""
    service = store.get_feature_service(service_name)
    groups: dict[tuple, list[str]] = {}
    for projection in service.feature_view_projections:
        try:
            keys = tuple(store.get_feature_view(projection.name).join_keys)
        except Exception:  # an on-demand view: it joins on its request fields
            view = store.get_on_demand_feature_view(projection.name)
            keys = tuple(f.name for r in view.source_request_sources.values() for f in r.schema)
        refs = [f"{projection.name}:{f.name}" for f in projection.features]
        groups.setdefault(keys, []).extend(refs)
    return groups


def online_features(
    store: FeatureStore, entity_rows: list[dict], service_name: str
) -> pd.DataFrame:
    """Latest feature values for ``entity_rows`` from the online store."""
    service = store.get_feature_service(service_name)
    return store.get_online_features(features=service, entity_rows=entity_rows).to_df()


def materialize_window(snapshots: list[datetime], cadence: timedelta) -> tuple[datetime, datetime]:
    """The window that holds the newest snapshot (what online serving needs)."""
    newest = max(snapshots)
    return newest - cadence / 2, newest + cadence / 2
