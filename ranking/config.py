"""The one settings object: environment variables (``RANKING_*``) and an optional file.

Every path lives under ``home`` so a whole installation can be moved, wiped or pointed
elsewhere by setting ``RANKING_HOME``. Nothing in the library reads the clock: times are
passed in by callers (the CLI and flows read "now" once and pass it down).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from pydantic import Field, TypeAdapter, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ranking.drift import DriftThresholds
from ranking.quality import QualityThresholds

#: The folder that holds ``ranking/``, ``flows/`` and ``feature_repo/``.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Event types the platform understands, and the graded relevance each implies.
DEFAULT_LABEL_WEIGHTS: dict[str, float] = {
    "impression": 0.0,
    "view": 0.0,
    "skip": 0.0,
    "click": 1.0,
    "play": 1.0,
    "rating": 0.0,  # ratings are graded by value, see ``rating_label_offset``
    "tag": 0.0,  # a free-text tag (MovieLens): engagement, not relevance
    "add_to_cart": 2.0,
    "purchase": 3.0,
}


class Settings(BaseSettings):
    """Configuration for every stage. Paths are derived from ``home``."""

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

    # Events and labels
    label_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_LABEL_WEIGHTS))
    rating_label_offset: float = Field(
        default=2.0, description="A rating r gets label max(0, floor(r) - offset): 5 -> 3, 3 -> 1."
    )

    # Features
    snapshot_every: timedelta = Field(
        default=timedelta(days=1), description="Cadence of feature snapshots."
    )
    decay_half_life_days: float = Field(default=7.0, description="Half-life of decayed signals.")
    history_days: int | None = Field(
        default=None,
        description="Snapshot (and train on) only the last N days before as-of; None: all. "
        "Aggregates still use the whole history before each snapshot.",
    )
    feature_owner: str = Field(default="ranking-platform", description="Owner tag of features.")

    # Training set
    group_by: str = Field(default="session", description="Query group: 'session' or 'day'.")
    negatives_popular: int = Field(default=5, description="Popular negatives per query group.")
    negatives_random: int = Field(default=5, description="Random negatives per query group.")
    eval_negatives_popular: int = Field(
        default=5, description="Popular negatives per test query (evaluation candidates)."
    )
    eval_negatives_random: int = Field(
        default=5, description="Random negatives per test query (evaluation candidates)."
    )
    valid_days: int = Field(default=7, description="Days held out for early stopping.")
    test_days: int = Field(default=7, description="Most recent days held out for evaluation.")
    feature_service: str = Field(
        default="latest",
        description="Feast feature service to train on: a version (ranker_v1, ranker_v2...) "
        "or 'latest', the newest registered version.",
    )
    feature_definitions_dir: Path = Field(
        default=PROJECT_ROOT / "feature_repo" / "definitions",
        description="Folder of feature family definitions (YAML) and services.yaml.",
    )
    seed: int = Field(default=42, description="Seed for sampling and training.")
    segment_light_min: int = Field(
        default=10, description="Events before the cut-off from which a user is 'light', not 'new'."
    )
    segment_heavy_min: int = Field(
        default=100, description="Events before the cut-off from which a user is 'heavy'."
    )

    # Model
    model_name: str = Field(default="ranker", description="Registered model name in MLflow.")
    experiment_name: str = Field(default="ranking", description="MLflow experiment.")
    mlflow_uri: str | None = Field(
        default=None,
        description="MLflow tracking server (shared setup); default: SQLite under home.",
    )
    promotion_margin: float = Field(
        default=0.0, description="NDCG@10 a challenger must add over the champion to replace it."
    )
    n_estimators: int = 400
    learning_rate: float = 0.08
    max_depth: int = 6
    early_stopping_rounds: int = 30
    xgb_device: str = Field(default="cpu", description="XGBoost device: 'cpu' or 'cuda'.")

    # Data quality and drift (nested: e.g. RANKING_QUALITY__FRESHNESS_HOURS__FAIL=96)
    quality: QualityThresholds = Field(
        default_factory=QualityThresholds, description="Warn / fail levels of the data checks."
    )
    drift: DriftThresholds = Field(
        default_factory=DriftThresholds, description="Drift thresholds (PSI, KS, JS, chi2)."
    )
    drift_reference_rows: int = Field(
        default=5000, description="Rows of training features and scores kept as drift reference."
    )
    monitor_window_days: int = Field(
        default=7,
        description="Recent days whose candidates make the 'current' drift sample; as long "
        "as the validation window the reference comes from, so weekdays compare like with like.",
    )
    drift_trending_features: list[str] = Field(
        default_factory=lambda: ["*_all", "item_age_days"],
        description="Patterns of features that grow with time by construction (all-history "
        "counts, ages): their drift is reported but never more than 'warn'.",
    )
    retrain_on_drift: bool = Field(
        default=True, description="A drift breach starts the training flow (monitoring flow)."
    )

    # Serving
    candidate_pool: int = Field(default=500, description="Candidates scored per ranking call.")

    @field_validator("group_by")
    @classmethod
    def _check_group_by(cls, value: str) -> str:
        if value not in {"session", "day"}:
            raise ValueError("group_by must be 'session' or 'day'")
        return value

    @field_validator("home", "feature_repo", "feature_definitions_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Feast resolves file paths against the working directory, so keep ours absolute.
        return value.expanduser().resolve()

    @model_validator(mode="after")
    def _resolve_feature_service(self) -> Settings:
        # 'latest' names the newest registered service version: resolve it once, here,
        # so every stage of a run (and the model's tags) uses the same concrete name.
        from ranking.feature_registry import resolve_service

        self.feature_service = resolve_service(self.feature_service, self.feature_definitions_dir)
        return self

    # Derived locations -------------------------------------------------------------
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
        return self.mlflow_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def mlflow_artifact_location(self) -> str | None:
        """Local artifact folder; a tracking server chooses its own store."""
        return None if self.mlflow_uri else (self.mlflow_dir / "artifacts").as_uri()

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def monitoring_dir(self) -> Path:
        return self.home / "monitoring"

    @property
    def event_types(self) -> list[str]:
        return sorted(self.label_weights)

    def ensure_dirs(self) -> None:
        """Create the home folder tree."""
        for path in (self.raw_dir, self.features_dir, self.feast_dir, self.mlflow_dir):
            path.mkdir(parents=True, exist_ok=True)

    def export_env(self) -> None:
        """Export what external tools read from the environment.

        ``feature_store.yaml`` expands ``${RANKING_HOME}``; Prefect keeps its database
        under ``PREFECT_HOME``. Existing values win so a shared setup can point elsewhere.
        """
        os.environ["RANKING_HOME"] = str(self.home)
        # The Feast repo builds its views from settings: hand it the ones it reads.
        os.environ["RANKING_SNAPSHOT_EVERY"] = TypeAdapter(timedelta).dump_python(
            self.snapshot_every, mode="json"
        )
        os.environ["RANKING_FEATURE_OWNER"] = self.feature_owner
        os.environ["RANKING_FEATURE_DEFINITIONS_DIR"] = str(self.feature_definitions_dir)
        os.environ.setdefault("PREFECT_HOME", str(self.prefect_home))
        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
