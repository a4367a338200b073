"""The serving model, and a fast way to it for one-shot commands.

MLflow's registry is the truth: the alias ``champion`` names the version that serves.
Opening it costs a process about 2 s (importing MLflow, opening its store, resolving
``models:/``), which a ``ranking rank`` pays on every call. So each version loaded
through the registry is also kept in the home (``serving/champion/v<N>/``: the XGBoost
model in its own format and what it needs to serve), and ``serving_champion``
(``ranking.publishing.serving_model``) reads it there when the alias, looked up with one
query on MLflow's local SQLite store, still names that version. A remote tracking
server, a moved alias or a missing copy all go through the registry, so nothing can
serve a version the alias no longer names.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from ranking import backends
from ranking.schema import CHAMPION
from ranking.settings import Settings

MODEL_FILE, META_FILE = "model.ubj", "champion.json"


@dataclass
class Champion:
    """The serving model and what it needs to serve."""

    model: object
    version: str
    feature_service: str
    features: list[str]


def kept_dir(settings: Settings) -> Path:
    return settings.home / "serving" / "champion"


def alias_version(settings: Settings, alias: str = CHAMPION) -> tuple[str, str] | None:
    """(version, run id) that ``alias`` names in the local SQLite tracking store (one
    query, MLflow not imported); None when there is no such store, model or alias."""
    db = backends.mlflow_sqlite(settings)
    if db is None or not db.exists():  # another store (a server, PostgreSQL): through MLflow
        return None
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            row = con.execute(
                "SELECT a.version, v.run_id FROM registered_model_aliases a "
                "JOIN model_versions v USING (workspace, name, version) "
                "WHERE a.name = ? AND a.alias = ?",
                (settings.publishing.model_name, alias),
            ).fetchone()
    except sqlite3.Error:  # another MLflow schema, or a store being created: the slow path
        return None
    return None if row is None else (str(row[0]), str(row[1]))


def kept_champion(settings: Settings) -> Champion | None:
    """The kept copy of the version the alias names now, or None."""
    named = alias_version(settings)
    if named is None:
        return None
    version, run_id = named
    folder = kept_dir(settings) / f"v{version}"
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("run_id") != run_id:  # a registry rebuilt since: same number, other model
        return None
    import xgboost as xgb

    model = xgb.XGBRanker()
    model.load_model(folder / MODEL_FILE)
    model.set_params(n_jobs=1)  # see publishing.models: one thread for a few hundred rows
    return Champion(model, version, meta["feature_service"], meta["features"])


def keep(settings: Settings, champion: Champion, run_id: str) -> None:
    """Keep ``champion`` (made by ``run_id``) in the home, written whole or not at all."""
    folder = kept_dir(settings) / f"v{champion.version}"
    try:
        if json.loads((folder / META_FILE).read_text()).get("run_id") == run_id:
            return
    except (OSError, ValueError):
        pass
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".v{champion.version}-", dir=folder.parent))
    meta = {
        "version": champion.version,
        "run_id": run_id,
        "feature_service": champion.feature_service,
        "features": champion.features,
    }
    try:
        champion.model.save_model(staging / MODEL_FILE)
        (staging / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
        try:
            os.replace(staging, folder)
        except OSError:  # another process kept it first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:  # interrupted or failed: nothing half-written stays
        shutil.rmtree(staging, ignore_errors=True)
        raise
