"""MLflow tracking and the model registry: log runs, register versions, move ``champion``.

Serving and ranking always resolve ``models:/<name>@champion``; no caller names a version.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
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
    for key in ("feature_service", "data_window", "training_set_hash", "code_version"):
        client.set_model_version_tag(settings.model_name, version, key, tags[key])
    client.set_model_version_tag(settings.model_name, version, "features", json.dumps(features))
    for key in ("test_ndcg@10", "baseline_most_popular_ndcg@10"):
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


def load_version(settings: Settings, version: str) -> Champion:
    """Load a registered version with its feature service and feature list."""
    client = client_for(settings)
    mv = client.get_model_version(settings.model_name, version)
    model = mlflow.xgboost.load_model(f"models:/{settings.model_name}/{version}")
    return Champion(
        model=model,
        version=str(mv.version),
        feature_service=mv.tags.get("feature_service", settings.feature_service),
        features=json.loads(mv.tags["features"]),
    )


def load_champion(settings: Settings) -> Champion | None:
    """The model behind ``models:/<name>@champion``, or None when there is none yet."""
    client = client_for(settings)
    try:
        mv = client.get_model_version_by_alias(settings.model_name, CHAMPION)
    except MlflowException:
        return None
    model = mlflow.xgboost.load_model(f"models:/{settings.model_name}@{CHAMPION}")
    return Champion(
        model=model,
        version=str(mv.version),
        feature_service=mv.tags.get("feature_service", settings.feature_service),
        features=json.loads(mv.tags["features"]),
    )


def promote_if_better(
    settings: Settings,
    version: str,
    challenger_ndcg: float,
    champion_ndcg: float | None,
    champion_version: str | None,
) -> tuple[bool, str]:
    """Give ``version`` the ``champion`` alias if there is none or it wins by the margin.

    Both scores must come from the same test set. Returns (promoted, reason); the
    reason is also set as a tag on the version.
    """
    client = client_for(settings)
    margin = settings.promotion_margin
    if champion_version is None:
        promoted, reason = True, "no champion yet"
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
        # One registry write: readers see the old or the new champion, never neither.
        client.set_registered_model_alias(settings.model_name, CHAMPION, version)
    client.set_model_version_tag(settings.model_name, version, "promotion", reason)
    return promoted, reason


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
