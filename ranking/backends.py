"""Which stores Feast, MLflow and Prefect use, by the settings' profile.

The embedded profile keeps everything under the home (Feast's file registry and SQLite
online store, MLflow's SQLite store, Prefect's temporary server); the shared profile
(``RANKING_PROFILE=shared``) uses the services of ``infra/services.sh``: Redis for Feast's
online store, PostgreSQL for Feast's SQL registry and MLflow's store, a Prefect server on
PostgreSQL. Every stage calls the same functions either way: only what these return
differs (a ``feature_store.yaml``, a tracking URI, an API URL).
"""

from __future__ import annotations

from pathlib import Path

from ranking.services import FEAST_REGISTRY_DB
from ranking.settings import PROJECT_ROOT, Settings

#: Feast's configuration of the shared profile (Redis online store, SQL registry).
SHARED_FEAST_YAML = PROJECT_ROOT / "infra" / "feature_store.shared.yaml"


def is_shared(settings: Settings) -> bool:
    return settings.profile == "shared"


def feast_yaml(settings: Settings) -> Path:
    """The ``feature_store.yaml`` Feast reads: the repo's, or the shared profile's (its
    values expanded from :func:`feast_env`)."""
    if is_shared(settings):
        return SHARED_FEAST_YAML
    return settings.feature_repo / "feature_store.yaml"


def feast_env(settings: Settings) -> dict[str, str]:
    """The variables ``feast_yaml`` names (Feast substitutes ``${VAR}`` in it)."""
    env = {"RANKING_HOME": str(settings.home)}
    if is_shared(settings):
        env["RANKING_FEAST_REDIS"] = settings.services.redis_address
        env["RANKING_FEAST_REGISTRY_URL"] = settings.services.postgres_url(FEAST_REGISTRY_DB)
    return env


def feast_registry_file(settings: Settings) -> Path | None:
    """Feast's file registry; None when the registry is in PostgreSQL."""
    return None if is_shared(settings) else settings.feast_dir / "registry.db"


def feast_online_sqlite(settings: Settings) -> Path | None:
    """Feast's SQLite online store; None when the online store is Redis."""
    return None if is_shared(settings) else settings.feast_dir / "online_store.db"


def mlflow_sqlite(settings: Settings) -> Path | None:
    """MLflow's SQLite store under the home, when it is the tracking store."""
    db = settings.mlflow_dir / "mlflow.db"
    return db if settings.mlflow_tracking_uri == f"sqlite:///{db}" else None


def prefect_api_url(settings: Settings) -> str | None:
    """The Prefect server the flows report to; None: Prefect's temporary local one."""
    return settings.services.prefect_api_url if is_shared(settings) else None
