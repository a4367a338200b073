"""The home folder: create its tree and tell external tools where it is.

``feature_store.yaml`` expands ``${RANKING_HOME}`` (the shared profile's also the Redis
and PostgreSQL addresses: ``ranking.backends.feast_env``), the Feast repo reads its inputs
from the environment (see ``ranking.features.repo``), and Prefect keeps its database under
``PREFECT_HOME`` (or, shared, reports to the server at ``PREFECT_API_URL``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ranking import backends
from ranking.settings import Settings, get_settings


def ensure_dirs(settings: Settings) -> None:
    """Create the home folder tree."""
    folders = (settings.raw_dir, settings.features_dir, settings.feast_dir, settings.mlflow_dir,
               settings.definitions_dir)  # fmt: skip
    for path in folders:
        path.mkdir(parents=True, exist_ok=True)


def export_env(settings: Settings) -> None:
    """Export what external tools read from the environment.

    Existing Prefect values win so a shared setup can point elsewhere.
    """
    os.environ.update(backends.feast_env(settings))
    os.environ.setdefault("PREFECT_HOME", str(settings.prefect_home))
    if api_url := backends.prefect_api_url(settings):
        os.environ.setdefault("PREFECT_API_URL", api_url)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def prepare(settings: Settings) -> Settings:
    """Create the tree and export the environment; returns ``settings``."""
    ensure_dirs(settings)
    export_env(settings)
    return settings


def load(home: Path | str | None = None) -> Settings:
    """Settings from the environment, for ``home`` when given, the home prepared (what
    every command and flow starts with)."""
    return prepare(get_settings(home=home) if home else get_settings())
