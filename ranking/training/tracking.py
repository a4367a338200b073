"""MLflow tracking: one run per training, with parameters, metrics, tags, figures and the
model registered as a version of ``ranker``. What a run records is built here too
(:func:`run_metrics`, :func:`run_tags`), so the names are the ones ``publishing`` reads.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import tempfile
import warnings
from contextlib import closing
from pathlib import Path

import mlflow
import mlflow.data
import mlflow.xgboost
import pandas as pd
from mlflow.entities import Metric
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from ranking.schema import (
    HEADLINE_METRIC,
    MODEL_SCORER,
    MOST_POPULAR,
    READY_TAG,
    SPLITS,
    TEST,
    VALID,
    baseline_metric,
    mlflow_key,
    test_metric,
)
from ranking.settings import PROJECT_ROOT, Settings
from ranking.training.dataset import SplitTimes, split_rows
from ranking.training.rankers import feature_importance

#: Version tags copied from the run's tags (what ``ranking models list`` shows).
VERSION_TAGS = ("feature_service", "data_window", "training_set_hash", "code_version",
                "training_config", "data_quality", "inputs_digest")  # fmt: skip

#: The folders whose code decides what a training run produces.
TRAINING_CODE = ("ranking", "flows", "feature_repo")


def relocate_local_store(settings: Settings) -> int:
    """Point a copied or moved home's MLflow store at this home's artifact folder.

    MLflow stores absolute artifact URIs (experiments, runs, logged models, versions, and
    each model's ``MLmodel`` file). In a copy they name the original's folder: new runs
    would write into the original, and a moved home's models would not load. Where the
    store names another home's folder, every such value is rewritten to this one's, once
    (the next open finds nothing to do). Returns how many values changed."""
    db = settings.mlflow_dir / "mlflow.db"
    here = settings.mlflow_artifact_location
    if here is None or not db.exists():
        return 0  # a tracking server keeps its own artifact store
    tail = "/" + (settings.mlflow_dir / "artifacts").relative_to(settings.home).as_posix()
    changed = 0
    with closing(sqlite3.connect(db)) as con, con:
        locations = [r for (r,) in con.execute("SELECT artifact_location FROM experiments")]
        elsewhere = {
            loc[: loc.index(tail) + len(tail)]
            for loc in locations
            if loc and loc.startswith("file:") and tail in loc
        } - {here}
        text_columns = [
            (table, column)
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            for _, column, kind, *_ in con.execute(f"PRAGMA table_info('{table}')")
            if any(t in kind.upper() for t in ("CHAR", "TEXT", "CLOB"))
        ]
        for old in elsewhere:
            for table, column in text_columns:
                changed += con.execute(
                    f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                    f'WHERE instr("{column}", ?) > 0',
                    [old, here, old],
                ).rowcount
            for mlmodel in (settings.mlflow_dir / "artifacts").rglob("MLmodel"):
                text = mlmodel.read_text()
                if old in text:
                    mlmodel.write_text(text.replace(old, here))
                    changed += 1
    return changed


def client_for(settings: Settings) -> MlflowClient:
    """An MLflow client on the configured tracking store (and the experiment created)."""
    settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    relocate_local_store(settings)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    if client.get_experiment_by_name(settings.publishing.experiment_name) is None:
        # Without an explicit location, artifacts would land in ./mlruns of the cwd.
        client.create_experiment(
            settings.publishing.experiment_name, artifact_location=settings.mlflow_artifact_location
        )
    return client


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def code_version(root: Path = PROJECT_ROOT) -> str:
    """The git commit of the code; with uncommitted changes to the training code, the
    commit plus a digest of those changes (``<commit>+dirty.<digest>``), so a run of
    edited code is never taken for one of the committed code; 'unknown' outside git."""
    try:
        head = _git(root, "rev-parse", "HEAD").strip()
        changed = _git(root, "status", "--porcelain", "--untracked-files=all", "--",
                       *TRAINING_CODE)  # fmt: skip
        if not changed:
            return head
        digest = hashlib.sha256(_git(root, "diff", "HEAD", "--", *TRAINING_CODE).encode())
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    for line in sorted(changed.splitlines()):
        digest.update(line.encode())
        path = root / line[3:]
        if line.startswith("??") and path.is_file():  # new files are not in the diff
            digest.update(path.read_bytes())
    return f"{head}+dirty.{digest.hexdigest()[:12]}"


def training_config(settings: Settings) -> str:
    """A digest of what, beside the training set and the code, decides the model: the
    training settings (hyperparameters, groups, splits) and the seed."""
    config = {"training": settings.training.model_dump(mode="json"), "seed": settings.seed}
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def frame_hash(frame: pd.DataFrame) -> str:
    """A content hash of a training set (rows and columns, order-sensitive)."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def importance_figure(importance: pd.Series, top: int = 25):
    """A horizontal bar chart of feature importance (total gain)."""
    # A bare Figure, not pyplot: no global backend, and pyplot's import is kept off the
    # serving path (this module is imported to load the champion).
    from matplotlib.figure import Figure

    shown = importance.head(top)[::-1]
    fig = Figure(figsize=(8, max(3, 0.3 * len(shown))))
    ax = fig.subplots()
    ax.barh(shown.index, shown.to_numpy())
    ax.set_xlabel("total gain")
    ax.set_title("XGBoost feature importance")
    fig.tight_layout()
    return fig


def reference_sample(
    rows: pd.DataFrame, model, features: list[str], n: int, seed: int
) -> pd.DataFrame:
    """A seeded sample of ``rows``: category, the model's features and its score.

    Logged with each version as the drift reference; monitoring builds its current
    sample the same way.
    """
    sample = rows.sample(min(len(rows), n), random_state=seed)
    out = sample[["category", *features]].reset_index(drop=True)
    out["score"] = model.predict(sample[features].astype("float32"))
    return out


def query_group_params(settings: Settings) -> dict:
    """How the query groups were built (logged next to the model's parameters)."""
    names = ("group_by", "negatives_popular", "negatives_random")
    if settings.training.candidates == "retrieval":
        names = ("candidates_per_group", "label_horizon_days", "users_per_query_time")
    return {name: getattr(settings.training, name) for name in ("candidates", *names)}


def run_metrics(
    table: pd.DataFrame, summary: dict[str, dict[str, float]], best_iteration: int
) -> dict[str, float]:
    """The run's metrics: the model and every baseline on the test holdout, split sizes."""
    metrics = {test_metric(m): float(v) for m, v in table.loc[MODEL_SCORER].items()}
    metrics |= {
        baseline_metric(name, m): float(v)
        for name in table.index
        if name != MODEL_SCORER
        for m, v in table.loc[name].items()
    }
    metrics |= {f"{split}_{k}": v for split, d in summary.items() for k, v in d.items()}
    metrics["best_iteration"] = float(best_iteration)
    return metrics


def run_tags(
    settings: Settings, service: str, times: SplitTimes, frame: pd.DataFrame, data_quality: str,
    inputs: str = "",
) -> dict[str, str]:  # fmt: skip
    """The run's tags: feature service, data window, training-set hash, code, training
    settings, data checks, and the digest of the inputs (``ranking.training.reuse``)."""
    return ({"inputs_digest": inputs} if inputs else {}) | {
        "feature_service": service,
        "data_window": f"{times.start:%Y-%m-%dT%H:%M}/{times.end:%Y-%m-%dT%H:%M}",
        "split_times": f"valid from {times.valid_start:%Y-%m-%d}, test from "
        f"{times.test_start:%Y-%m-%d}",
        "training_set_hash": frame_hash(frame),
        "code_version": code_version(),
        "training_config": training_config(settings),
        "data_quality": data_quality,
    }


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
    datasets: dict[str, pd.DataFrame] | None = None,
) -> tuple[str, str]:
    """Log a training run and register its model; returns (run id, model version).

    ``datasets`` (split name -> rows) are logged as the run's inputs (MLflow's Datasets
    tab: rows, schema, digest); the model's per-round validation metric as a curve; the
    run is named ``ranker-v<version>-<data end>`` once the version is known."""
    client = client_for(settings)
    experiment = client.get_experiment_by_name(settings.publishing.experiment_name)
    with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
        mlflow.log_params({k: v for k, v in params.items() if v is not None})
        mlflow.log_metrics({mlflow_key(k): v for k, v in metrics.items()})
        for split, rows in (datasets or {}).items():
            with warnings.catch_warnings():  # its hint on integer columns, once per split
                warnings.simplefilter("ignore", UserWarning)
                dataset = mlflow.data.from_pandas(rows, name=split, targets="label",
                                                  digest=frame_hash(rows)[:16])  # fmt: skip
                mlflow.log_input(dataset, context=split)
        _log_curve(client, run.info, model)
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
        # Declared float64: a caller's float64 frame passes, float32 widens safely.
        x = example[features].astype("float64")
        info = mlflow.xgboost.log_model(
            model,
            name="model",
            signature=infer_signature(x, model.predict(x.astype("float32"))),
            input_example=x.head(5),
            registered_model_name=settings.publishing.model_name,
            model_format="ubj",
        )
        version = str(info.registered_model_version)
    for key in VERSION_TAGS:
        if key in tags:
            client.set_model_version_tag(settings.publishing.model_name, version, key, tags[key])
    client.set_model_version_tag(
        settings.publishing.model_name, version, "features", json.dumps(features)
    )
    evaluation = [k for k in metrics if k.startswith("test_")]
    for key in [*evaluation, baseline_metric(MOST_POPULAR, HEADLINE_METRIC)]:
        if key in metrics:
            client.set_model_version_tag(
                settings.publishing.model_name, version, mlflow_key(key), f"{metrics[key]:.5f}"
            )
    window = tags.get("data_window", "")  # <start>/<end>
    data_end = window.rpartition("/")[2][:10] if "/" in window else ""
    client.update_run(run.info.run_id, name=f"ranker-v{version}-{data_end}".rstrip("-"))
    client.set_model_version_tag(settings.publishing.model_name, version, READY_TAG, "true")
    remove_orphans(client, settings.publishing.model_name, run.info.start_time)
    return run.info.run_id, version


def _log_curve(client: MlflowClient, run, model) -> None:
    """The validation metric after every boosting round, as one metric with steps."""
    history = getattr(model, "evals_result", lambda: {})() or {}
    metrics = [
        Metric(f"valid_{mlflow_key(name)}_by_round", float(value), run.start_time, step)
        for evaluation in history.values()
        for name, values in evaluation.items()
        for step, value in enumerate(values)
    ]
    for start in range(0, len(metrics), 1000):  # MLflow's batch limit
        client.log_batch(run.run_id, metrics=metrics[start : start + 1000])


def is_complete(version) -> bool:
    """Whether a registered version was written whole (its ``ready`` tag, set last)."""
    return version.tags.get(READY_TAG) == "true"


#: An incomplete version older than this, relative to a new run's start, is an orphan
#: (a run killed while registering); a younger one may be a concurrent run still writing.
ORPHAN_AGE_MS = 15 * 60 * 1000


def remove_orphans(client: MlflowClient, name: str, run_started_ms: int) -> list[str]:
    """Delete the versions a killed run left incomplete; returns their numbers."""
    orphans = [
        str(mv.version)
        for mv in client.search_model_versions(f"name = '{name}'")
        if not is_complete(mv) and mv.creation_timestamp < run_started_ms - ORPHAN_AGE_MS
    ]
    for version in orphans:
        client.delete_model_version(name, version)
    return orphans


def load_frame_artifact(settings: Settings, version: str, name: str) -> pd.DataFrame:
    """A Parquet artifact (``<name>.parquet``) logged with a version's training run."""
    client = client_for(settings)
    run_id = client.get_model_version(settings.publishing.model_name, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{name}.parquet", dst_path=tmp
        )
        return pd.read_parquet(path)


def log_training_run(
    settings: Settings,
    trained,
    frame: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    times: SplitTimes,
    data_quality: str,
    service: str,
    summary: dict[str, dict[str, float]],
    inputs: str = "",
) -> tuple[str, str]:
    """Log one training run and register its model; returns (run id, model version).

    ``tables`` holds ``evaluation`` (one row per scorer) and any other table to log as
    CSV; ``summary`` is the frame's :func:`training_set_summary`; the drift reference is a
    seeded sample of the validation rows.
    """
    table = tables["evaluation"]
    metrics = run_metrics(table, summary, trained.best_iteration)
    reference = reference_sample(
        split_rows(frame, VALID), trained.model, trained.features,
        settings.monitoring.reference_rows, settings.seed,
    )  # fmt: skip
    return log_and_register(
        settings,
        model=trained.model,
        features=trained.features,
        params=trained.params | query_group_params(settings),
        metrics=metrics,
        tags=run_tags(settings, service, times, frame, data_quality, inputs),
        example=split_rows(frame, TEST),
        importance=feature_importance(trained.model, trained.features),
        tables=tables,
        frames={"drift_reference": reference},
        datasets={split: split_rows(frame, split) for split in SPLITS},
    )
