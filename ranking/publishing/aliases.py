"""The registry's aliases: ``champion`` (what serves) and ``challenger``, the champion
history, manual promotion and rollback, and listing versions.

Moving an alias is one registry write: a reader resolving ``@champion`` meanwhile gets
the old version or the new one, never nothing.
"""

from __future__ import annotations

import json

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ranking.errors import RegistryError
from ranking.publishing.gate import Decision, OffPolicyEvidence
from ranking.schema import (
    CHALLENGER,
    CHAMPION,
    HEADLINE_METRIC,
    MOST_POPULAR,
    READY_TAG,
    baseline_metric,
    mlflow_key,
    test_metric,
)
from ranking.settings import Settings
from ranking.training.tracking import client_for, is_complete

#: Registered-model tag: JSON list of the versions that were champion, oldest first.
HISTORY_TAG = "champion_history"


def current_champion_version(client: MlflowClient, name: str) -> str | None:
    """The version number carrying ``champion``, or None."""
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def _history(client: MlflowClient, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def set_champion(settings: Settings, version: str, reason: str) -> None:
    """Point ``champion`` at ``version`` and record why, in the version and the history.

    Moving an alias is one registry write: a reader resolving ``@champion`` meanwhile
    gets the old version or the new one, never nothing.
    """
    client = client_for(settings)
    name = settings.publishing.model_name
    client.set_registered_model_alias(name, CHAMPION, version)
    history = _history(client, name)
    if not history or history[-1] != version:
        history.append(version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(name, version, "promotion", reason)
    try:  # a champion is no longer a challenger
        if str(client.get_model_version_by_alias(name, CHALLENGER).version) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    except MlflowException:
        pass


def record_decision(settings: Settings, version: str, decision: Decision) -> None:
    """Act on the gate's decision: ``champion``, or ``challenger`` with the reason."""
    if decision.promote:
        set_champion(settings, version, decision.reason)
        return
    client = client_for(settings)
    name = settings.publishing.model_name
    client.set_registered_model_alias(name, CHALLENGER, version)
    client.set_model_version_tag(name, version, "promotion", decision.reason)


def record_off_policy(
    settings: Settings, run_id: str, version: str, evidence: OffPolicyEvidence | None
) -> None:
    """Keep the off-policy estimates with the version: metrics on its run, a tag on it."""
    if evidence is None:
        return
    client = client_for(settings)
    figures = {}
    for who, est in (("challenger", evidence.challenger), ("champion", evidence.champion)):
        for what in ("value", "low", "high", "effective_rows"):
            figures[f"off_policy_{est.estimator}_{who}_{what}"] = getattr(est, what)
    for key, value in figures.items():
        if value == value:  # NaN says nothing
            client.log_metric(run_id, key, float(value))
    client.set_model_version_tag(settings.publishing.model_name, version, "off_policy",
                                 evidence.describe())  # fmt: skip


def promote(settings: Settings, version: str, reason: str) -> None:
    """Make ``version`` champion by hand; the reason is recorded on the version. An
    unknown version, or one whose registration did not finish, is refused."""
    client = client_for(settings)
    name = settings.publishing.model_name
    try:
        mv = client.get_model_version(name, version)
    except MlflowException:
        raise RegistryError(f"model {name!r} has no version {version}") from None
    if not is_complete(mv):
        raise RegistryError(
            f"model {name!r} version {version} was not completely registered (no "
            f"{READY_TAG!r} tag: its training run stopped while registering); train again"
        )
    set_champion(settings, version, f"promoted by hand: {reason}")


def rollback(settings: Settings, reason: str) -> tuple[str, str]:
    """Move ``champion`` back to the previous champion; returns (from, to) versions."""
    client = client_for(settings)
    name = settings.publishing.model_name
    current = current_champion_version(client, name)
    history = _history(client, name)
    if current is None:
        raise ValueError(f"model {name!r} has no champion to roll back")
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise ValueError(f"champion v{current} is the first champion: nothing to roll back to")
    previous = history[-1]
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(name, current, "rolled_back", reason)
    client.set_model_version_tag(name, previous, "promotion", f"restored by rollback: {reason}")
    return current, previous


def list_versions(settings: Settings) -> pd.DataFrame:
    """Every registered version with its aliases, test metrics and promotion reason."""
    client = client_for(settings)
    rows = []
    aliases: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(
        settings.publishing.model_name
    ).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    for mv in client.search_model_versions(f"name = '{settings.publishing.model_name}'"):
        if not is_complete(mv):
            continue  # still being written, or left by a killed run
        rows.append(
            {
                "version": int(mv.version),
                "aliases": ",".join(sorted(aliases.get(str(mv.version), []))),
                "created": pd.Timestamp(mv.creation_timestamp, unit="ms"),
                "ndcg@10": float(mv.tags.get(mlflow_key(test_metric(HEADLINE_METRIC)), "nan")),
                "baseline ndcg@10": float(
                    mv.tags.get(mlflow_key(baseline_metric(MOST_POPULAR, HEADLINE_METRIC)), "nan")
                ),
                "feature_service": mv.tags.get("feature_service", ""),
                "data_quality": mv.tags.get("data_quality", "").split(":")[0],
                "promotion": mv.tags.get("promotion", ""),
            }
        )
    columns = ["version", "aliases", "created", "ndcg@10", "baseline ndcg@10",
               "feature_service", "data_quality", "promotion"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns).sort_values("version", ignore_index=True)


def describe_version(settings: Settings, version: str) -> dict[str, object]:
    """A version's aliases, tags and its training run's metrics and parameters."""
    client = client_for(settings)
    mv = client.get_model_version(settings.publishing.model_name, version)
    run = client.get_run(mv.run_id)
    return {
        "version": str(mv.version),
        "aliases": sorted(mv.aliases),
        "run_id": mv.run_id,
        "tags": dict(sorted(mv.tags.items())),
        "metrics": dict(sorted(run.data.metrics.items())),
        "params": dict(sorted(run.data.params.items())),
    }


def champion_version(settings: Settings) -> str | None:
    """The version number carrying ``champion`` for these settings, or None."""
    return current_champion_version(client_for(settings), settings.publishing.model_name)
