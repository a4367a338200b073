"""The e2e loop on the shared profile: Feast online on Redis with its registry in
PostgreSQL, MLflow's store in PostgreSQL, flows reported to a Prefect server on PostgreSQL.
The same calls as ``tests/e2e/test_loop.py``; only the environment differs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import pytest
import redis
from fastapi.testclient import TestClient
from feast.infra.online_stores.helpers import _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from cli.serving import rank_with_champion
from flows.loop import ranking_loop
from flows.monitor import monitor_flow
from ranking import backends
from ranking.features import store
from ranking.home import ensure_dirs
from ranking.ingest import synth
from ranking.schema import CHAMPION
from ranking.services import FEAST_REGISTRY_DB, MLFLOW_DB, PREFECT_DB
from ranking.serving.http import create_app
from ranking.settings import get_settings
from ranking.training import tracking
from ranking.warehouse import most_active_user
from tests.conftest import END, NOW, fitted
from tests.shared.conftest import Services

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def loop_run(shared_env, services: Services, tmp_path_factory: pytest.TempPathFactory,
             small_data: synth.SynthData):  # fmt: skip
    home = tmp_path_factory.mktemp("shared-home")
    settings = get_settings(home=home)
    assert settings.profile == "shared"
    ensure_dirs(settings)
    paths = synth.write(small_data, settings.raw_dir)
    started = time.perf_counter()
    result = ranking_loop(str(paths["events"]), str(paths["items"]),
                          as_of=END.isoformat(), now=NOW.isoformat(), home=str(home))  # fmt: skip
    print(f"\nloop on the shared profile: {time.perf_counter() - started:.1f} s")
    return fitted(home), paths, result


def test_loop_registers_a_champion_whose_version_lives_in_postgresql(
    loop_run, services: Services
) -> None:
    settings, _, result = loop_run
    assert result.training.promoted
    assert result.training.champion_version == result.training.version == "1"
    name = settings.publishing.model_name
    versions = services.query(MLFLOW_DB, "SELECT version FROM model_versions WHERE name = %s",
                              name)  # fmt: skip
    assert versions == [(1,)]
    aliases = services.query(MLFLOW_DB, "SELECT alias, version FROM registered_model_aliases "
                             "WHERE name = %s", name)  # fmt: skip
    assert aliases == [(CHAMPION, 1)]
    # Nothing of MLflow, Feast's registry or its online store was written in the home.
    for local in ("mlflow/mlflow.db", "feast/registry.db", "feast/online_store.db"):
        assert not (settings.home / local).exists(), local


def test_the_champion_alias_resolves_and_its_artifacts_are_in_the_home(loop_run) -> None:
    settings, _, result = loop_run
    client = tracking.client_for(settings)
    mv = client.get_model_version_by_alias(settings.publishing.model_name, CHAMPION)
    assert str(mv.version) == result.training.version
    assert mv.tags.get("feature_service") == "ranker_v1"
    model = mlflow.pyfunc.load_model(f"models:/{settings.publishing.model_name}@{CHAMPION}")
    assert model.metadata.signature is not None
    artifacts = settings.mlflow_dir / "artifacts"
    assert any(artifacts.rglob("MLmodel")), "the model's files are under <home>/mlflow"
    assert client.get_experiment_by_name("ranking").artifact_location == artifacts.as_uri()


def test_online_features_are_read_back_from_redis(loop_run, services: Services) -> None:
    settings, _, _ = loop_run
    user = most_active_user(settings.warehouse_path)
    r = redis.Redis(host=services.config.host, port=services.config.redis_port)
    assert r.dbsize() > 0
    key = _redis_key("ranking", EntityKey(join_keys=["user_id"],
                                          entity_values=[Value(string_val=user)]))  # fmt: skip
    fields = r.hkeys(key)
    assert b"_ts:user_long_term" in fields, fields
    fs = store.get_store(settings)
    assert fs.config.online_store.type == "redis"
    online = store.online_features(
        fs, [{"user_id": user, "item_id": "i000001", "category": "drama",
              "request_timestamp_s": 1_772_366_400}], store.service_name(settings),
    )  # fmt: skip
    assert online.loc[0, "user_events_all"] > 0
    r.delete(key)  # gone from Redis, gone from Feast's answer: it was read from there
    again = store.online_features(
        fs, [{"user_id": user, "item_id": "i000001", "category": "drama",
              "request_timestamp_s": 1_772_366_400}], store.service_name(settings),
    )  # fmt: skip
    assert again.loc[0, "user_events_all"] is None or again["user_events_all"].isna().all()
    store.materialize_latest(fs, *store.materialize_window([END], settings.features.snapshot_every),
                             force=True)  # fmt: skip
    assert b"_ts:user_long_term" in r.hkeys(key)


def test_feasts_registry_is_in_postgresql(loop_run, services: Services) -> None:
    settings, _, _ = loop_run
    assert backends.feast_registry_file(settings) is None
    rows = services.query(FEAST_REGISTRY_DB, "SELECT feature_view_name FROM feature_views")
    views = {name for (name,) in rows}
    assert {"user_long_term", "item_stats", "user_category"} <= views


def test_flow_runs_are_on_the_prefect_server_in_postgresql(loop_run, services: Services) -> None:
    runs = services.query(PREFECT_DB, "SELECT f.name, r.state_type FROM flow_run r "
                          "JOIN flow f ON f.id = r.flow_id")  # fmt: skip
    assert ("ranking-loop", "COMPLETED") in runs
    assert {"ingest-events", "build-features", "train-ranker"} <= {name for name, _ in runs}


def test_rank_and_the_http_service_serve_with_the_champion(loop_run) -> None:
    settings, _, result = loop_run
    user = most_active_user(settings.warehouse_path)
    ranked = rank_with_champion(settings, user, 10, NOW)
    assert ranked.fallback is None and ranked.model_version == result.training.version
    assert list(ranked.items["rank"]) == list(range(1, 11))
    http = TestClient(create_app(settings, clock=lambda: NOW))
    ready = http.get("/ready")
    assert ready.status_code == 200, ready.json()
    body = http.post("/rank", json={"user_id": user, "k": 5}).json()
    assert body["model_version"] == result.training.version and body["fallback"] is None


def test_monitor_logs_its_run_against_the_champion_in_postgresql(
    loop_run, services: Services
) -> None:
    settings, _, result = loop_run
    outcome = monitor_flow(as_of=END.isoformat(), home=str(settings.home))
    assert outcome.model_version == result.training.version
    report = json.loads(Path(outcome.json_path).read_text())
    assert {"score", "category", "user_clicks_7d"} <= {f["name"] for f in report["features"]}
    logged = services.query(MLFLOW_DB, "SELECT t.value FROM tags t JOIN runs r USING (run_uuid) "
                            "JOIN experiments e USING (experiment_id) WHERE e.name = "
                            "'ranking-monitoring' AND t.key = 'model_version'")  # fmt: skip
    assert (result.training.version,) in logged


def test_second_run_reuses_the_registry_and_the_version(loop_run) -> None:
    settings, paths, first = loop_run
    again = ranking_loop(str(paths["events"]), str(paths["items"]), as_of=END.isoformat(),
                         now=NOW.isoformat(), home=str(settings.home))  # fmt: skip
    assert again.features.reused
    assert again.training.version == first.training.version and not again.training.promoted
