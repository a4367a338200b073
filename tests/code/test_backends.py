"""The profile chooses the stores by configuration: the same settings object, other URLs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from feast.repo_config import load_repo_config

from ranking import backends, home
from ranking.settings import get_settings


def test_the_embedded_profile_keeps_every_store_under_the_home(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path)
    assert settings.profile == "embedded"
    assert backends.feast_yaml(settings) == settings.feature_repo / "feature_store.yaml"
    assert backends.feast_registry_file(settings) == settings.feast_dir / "registry.db"
    assert backends.feast_online_sqlite(settings) == settings.feast_dir / "online_store.db"
    assert backends.mlflow_sqlite(settings) == settings.mlflow_dir / "mlflow.db"
    assert backends.prefect_api_url(settings) is None


@pytest.fixture
def environ():
    """``os.environ`` as it was before the test (``home.export_env`` writes to it)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_the_shared_profile_points_feast_mlflow_and_prefect_at_the_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ
) -> None:
    monkeypatch.setenv("RANKING_PROFILE", "shared")
    monkeypatch.setenv("RANKING_SERVICES__POSTGRES_PORT", "15432")
    monkeypatch.setenv("RANKING_SERVICES__REDIS_PORT", "16379")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    settings = get_settings(home=tmp_path)
    assert settings.mlflow_tracking_uri == "postgresql+psycopg://ranking@127.0.0.1:15432/mlflow"
    # Artifacts stay in a folder of the home (a database holds no files).
    assert settings.mlflow_artifact_location == (settings.mlflow_dir / "artifacts").as_uri()
    assert backends.mlflow_sqlite(settings) is None
    assert backends.feast_registry_file(settings) is None
    assert backends.feast_online_sqlite(settings) is None
    home.export_env(settings)
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:4290/api"
    # What Feast itself reads from the shared yaml, with the exported values.
    config = load_repo_config(settings.feature_repo, backends.feast_yaml(settings))
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "127.0.0.1:16379"
    assert config.registry.registry_type == "sql"
    assert config.registry.path == ("postgresql+psycopg://ranking@127.0.0.1:15432/feast_registry")
    assert config.offline_store.type == "duckdb"


def test_an_explicit_mlflow_server_wins_and_keeps_its_own_artifacts(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path, profile="shared",
                            publishing={"mlflow_uri": "http://127.0.0.1:5000"})  # fmt: skip
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert settings.mlflow_artifact_location is None


def test_feasts_offline_duckdb_gets_the_warehouse_memory_limit(tmp_path) -> None:
    """Feast's point-in-time joins run on ibis's default DuckDB: it must spill at the
    warehouse's limit, not grow to 80 % of the machine."""
    import duckdb
    import ibis

    from ranking.features import store
    from ranking.warehouse import warehouse

    store._limit_offline_duckdb()
    con = ibis.get_backend().con
    with warehouse(tmp_path / "w.duckdb") as ours:
        expected = ours.execute("SELECT current_setting('memory_limit')").fetchone()
    assert con.execute("SELECT current_setting('memory_limit')").fetchone() == expected
    default = duckdb.connect().execute("SELECT current_setting('memory_limit')").fetchone()
    assert expected != default  # the machine's 80 % would not do
