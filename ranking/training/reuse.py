"""A training run over unchanged inputs is not built again: the version it would
reproduce (training is seeded) is found by a digest of what the training set is made of,
before any of it is built.

The digest covers the warehouse's content, the feature snapshots (by file state: the
features flow leaves them untouched when its own inputs did not change), the registered
definitions, every setting, the split times and the code. Built and trained, the version
carries it as its ``inputs_digest`` tag. The training-set hash (``training_set_hash``)
stays the second check, for inputs that changed but built the same set.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import mlflow
import pandas as pd

from ranking.fingerprint import code_digest, digest, files_state, warehouse_digest
from ranking.settings import Settings
from ranking.training.dataset import SplitTimes
from ranking.training.tracking import (
    client_for,
    code_version,
    frame_hash,
    is_complete,
    training_config,
)

INPUTS_TAG = "inputs_digest"


def training_inputs(settings: Settings, times: SplitTimes) -> str:
    """The digest of everything a training set at ``times`` is built from."""
    definitions = settings.definitions_dir
    return digest(
        warehouse_digest(settings.warehouse_path),
        files_state(list(settings.features_dir.glob("*.parquet"))),
        files_state(list(definitions.rglob("*")) if definitions.exists() else []),
        settings.model_dump(mode="json"),
        times,
        code_version(),
        code_digest(),
    )


def trained_on_inputs(settings: Settings, inputs: str) -> PreviousRun | None:
    """The newest complete version trained from these exact inputs, if any."""
    client = client_for(settings)
    name = settings.publishing.model_name
    found = client.search_model_versions(f"name = '{name}' AND tags.{INPUTS_TAG} = '{inputs}'")
    complete = [mv for mv in found if is_complete(mv)]
    if not complete:
        return None
    newest = max(complete, key=lambda mv: int(mv.version))
    return PreviousRun(str(newest.version), newest.run_id, evaluation_of(settings, newest.version))


@dataclass
class PreviousRun:
    """A version already trained on the same training set by the same code."""

    version: str
    run_id: str
    table: pd.DataFrame


def previous_run(settings: Settings, frame: pd.DataFrame) -> PreviousRun | None:
    """The version a rerun would reproduce (training is seeded), with its evaluation."""
    version = version_trained_on(
        settings, frame_hash(frame), code_version(), training_config(settings)
    )
    if version is None:
        return None
    run_id = client_for(settings).get_model_version(settings.publishing.model_name, version).run_id
    return PreviousRun(version, run_id, evaluation_of(settings, version))


def version_trained_on(
    settings: Settings, training_set_hash: str, code: str, config: str
) -> str | None:
    """The newest version trained on this exact training set by this exact code with these
    training settings, if any.

    Training is seeded, so such a version is what training again would produce.
    """
    client = client_for(settings)
    name = settings.publishing.model_name
    found = client.search_model_versions(
        f"name = '{name}' AND tags.training_set_hash = '{training_set_hash}'"
    )
    same = [mv for mv in found if mv.tags.get("code_version") == code and code != "unknown"
            and mv.tags.get("training_config") == config and is_complete(mv)]  # fmt: skip
    return str(max(int(mv.version) for mv in same)) if same else None


def evaluation_of(settings: Settings, version: str) -> pd.DataFrame:
    """The evaluation table logged with a version's training run."""
    client = client_for(settings)
    run_id = client.get_model_version(settings.publishing.model_name, version).run_id
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/evaluation.csv")
    return pd.read_csv(io.StringIO(text), index_col=0)
