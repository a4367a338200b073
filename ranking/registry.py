"""MLflow tracking and the model registry: log runs, register versions, move ``champion``.

Serving and ranking always resolve ``models:/<name>@champion``; no caller names a version.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import mlflow.xgboost  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from ranking.config import PROJECT_ROOT, Settings  # noqa: E402
from ranking.evaluate import ranking_metrics  # noqa: E402

CHAMPION = "champion"


@dataclass
class Champion:
    """The serving model and what it needs to serve."""

    model: object
    version: str
    feature_service: str
    features: list[str]


def client_for(settings: Settings) -> MlflowClient:
    """An MLflow client on the configured tracking store (and the experiment created)."""
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    if client.get_experiment_by_name(settings.experiment_name) is None:
        # Without an explicit location, artifacts would land in ./mlruns of the cwd.
        client.create_experiment(
            settings.experiment_name, artifact_location=settings.mlflow_artifact_location
        )
    return client


def code_version(root: Path = PROJECT_ROOT) -> str:
    """The git commit of the code, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def frame_hash(frame: pd.DataFrame) -> str:
    """A content hash of a training set (rows and columns, order-sensitive)."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def importance_figure(importance: pd.Series, top: int = 25):
    """A horizontal bar chart of feature importance (total gain)."""
    shown = importance.head(top)[::-1]
    fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(shown))))
    ax.barh(shown.index, shown.to_numpy())
    ax.set_xlabel("total gain")
    ax.set_title("XGBoost feature importance")
    fig.tight_layout()
    return fig


def metric_key(name: str) -> str:
    """MLflow metric names cannot hold '@': ``ndcg@10`` is logged as ``ndcg_at_10``."""
    return name.replace("@", "_at_")


def current_champion_version(client: MlflowClient, name: str) -> str | None:
    """The version number carrying ``champion``, or None."""
    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def log_and_register(
    settings: Settings,
    *,
    model,
    features: list[str],
    params: dict,
    metrics: dict[str, float],
    tags: dict[str, str],
    example: pd.DataFrame,
    importance: pd.Series,
    tables: dict[str, pd.DataFrame],
    frames: dict[str, pd.DataFrame] | None = None,
) -> tuple[str, str]:
    """Log a training run and register its model; returns (run id, model version)."""
    client = client_for(settings)
    experiment = client.get_experiment_by_name(settings.experiment_name)
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        mlflow.log_params({k: v for k, v in params.items() if v is not None})
        mlflow.log_metrics({metric_key(k): v for k, v in metrics.items()})
        mlflow.set_tags(tags)
        mlflow.log_dict({"feature_service": tags["feature_service"], "features": features},
                        "features.json")  # fmt: skip
        for name, table in tables.items():
            mlflow.log_text(table.to_csv(index=True), f"{name}.csv")
        for name, frame in (frames or {}).items():  # e.g. the drift reference sample
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{name}.parquet"
                frame.to_parquet(path, index=False)
                mlflow.log_artifact(str(path))
        fig = importance_figure(importance)
        mlflow.log_figure(fig, "feature_importance.png")
        plt.close(fig)
        x = example[features].astype("float32")
        info = mlflow.xgboost.log_model(
            model,
            name="model",
            signature=infer_signature(x, model.predict(x)),
            input_example=x.head(5),
            registered_model_name=settings.model_name,
            model_format="ubj",
        )
        version = str(info.registered_model_version)
    for key in ("feature_service", "data_window", "training_set_hash", "code_version",
                "data_quality"):  # fmt: skip
        if key in tags:
            client.set_model_version_tag(settings.model_name, version, key, tags[key])
    client.set_model_version_tag(settings.model_name, version, "features", json.dumps(features))
    evaluation = [k for k in metrics if k.startswith("test_")]
    for key in [*evaluation, "baseline_most_popular_ndcg@10"]:
        if key in metrics:
            client.set_model_version_tag(
                settings.model_name, version, metric_key(key), f"{metrics[key]:.5f}"
            )
    return run.info.run_id, version


def version_trained_on(settings: Settings, training_set_hash: str, code: str) -> str | None:
    """The newest version trained on this exact training set by this exact code, if any.

    Training is seeded, so such a version is what training again would produce.
    """
    client = client_for(settings)
    found = client.search_model_versions(
        f"name = '{settings.model_name}' AND tags.training_set_hash = '{training_set_hash}'"
    )
    same = [mv for mv in found if mv.tags.get("code_version") == code and code != "unknown"]
    return str(max(int(mv.version) for mv in same)) if same else None


def evaluation_of(settings: Settings, version: str) -> pd.DataFrame:
    """The evaluation table logged with a version's training run."""
    client = client_for(settings)
    run_id = client.get_model_version(settings.model_name, version).run_id
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/evaluation.csv")
    return pd.read_csv(io.StringIO(text), index_col=0)


def load_frame_artifact(settings: Settings, version: str, name: str) -> pd.DataFrame:
    """A Parquet artifact (``<name>.parquet``) logged with a version's training run."""
    client = client_for(settings)
    run_id = client.get_model_version(settings.model_name, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{name}.parquet", dst_path=tmp
        )
        return pd.read_parquet(path)


def _champion(settings: Settings, mv, uri: str) -> Champion:
    return Champion(
        model=mlflow.xgboost.load_model(uri),
        version=str(mv.version),
        feature_service=mv.tags.get("feature_service", settings.feature_service),
        features=json.loads(mv.tags["features"]),
    )


def load_version(settings: Settings, version: str) -> Champion:
    """Load a registered version with its feature service and feature list."""
    mv = client_for(settings).get_model_version(settings.model_name, version)
    return _champion(settings, mv, f"models:/{settings.model_name}/{version}")


def load_champion(settings: Settings) -> Champion | None:
    """The model behind ``models:/<name>@champion``, or None when there is none yet."""
    try:
        mv = client_for(settings).get_model_version_by_alias(settings.model_name, CHAMPION)
    except MlflowException:
        return None
    return _champion(settings, mv, f"models:/{settings.model_name}@{CHAMPION}")


CHALLENGER = "challenger"
#: Registered-model tag: JSON list of the versions that were champion, oldest first.
HISTORY_TAG = "champion_history"


def _history(client: MlflowClient, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def set_champion(settings: Settings, version: str, reason: str) -> None:
    """Point ``champion`` at ``version`` and record why, in the version and the history.

    Moving an alias is one registry write: a reader resolving ``@champion`` meanwhile
    gets the old version or the new one, never nothing.
    """
    client = client_for(settings)
    name = settings.model_name
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


def promote_if_better(
    settings: Settings,
    version: str,
    challenger_ndcg: float,
    champion_ndcg: float | None,
    champion_version: str | None,
    baseline_ndcg: float | None = None,
    quality_failed: str | None = None,
) -> tuple[bool, str]:
    """The gate: make ``version`` champion, or give it ``challenger`` and say why not.

    A version is promoted when the data checks passed (``quality_failed`` is None) and
    either there is no champion and it beats the most-popular baseline
    (``baseline_ndcg``, when given), or it beats the champion's NDCG@10 on the same
    holdout by more than ``promotion_margin``. Returns (promoted, reason); the reason is
    tagged on the version.
    """
    client = client_for(settings)
    margin = settings.promotion_margin
    if quality_failed:
        promoted, reason = False, f"data checks failed: {quality_failed}"
    elif champion_version is None:
        if baseline_ndcg is not None and challenger_ndcg <= baseline_ndcg:
            promoted = False
            reason = (
                f"no champion yet, but NDCG@10 {challenger_ndcg:.4f} does not beat the "
                f"most-popular baseline {baseline_ndcg:.4f}"
            )
        else:
            promoted, reason = True, "no champion yet"
            if baseline_ndcg is not None:
                reason += f"; NDCG@10 {challenger_ndcg:.4f} beats most-popular {baseline_ndcg:.4f}"
    elif champion_ndcg is None:
        promoted = False
        reason = f"champion v{champion_version} cannot be scored on this test set; kept"
    elif challenger_ndcg > champion_ndcg + margin:
        promoted = True
        reason = (
            f"NDCG@10 {challenger_ndcg:.4f} beats champion v{champion_version} "
            f"{champion_ndcg:.4f} by more than {margin}"
        )
    else:
        promoted = False
        reason = (
            f"NDCG@10 {challenger_ndcg:.4f} does not beat champion v{champion_version} "
            f"{champion_ndcg:.4f} by more than {margin}"
        )
    if promoted:
        set_champion(settings, version, reason)
    else:
        client.set_registered_model_alias(settings.model_name, CHALLENGER, version)
        client.set_model_version_tag(settings.model_name, version, "promotion", reason)
    return promoted, reason


def promote(settings: Settings, version: str, reason: str) -> None:
    """Make ``version`` champion by hand; the reason is recorded on the version."""
    client = client_for(settings)
    client.get_model_version(settings.model_name, version)  # raises for an unknown version
    set_champion(settings, version, f"promoted by hand: {reason}")


def rollback(settings: Settings, reason: str) -> tuple[str, str]:
    """Move ``champion`` back to the previous champion; returns (from, to) versions."""
    client = client_for(settings)
    name = settings.model_name
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
    for alias, version in client.get_registered_model(settings.model_name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    for mv in client.search_model_versions(f"name = '{settings.model_name}'"):
        rows.append(
            {
                "version": int(mv.version),
                "aliases": ",".join(sorted(aliases.get(str(mv.version), []))),
                "created": pd.Timestamp(mv.creation_timestamp, unit="ms"),
                "ndcg@10": float(mv.tags.get(metric_key("test_ndcg@10"), "nan")),
                "baseline ndcg@10": float(
                    mv.tags.get(metric_key("baseline_most_popular_ndcg@10"), "nan")
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
    mv = client.get_model_version(settings.model_name, version)
    run = client.get_run(mv.run_id)
    return {
        "version": str(mv.version),
        "aliases": sorted(mv.aliases),
        "run_id": mv.run_id,
        "tags": dict(sorted(mv.tags.items())),
        "metrics": dict(sorted(run.data.metrics.items())),
        "params": dict(sorted(run.data.params.items())),
    }


def champion_ndcg_on(
    settings: Settings, test: pd.DataFrame, seed: int = 0
) -> tuple[str | None, float | None]:
    """The champion's version and its NDCG@10 on ``test`` (None if it cannot be scored)."""
    champion = load_champion(settings)
    if champion is None:
        return None, None
    if any(f not in test.columns for f in champion.features):
        return champion.version, None
    scored = test[["group_id", "label"]].assign(
        score=champion.model.predict(test[champion.features].astype("float32"))
    )
    return champion.version, ranking_metrics(scored, "score", seed=seed)["ndcg@10"]
