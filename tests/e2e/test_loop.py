"""The real loop through Prefect, Feast, XGBoost and MLflow on small generated data."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from datetime import timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from cli import app
from cli.serving import rank_with_champion
from flows.features import register_flow
from flows.loop import ranking_loop
from flows.monitor import monitor_flow
from flows.train import train_flow
from ranking.checks.report import QualityError
from ranking.evaluation.report import evaluate_champion
from ranking.features import store
from ranking.features.online import lookup, request_timestamp_s
from ranking.home import ensure_dirs
from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.publishing import aliases, models
from ranking.retrieval.published import CURRENT, load_published, retrieval_dir
from ranking.schema import CHAMPION
from ranking.serving.candidates import candidates_for
from ranking.serving.http import create_app
from ranking.serving.ranker import rank_for_user, rank_request
from ranking.settings import get_settings
from ranking.training import tracking
from ranking.warehouse import most_active_user, warehouse
from tests.conftest import END, NOW, fitted

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def prefect_server():
    """A throwaway Prefect server and database for this module's flow runs."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def loop_run(prefect_server, tmp_path_factory: pytest.TempPathFactory,
             small_data: synth.SynthData):  # fmt: skip
    home = tmp_path_factory.mktemp("e2e-home")
    settings = get_settings(home=home)
    ensure_dirs(settings)
    paths = synth.write(small_data, settings.raw_dir)
    result = ranking_loop(str(paths["events"]), str(paths["items"]),
                          as_of=END.isoformat(), now=NOW.isoformat(), home=str(home))  # fmt: skip
    return fitted(home), paths, result


def test_loop_loads_features_and_registers_a_champion(loop_run) -> None:
    settings, _, result = loop_run
    events = next(r for r in result.loads if r.target == "events")
    assert events.read == events.accepted + events.quarantined + events.duplicates
    assert events.accepted > 15_000
    assert events.quarantined > 0  # the generator's dirty late batch
    assert result.features.rows["user_long_term"] > 0
    assert result.training.promoted
    assert result.training.champion_version == result.training.version == "1"
    table = result.training.table
    assert table.loc["xgboost", "ndcg@10"] > table.loc["most_popular", "ndcg@10"]


def test_champion_loads_by_alias_and_carries_its_lineage(loop_run) -> None:
    settings, _, result = loop_run
    client = tracking.client_for(settings)
    mv = client.get_model_version_by_alias(settings.publishing.model_name, CHAMPION)
    assert str(mv.version) == result.training.version
    for tag in ("feature_service", "data_window", "training_set_hash", "code_version", "features"):
        assert mv.tags.get(tag), tag
    model = mlflow.pyfunc.load_model(f"models:/{settings.publishing.model_name}@champion")
    assert model.metadata.signature is not None
    artifacts = {a.path for a in client.list_artifacts(result.training.run_id)}
    assert {"feature_importance.png", "features.json", "evaluation.csv"} <= artifacts


def test_online_store_and_ranked_list(loop_run) -> None:
    settings, _, result = loop_run
    user = most_active_user(settings.warehouse_path)
    ranked = rank_with_champion(settings, user, 10, NOW)
    assert ranked.fallback is None
    assert ranked.model_version == result.training.version
    assert len(ranked.items) == 10
    # The business rules: the model's order, then items held back (here: shown to this
    # heavy user many times with no reaction) filling the list.
    by_model = ranked.items["rule"] == "model"
    assert ranked.items.loc[by_model, "score"].is_monotonic_decreasing
    assert set(ranked.items["rule"]) <= {"model", "fresh_slot", "category_cap_fill",
                                         "unanswered_fill"}  # fmt: skip
    assert list(by_model) == sorted(by_model, reverse=True) or ranked.items["rule"].iloc[-1] == (
        "fresh_slot")  # fmt: skip
    assert list(ranked.items["rank"]) == list(range(1, 11))
    published = load_published(settings, NOW)  # the features flow published retrieval
    assert published is not None and published.at == END
    proposed = published.for_user(user, settings.serving.candidate_pool)
    assert set(ranked.items["item_id"]) <= set(proposed["item_id"])
    online = store.online_features(
        store.get_store(settings),
        [{"user_id": user, "item_id": ranked.items["item_id"][0],
          "category": ranked.items["category"][0], "request_timestamp_s": 1_772_366_400}],
        store.service_name(settings),
    )  # fmt: skip
    assert online.loc[0, "user_events_all"] > 0


def test_published_features_are_feasts_online_values(loop_run) -> None:
    """The features flow copied Feast's online values into the publication: for users
    known and unknown, their candidates and request times across a week, the lookup gives
    what `get_online_features` gives for the champion's service (context included), and
    ranking through it scores exactly as ranking through Feast."""
    settings, _, result = loop_run
    published = load_published(settings, NOW)
    assert {"user_long_term", "item_stats", "user_category"} <= set(published.views)
    fs = store.get_store(settings)
    champion = models.load_champion(settings)
    service = store.service_features(fs, champion.feature_service)
    users = [most_active_user(settings.warehouse_path), "nobody-here"]
    with warehouse(settings.warehouse_path, read_only=True) as con:
        users += [u for (u,) in con.execute(
            "SELECT DISTINCT user_id FROM events ORDER BY 1 LIMIT 3").fetchall()]  # fmt: skip
    for n, user in enumerate(users):
        moment = NOW + timedelta(hours=17 * n)  # other hours and days of the week
        candidates = published.for_user(user, 60)
        candidates = pd.concat([candidates, pd.DataFrame(
            {"item_id": ["not-an-item"], "category": ["nowhere"]})], ignore_index=True)  # fmt: skip
        looked_up = lookup(published.views, service, user, candidates, moment)
        stamp = request_timestamp_s(moment)
        pairs = zip(candidates["item_id"], candidates["category"], strict=True)
        rows = [{"user_id": user, "item_id": i, "category": c, "request_timestamp_s": stamp}
                for i, c in pairs]  # fmt: skip
        from_feast = store.online_features(fs, rows, champion.feature_service)[service]
        pd.testing.assert_frame_equal(looked_up, from_feast.astype(float), check_dtype=False)
        served = rank_request(settings, fs, champion, user, moment, k=10)
        through_feast = rank_for_user(fs, champion, candidates_for(settings, user, moment),
                                      user, moment, 10, settings.serving, views=None)  # fmt: skip
        pd.testing.assert_frame_equal(served.items, through_feast.items)


def test_unknown_user_gets_the_popularity_fallback(loop_run) -> None:
    settings, _, _ = loop_run
    ranked = rank_with_champion(settings, "nobody-here", 5, NOW)
    assert ranked.fallback and "nobody-here" in ranked.fallback
    assert len(ranked.items) == 5


def test_evaluate_ranks_the_full_catalogue_in_one_and_two_stages(loop_run) -> None:
    """`ranking evaluate --full-catalogue`: the champion alone, the champion on retrieved
    candidates, retrieval alone and the baselines, on the same holdout."""
    settings, _, result = loop_run
    home = str(settings.home)
    out = CliRunner().invoke(app, ["evaluate", "--full-catalogue", "--as-of", END.isoformat(),
                                   "--home", home])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "Retrieval recall" in out.output
    champion = models.load_champion(settings)
    done = evaluate_champion(settings, champion.model, champion.features, "champion", END, True)
    table, recall = done.table, done.retrieval_recall
    assert {"champion", "champion_two_stage", "retrieval_fusion", "most_popular"} <= set(
        table.index
    )
    assert table["groups"].nunique() == 1  # every scorer on the same queries
    assert table.loc["champion_two_stage", "ndcg@10"] != table.loc["champion", "ndcg@10"]
    assert ((recall.drop(columns="candidates_per_user") >= 0)
            & (recall.drop(columns="candidates_per_user") <= 1)).all().all()  # fmt: skip
    budgets = settings.retrieval
    most = budgets.covisit_budget + budgets.category_budget + budgets.popular_budget
    most += budgets.fresh_budget + budgets.trending_budget
    assert 10 <= recall.loc["merged", "candidates_per_user"] <= most
    assert recall.loc["merged", "recall@200"] > 0  # retrieval finds some of the next items


def test_second_run_adds_nothing_and_reuses_the_version(loop_run) -> None:
    settings, paths, first = loop_run
    current = retrieval_dir(settings) / CURRENT
    published = current.read_text().strip()
    manifest = (retrieval_dir(settings) / published / "manifest.json").stat().st_mtime_ns
    again = ranking_loop(str(paths["events"]), str(paths["items"]),
                         as_of=END.isoformat(), now=NOW.isoformat(),
                         home=str(settings.home))  # fmt: skip
    events = next(r for r in again.loads if r.target == "events")
    assert events.accepted == 0
    assert events.duplicates == events.read - events.quarantined
    # Same data, settings and code: no snapshot is rebuilt, no training set either, and
    # the existing version stands, no duplicate is registered.
    assert again.features.reused and not first.features.reused
    assert current.read_text().strip() == published  # the publication kept, not rewritten
    assert (retrieval_dir(settings) / published / "manifest.json").stat().st_mtime_ns == manifest
    assert again.training.reason.startswith("inputs (data, features, settings, code) unchanged")
    assert again.training.version == first.training.version
    assert not again.training.promoted
    assert again.training.champion_version == first.training.version
    assert again.training.table.loc["xgboost", "ndcg@10"] == pytest.approx(
        first.training.table.loc["xgboost", "ndcg@10"]
    )
    client = tracking.client_for(settings)
    assert len(client.search_model_versions(f"name = '{settings.publishing.model_name}'")) == 1


def test_version_carries_data_quality_and_a_drift_reference(loop_run) -> None:
    settings, _, result = loop_run
    tags = (
        tracking.client_for(settings)
        .get_model_version(settings.publishing.model_name, result.training.version)
        .tags
    )
    # A published version passed its data checks: the tag counts no failure.
    assert re.match(r"data quality (OK|WARN): \d+ checks, \d+ ok, \d+ warn, 0 fail",
                    tags["data_quality"]), tags["data_quality"]  # fmt: skip
    reference = tracking.load_frame_artifact(settings, result.training.version, "drift_reference")
    assert {"category", "score", "user_clicks_7d"} <= set(reference.columns)
    assert 0 < len(reference) <= settings.monitoring.reference_rows


def test_monitor_writes_reports_and_logs_against_the_champion(loop_run) -> None:
    settings, _, result = loop_run
    outcome = monitor_flow(as_of=END.isoformat(), home=str(settings.home))
    assert outcome.model_version == result.training.version
    report = json.loads(Path(outcome.json_path).read_text())
    # The status is the report's verdict, and only a breach retrains (retrain_on_drift).
    expected = "breach" if report["breached"] else "warn" if report["counts"]["warn"] else "ok"
    assert outcome.status == expected
    assert (outcome.retrained is not None) == report["breached"]
    names = {f["name"] for f in report["features"]}
    assert {"score", "category", "user_clicks_7d"} <= names
    assert sum(outcome.counts.values()) == len(report["features"])
    assert Path(outcome.html_path).read_text().startswith("<!DOCTYPE html>")
    client = tracking.client_for(settings)
    experiment = client.get_experiment_by_name("ranking-monitoring")
    runs = client.search_runs([experiment.experiment_id])
    assert runs and runs[0].data.tags["model_version"] == result.training.version
    page = Path(outcome.html_path).read_text()
    assert f"/#/experiments/{experiment.experiment_id}/runs/{runs[0].info.run_id}" in page
    assert outcome.alarms == sorted(outcome.alarms, key=lambda a: a.split(": ")[1][:4] != "fail")


def test_a_drift_breach_starts_the_training_flow(loop_run, monkeypatch) -> None:
    settings, _, result = loop_run
    # Thresholds so tight that ordinary week-to-week noise breaches them.
    monkeypatch.setenv("RANKING_MONITORING__DRIFT", json.dumps({
        "psi_warn": 1e-6, "psi_fail": 2e-6, "ks_pvalue": 0.999, "js_warn": 1e-6,
        "js_fail": 2e-6, "chi2_pvalue": 0.999, "min_samples": 5}))  # fmt: skip
    monkeypatch.setenv("RANKING_MONITORING__TRENDING_FEATURES", "[]")
    outcome = monitor_flow(as_of=END.isoformat(), home=str(settings.home))
    assert outcome.status == "breach"
    assert outcome.retrained is not None  # the training flow ran
    assert outcome.retrained.champion_version == result.training.version


def test_a_failing_data_check_stops_training_before_anything_is_published(loop_run) -> None:
    settings, _, _ = loop_run
    client = tracking.client_for(settings)
    before = len(client.search_model_versions(f"name = '{settings.publishing.model_name}'"))
    month_later = (END + timedelta(days=30)).isoformat()  # the newest event is 30 days old
    with pytest.raises(QualityError, match="freshness_hours"):
        train_flow(as_of=month_later, home=str(settings.home))
    assert len(client.search_model_versions(f"name = '{settings.publishing.model_name}'")) == before


def test_http_service_ranks_with_the_champion_and_logs_what_it_served(
    loop_run, tmp_path: Path
) -> None:
    settings, _, result = loop_run
    champion = aliases.current_champion_version(
        tracking.client_for(settings), settings.publishing.model_name
    )
    http = TestClient(create_app(settings, clock=lambda: NOW))
    assert http.get("/health").json() == {"status": "ok"}
    ready = http.get("/ready")
    assert ready.status_code == 200, ready.json()
    assert ready.json()["model_version"] == champion
    user = most_active_user(settings.warehouse_path)
    body = http.post("/rank", json={"user_id": user, "k": 5}).json()
    assert body["model_version"] == champion and body["fallback"] is None
    assert len(body["items"]) == 5
    by_model = [item["score"] for item in body["items"] if item["rule"] == "model"]
    assert by_model and by_model == sorted(by_model, reverse=True)
    chosen = [body["items"][3]["item_id"], body["items"][4]["item_id"], "no-such-item"]
    given = http.post("/rank", json={"user_id": user, "k": 2, "candidates": chosen}).json()
    assert {item["item_id"] for item in given["items"]} <= set(chosen[:2])
    assert given["unknown_items"] == ["no-such-item"]
    assert http.post("/rank", json={"user_id": "", "k": 0}).status_code == 422
    served = settings.raw_dir / "served" / f"served-{NOW:%Y%m%d}.jsonl"
    lines = [json.loads(line) for line in served.read_text().splitlines()]
    assert len(lines) == 7 and {line["event_type"] for line in lines} == {"impression"}
    # The log is contract input: it loads as impressions, and only once.
    report = ingest(tmp_path / "w.duckdb", served, settings.event_types, NOW)[0]
    assert report.accepted == 7 and report.quarantined == 0
    again = ingest(tmp_path / "w.duckdb", served, settings.event_types, NOW)[0]
    assert again.accepted == 0 and again.duplicates == 7


def test_registering_a_feature_reaches_the_next_model_and_the_old_one_still_serves(
    loop_run,
) -> None:
    """The README walk-through: add user_skip_rate_7d, train, and keep v1 serving."""
    settings, _, first = loop_run
    example = Path(__file__).resolve().parents[2] / "feature_repo/examples/user_skips.yaml"
    shutil.copy(example, settings.definitions_dir / "user_skips.yaml")  # in the home

    done = register_flow("user_skips", as_of=END.isoformat(), home=str(settings.home))
    assert done.service == "ranker_v2" and done.rows > 0
    assert "user_skip_rate_7d" in done.features

    trained = train_flow(as_of=END.isoformat(), home=str(settings.home))
    client = tracking.client_for(settings)
    tags = client.get_model_version(settings.publishing.model_name, trained.version).tags
    assert tags["feature_service"] == "ranker_v2"
    assert "user_skip_rate_7d" in json.loads(tags["features"])

    old = models.load_version(settings, first.training.version)
    assert old.feature_service == "ranker_v1"
    assert "user_skip_rate_7d" not in old.features
    fs = store.get_store(fitted(settings.home))
    user = most_active_user(settings.warehouse_path)
    # The old version still ranks, through its own feature service and retrieval's features.
    ranked = rank_request(settings, fs, old, user, NOW, k=3)
    assert ranked.fallback is None and ranked.model_version == old.version
    assert len(ranked.items) == 3 and ranked.items["score"].notna().all()
    rows = [{"user_id": user, "item_id": "i000001", "category": "drama",
             "request_timestamp_s": int(NOW.timestamp())}]  # fmt: skip
    served_new = store.online_features(fs, rows, "ranker_v2")
    assert "user_skip_rate_7d" in served_new.columns


def test_the_service_follows_a_moved_alias_without_a_restart(loop_run) -> None:
    """A promotion while the service runs: within a few refreshes every answer comes from
    the new champion, none failed meanwhile, and none went back to the old one."""
    settings, _, _ = loop_run
    fast = fitted(settings.home, serving={"refresh_seconds": 0.1})
    client = tracking.client_for(fast)
    name = fast.publishing.model_name
    before = aliases.current_champion_version(client, name)
    current = client.get_model_version(name, before)
    other = client.create_model_version(name, current.source, run_id=current.run_id,
                                        tags=dict(current.tags)).version  # fmt: skip
    user = most_active_user(fast.warehouse_path)
    seen = []
    try:
        with TestClient(create_app(fast, clock=lambda: NOW)) as http:
            first = http.post("/rank", json={"user_id": user, "k": 3})
            assert first.status_code == 200 and first.json()["model_version"] == before
            aliases.promote(fast, str(other), reason="e2e: alias swap")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (not seen or seen[-1] != str(other)):
                response = http.post("/rank", json={"user_id": user, "k": 3})
                assert response.status_code == 200
                seen.append(response.json()["model_version"])
                time.sleep(0.02)
            for _ in range(5):  # and it stays
                seen.append(http.post("/rank", json={"user_id": user, "k": 3}).json()[
                    "model_version"])  # fmt: skip
    finally:
        aliases.promote(fast, before, reason="e2e: alias restored")
    assert seen[-1] == str(other), seen
    swapped_at = seen.index(str(other))
    assert set(seen[:swapped_at]) <= {before} and set(seen[swapped_at:]) == {str(other)}


def _digests(root: Path) -> dict[str, str]:
    """Content digest of every file of a home but Prefect's (its own server's database)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "prefect" not in p.relative_to(root).parts
    }


def test_a_copied_home_works_on_its_own_and_leaves_the_original_untouched(
    loop_run, tmp_path: Path
) -> None:
    settings, _, _ = loop_run
    shutil.copytree(settings.home, tmp_path / "copied-home",
                    ignore=shutil.ignore_patterns("prefect"))  # fmt: skip
    copy = fitted(tmp_path / "copied-home")
    before = _digests(settings.home)
    user = most_active_user(settings.warehouse_path)

    assert store.registry_is_elsewhere(copy)
    assert tracking.relocate_local_store(copy) > 0  # artifact URIs now name the copy
    ranked_in_copy = rank_with_champion(copy, user, 10, NOW)
    # Feast on the copy (the rank above may not have needed it: the publication answers
    # when it can) applies the copy's repo afresh, never touching the original's tables.
    store.get_store(copy)
    assert not store.registry_is_elsewhere(copy)
    assert not ranked_in_copy.fallback
    old = str(settings.home).encode()
    for name in ("feast/registry.db", "mlflow/mlflow.db"):
        assert old not in (copy.home / name).read_bytes(), name
    experiment = tracking.client_for(copy).get_experiment_by_name(copy.publishing.experiment_name)
    assert experiment.artifact_location == copy.mlflow_artifact_location  # new runs land here

    assert _digests(settings.home) == before  # not one byte of the original changed
    ranked_in_original = rank_with_champion(settings, user, 10, NOW)
    assert list(ranked_in_original.items["item_id"]) == list(ranked_in_copy.items["item_id"])
