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

from ranking.fingerprint import code_digest, digest, files_state, warehouse_digest
from ranking.settings import Settings
from ranking.training.dataset import SplitTimes
from ranking.training.tracking import (
    PreviousRun,
    client_for,
    code_version,
    evaluation_of,
    is_complete,
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
