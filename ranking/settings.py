"""The one settings object: environment variables (``RANKING_*``) and an optional ``.env``.

Settings are nested by stage: ``RANKING_TRAINING__N_ESTIMATORS=200`` sets
``settings.training.n_estimators``. Every path lives under ``home`` so a whole
installation can be moved, wiped or pointed elsewhere with ``RANKING_HOME``.

Pure declarations: no stage imports and no I/O here (``ranking.home`` creates the folders
and exports what external tools read). Nothing reads the clock either: the CLI and the
flows read "now" once and pass it down.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ranking.checks.thresholds import MonitoringSettings, QualityThresholds
from ranking.schema import DEFAULT_LABEL_WEIGHTS, EARLIEST_EVENT_TIMESTAMP
from ranking.services import MLFLOW_DB, Profile, ServicesSettings

#: The folder that holds ``ranking/``, ``flows/`` and ``feature_repo/``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error


class EventSettings(_Section):
    """Event types and the graded relevance (label) each implies."""

    label_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_LABEL_WEIGHTS),
        description="Event type -> label weight (JSON); its keys are the accepted event types.",
    )
    rating_label_offset: float = Field(
        default=2.0, description="A rating r gets label max(0, floor(r) - offset): 5 -> 3, 3 -> 1."
    )
    earliest_timestamp: datetime = Field(
        default=EARLIEST_EVENT_TIMESTAMP, description="Events before this time are implausible "
        "(epoch 0, year 1900) and quarantined; the load's now is the upper bound.",
    )  # fmt: skip


class FeatureSettings(_Section):
    """Feature snapshots and the Feast feature service."""

    snapshot_every: timedelta = Field(
        default=timedelta(days=1),
        description="Cadence of feature snapshots (ISO 8601, P1D); unset: from the data's span.",
    )
    decay_half_life_days: float = Field(default=7.0, description="Half-life of decayed signals.")
    history_days: float | None = Field(
        default=None,
        description="Snapshot (and train on) only the last N days before as-of; unset: all, "
        "up to 200 snapshots. "
        "Aggregates still use the whole history before each snapshot.",
    )
    owner: str = Field(default="ranking-platform", description="Owner tag of built-in features.")
    definitions_dir: Path | None = Field(
        default=None,
        description="Folder of registered feature family definitions (YAML) and "
        "services.yaml; unset: <home>/definitions, so a home's families travel with it.",
    )
    service: str = Field(
        default="latest",
        description="Feast feature service to train on: a version (ranker_v1, ranker_v2...) "
        "or 'latest', the newest registered version.",
    )
    sql_time_limit_seconds: float = Field(
        default=120.0, gt=0, description="A registered definition's SQL is stopped after this "
        "long (validation, backfill and every features run).",
    )  # fmt: skip
    sql_memory_limit: str = Field(
        default="4GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB memory limit of a registered definition's SQL (the machine's "
        "other work keeps the rest).",
    )  # fmt: skip

    @field_validator("definitions_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()


class RetrievalSettings(_Section):
    """Candidate sources: how many items each proposes and the windows they look at."""

    covisit_budget: int = Field(
        default=200, description="Items co-visited with the user's recent items, at most."
    )
    covisit_window_hours: float = Field(
        default=24.0, description="Two items are co-visited when one user met both this close."
    )
    covisit_recent_items: int = Field(
        default=20, description="The user's latest items that co-visitation expands from."
    )
    category_budget: int = Field(
        default=100, description="Top items of the user's favourite categories, at most."
    )
    top_categories: int = Field(default=3, description="Favourite categories a user draws from.")
    popular_budget: int = Field(default=100, description="Most popular items (the backstop).")
    fresh_budget: int = Field(default=20, description="Newest catalogue items, at most.")
    fresh_days: float = Field(
        default=30.0, description="An item is fresh this long after creation."
    )
    trending_budget: int = Field(default=30, description="Items whose popularity grows fastest.")
    repeat_budget: int = Field(default=50, description="The user's own items to offer again.")
    repeat_event_types: list[str] = Field(
        default_factory=list,
        description="Event types after which an item may be offered again (re-purchase, "
        "re-listening); items met with any other positive type are never re-proposed.",
    )
    embedding_budget: int = Field(default=100, description="Nearest items by ALS embeddings.")
    neighbours_budget: int = Field(default=100, description="Items nearest users took.")
    neighbours_k: int = Field(default=100, description="Most similar users (cosine) drawn from.")
    dense_scores: bool = Field(
        default=False, description="Popularity and embedding scores for every candidate."
    )
    embedding_factors: int = Field(default=32, description="ALS embedding dimensions.")
    embedding_iterations: int = Field(default=10, description="ALS iterations.")
    embedding_regularization: float = Field(default=1.0, description="ALS L2 regularisation.")
    embedding_alpha: float = Field(
        default=20.0, description="ALS confidence per recency-weighted relevant event."
    )
    embedding_ann_above: int = Field(
        default=200_000, description="Catalogues larger than this are searched by HNSW."
    )
    embedding_refresh_days: float = Field(
        default=7.0, description="The ALS model is refitted on this grid (point in time)."
    )
    window_days: float = Field(
        default=28.0, description="Popularity, trending and categories look this far back."
    )
    half_life_days: float = Field(default=7.0, description="Half-life of recency weights.")


class TrainingSettings(_Section):
    """Query groups, sampled negatives, time splits and the XGBoost ranker."""

    group_by: Literal["session", "day"] = Field(
        default="session", description="Sampled query group: 'session' or 'day'."
    )
    candidates: Literal["retrieval", "sampled"] = Field(
        default="retrieval",
        description="Query groups: 'retrieval' (a user at each snapshot, the retrieved "
        "candidates labelled by what the user did over the label horizon) or 'sampled' (the "
        "items met in a session or day plus sampled negatives).",
    )
    candidates_per_group: int = Field(
        default=150, description="Retrieved candidates kept per training group (best fused)."
    )
    label_horizon_days: float = Field(
        default=7.0,
        description="Retrieval training groups are labelled this far ahead "
        "(unset: four snapshot steps, at least 7 days: 28 on weekly snapshots).",
    )
    users_per_query_time: int = Field(
        default=100, description="Users sampled per query time for retrieval training groups."
    )
    retrieval_workers: int = Field(
        default=1, description="Processes that retrieve the training groups' candidates."
    )
    negatives_popular: int = Field(default=5, description="Popular negatives per query group.")
    negatives_random: int = Field(default=5, description="Random negatives per query group.")
    valid_window: timedelta = Field(
        default=timedelta(days=7),
        description="Held out for early stopping (ISO 8601, P7D); unset: a sixth of the "
        "history, in whole snapshot steps.",
    )
    test_window: timedelta = Field(
        default=timedelta(days=7),
        description="Most recent time held out for evaluation (ISO 8601, PT1H); unset: a "
        "sixth of the history, in whole snapshot steps.",
    )
    n_estimators: int = Field(default=400, description="Boosting rounds at most.")
    learning_rate: float = Field(default=0.08, description="XGBoost learning rate.")
    max_depth: int = Field(default=4, description="XGBoost tree depth.")
    min_child_weight: float = Field(
        default=10.0, description="XGBoost minimum hessian per leaf (larger: smoother trees)."
    )
    monotone_retrieval: bool = Field(
        default=True,
        description="Constrain the ranker to be monotone in the retrieval scores and ranks.",
    )
    early_stopping_rounds: int = Field(
        default=30, description="Rounds without validation NDCG@10 gain before stopping."
    )
    device: str = Field(default="cpu", description="XGBoost device: 'cpu' or 'cuda'.")


class EvaluationSettings(_Section):
    """The test holdout's candidates and the user segments of the reports."""

    negatives_popular: int = Field(5, description="Popular negatives per test query (sampled).")
    negatives_random: int = Field(5, description="Random negatives per test query (sampled).")
    test_cutoffs: int = Field(
        default=4,
        ge=1,
        description="Rolling cut-offs that tile the test window (each labelled up to the "
        "next): on a log where few users return, one cut-off leaves too few test queries "
        "for the gate to judge.",
    )
    test_users_per_cutoff: int = Field(500, ge=1, description="Returning users tested at each "
                                       "cut-off, at most (a seeded sample beyond).")  # fmt: skip
    segment_light_min: int = Field(
        default=10, description="Events before the cut-off from which a user is 'light', not 'new'."
    )
    segment_heavy_min: int = Field(
        default=100, description="Events before the cut-off from which a user is 'heavy'."
    )


class PublishingSettings(_Section):
    """MLflow tracking, the registered model and the promotion gate."""

    model_name: str = Field(default="ranker", description="Registered model name in MLflow.")
    experiment_name: str = Field(default="ranking", description="MLflow experiment.")
    mlflow_uri: str | None = Field(
        default=None,
        description="MLflow tracking server or database URL; default: SQLite under home "
        "(profile 'shared': PostgreSQL).",
    )
    promotion_margin: float = Field(
        default=0.0, description="NDCG@10 a challenger must add over the champion to replace it."
    )


class ServingSettings(_Section):
    """Ranking calls."""

    candidate_pool: int = Field(default=500, description="Retrieved candidates scored per "
                                "ranking call, at most.")  # fmt: skip
    max_in_flight: int = Field(default=32, ge=1, description="Ranking calls the service "
                               "holds at once, running or waiting for a worker thread; more "
                               "are refused at once with 503 and Retry-After.")  # fmt: skip
    worker_threads: int = Field(default=1, ge=1, description="Threads that rank. Ranking is "
                                "Python under one interpreter lock: more threads take turns "
                                "and lengthen every call.")  # fmt: skip
    refresh_seconds: float = Field(default=0.5, gt=0, description="How often the service "
                                   "looks for a moved champion alias and a new publication "
                                   "(read in the background).")  # fmt: skip
    max_connections: int = Field(default=64, ge=1, description="Connections the HTTP server "
                                 "holds at once (uvicorn's limit_concurrency); past it, 503 "
                                 "before any work.")  # fmt: skip
    deadline_ms: float = Field(default=250.0, gt=0, description="A ranking call that takes "
                               "longer is answered in the fallback order, says so.")  # fmt: skip
    api_token: SecretStr | None = Field(
        default=None,
        description="Bearer token /rank and /metrics require; needed when the "
        "service binds to anything but loopback.",
    )
    max_candidates: int = Field(
        default=1000, ge=1, description="Most item ids a caller may send to rank."
    )
    max_id_length: int = Field(default=200, ge=1, description="Longest user or item id accepted.")
    max_body_bytes: int = Field(default=1_000_000, ge=1, description="Largest request body.")
    drop_consumed: bool = Field(
        default=True,
        description="Drop items the user already consumed (any positive event or rating; the "
        "retrieval's repeat_event_types may come back).",
    )
    max_unanswered_impressions: int = Field(
        default=3,
        description="Hold back items shown to the user this many times with no positive "
        "reaction since: they fill the list only when nothing else is left (0: never).",
    )
    fresh_slot_days: float = Field(
        default=7.0,
        description="Keep one item created within this many days in the top k when one "
        "qualifies (0: no fresh slot).",
    )
    max_category_share: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="Most of the top k one category may fill (1.0: no cap); filled past it "
        "only when nothing else is left.",
    )
    exploration: float = Field(default=0.0, ge=0.0, le=1.0, description="Chance that a served "
                               "place shows one of the next k eligible items (0 off).")  # fmt: skip


class ScaleSettings(_Section):
    """Fan-out past one process, on Dask (Prefect's Dask task runner): off by default."""

    feature_partitions: int = Field(
        default=1, ge=1, description="Parts the feature build splits the events into (by a "
        "hash of the user, or of the item for item features), each computed by DuckDB as its "
        "own Prefect task on Dask; 1: one process, no Dask.",
    )  # fmt: skip
    dask_address: str | None = Field(
        default=None, description="Scheduler of a running Dask cluster (tcp://host:8786); "
        "unset: a local cluster of dask_workers processes, started for the run.",
    )  # fmt: skip
    dask_workers: int = Field(default=2, ge=1, description="Worker processes of the local "
                              "Dask cluster (one thread each).")  # fmt: skip
    train_on_dask: bool = Field(default=False, description="Train the ranker with "
                                "xgboost.dask on the Dask cluster (same parameters).")  # fmt: skip


class Settings(BaseSettings):
    """Configuration for every stage, one nested section per stage."""

    model_config = SettingsConfigDict(
        env_prefix="RANKING_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
    )

    home: Path = Field(
        default=PROJECT_ROOT / ".ranking",
        description="Folder for the warehouse, feature tables, Feast, MLflow and Prefect.",
    )
    feature_repo: Path = Field(
        default=PROJECT_ROOT / "feature_repo", description="The Feast repository folder."
    )
    seed: int = Field(default=42, description="Seed for sampling, training and evaluation.")
    profile: Profile = Field(default="embedded", description="'embedded' (every store under "
                             "home) or 'shared' (the services of infra/services.sh).")  # fmt: skip

    events: EventSettings = Field(default_factory=EventSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    publishing: PublishingSettings = Field(default_factory=PublishingSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    quality: QualityThresholds = Field(
        default_factory=QualityThresholds, description="Warn / fail levels of the data checks."
    )
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    services: ServicesSettings = Field(default_factory=ServicesSettings)
    scale: ScaleSettings = Field(default_factory=ScaleSettings)

    @field_validator("home", "feature_repo")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Feast resolves file paths against the working directory, so keep ours absolute.
        return value.expanduser().resolve()

    # Derived locations -------------------------------------------------------------
    @property
    def definitions_dir(self) -> Path:
        """Registered feature families and their services (``features.definitions_dir``)."""
        return self.features.definitions_dir or self.home / "definitions"

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def raw_dir(self) -> Path:
        return self.home / "raw"

    @property
    def features_dir(self) -> Path:
        return self.home / "features"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def mlflow_tracking_uri(self) -> str:
        shared = self.services.postgres_url(MLFLOW_DB) if self.profile == "shared" else None
        return self.publishing.mlflow_uri or shared or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifact_location(self) -> str | None:
        """Local artifact folder (beside a database store too); a server chooses its own."""
        remote = self.mlflow_tracking_uri.startswith(("http://", "https://"))
        return None if remote else (self.mlflow_dir / "artifacts").as_uri()

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def monitoring_dir(self) -> Path:
        return self.home / "monitoring"

    @property
    def event_types(self) -> list[str]:
        return sorted(self.events.label_weights)

    def updated(self, **changes: object) -> Settings:
        """A copy with ``changes``; a section may be changed in part with a dict:
        ``settings.updated(training={"n_estimators": 50})`` keeps its other values."""
        merged: dict[str, object] = {}
        for key, value in changes.items():
            current = getattr(self, key, None)
            if isinstance(value, dict) and isinstance(current, BaseModel):
                # Validated (``"P5D"`` becomes a duration), and only what was set before
                # or now counts as set (the rest may still be derived from the data).
                kept = {k: getattr(current, k) for k in current.model_fields_set}
                value = type(current)(**{**kept, **value})
            merged[key] = value
        return self.model_copy(update=merged)


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides on top (see
    :meth:`Settings.updated`); paths are validated as given."""
    base = Settings()
    if not overrides:
        return base
    # Only what was set (environment or overrides) is passed on, so that fields left at
    # their default stay unset: the data's profile may derive them (ingest.profile).
    return Settings(**base.updated(**overrides).model_dump(exclude_unset=True))
