"""The promotion gate on a real MLflow registry (SQLite under a temporary home)."""

from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from ranking.errors import RegistryError
from ranking.publishing import aliases, champion, models, serving_model
from ranking.publishing.gate import ChampionScore, decide
from ranking.settings import Settings
from ranking.training import rankers as train
from ranking.training import reuse, tracking


def _frame(seed: int, groups: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = groups * 8
    frame = pd.DataFrame({"group_id": np.repeat(np.arange(groups), 8),
                          "f1": rng.normal(size=n), "f2": rng.normal(size=n)})  # fmt: skip
    frame["label"] = (frame["f1"] > 0.8).astype(float)
    return frame


def _log_real_version(settings: Settings, seed: int) -> str:
    """Train and log a tiny ranker through the real path (``log_and_register``)."""
    frame, valid = _frame(seed), _frame(seed + 100)
    trained = train.train_ranker(frame, valid, ["f1", "f2"], settings)
    _, version = tracking.log_and_register(
        settings,
        model=trained.model,
        features=["f1", "f2"],
        params=trained.params,
        metrics={"test_ndcg@10": 0.5},
        tags={
            "feature_service": "ranker_v1",
            "data_window": "2026-02-01T00:00/2026-03-01T00:00",
            "training_set_hash": str(seed),
            "code_version": "test",
            "training_config": tracking.training_config(settings),
        },  # fmt: skip
        example=frame,
        importance=train.feature_importance(trained.model, ["f1", "f2"]),
        tables={"evaluation": pd.DataFrame({"ndcg@10": [0.5]}, index=["xgboost"])},
        datasets={"train": frame, "valid": valid},
    )
    return version


def _register(settings: Settings, seed: int) -> str:
    """Another version of the first logged model (cheap: no new training or upload)."""
    client = tracking.client_for(settings)
    try:
        first = client.get_model_version(settings.publishing.model_name, "1")
    except Exception:  # noqa: BLE001 - no model yet: log the first one for real
        return _log_real_version(settings, seed)
    tags = first.tags | {"training_set_hash": str(seed)}
    mv = client.create_model_version(
        settings.publishing.model_name, first.source, first.run_id, tags
    )
    return str(mv.version)


@pytest.fixture
def gated(settings: Settings) -> Settings:
    return settings.updated(training={"n_estimators": 5}, publishing={"promotion_margin": 0.01})


def promote_if_better(
    settings: Settings,
    version: str,
    ndcg: float,
    champion_ndcg: float | None,
    champion_version: str | None,
    baseline_ndcg: float | None = None,
    quality_failed: str | None = None,
) -> tuple[bool, str]:
    """The training flow's gate step: decide, then write the outcome to the registry."""
    champion = ChampionScore(champion_version, champion_ndcg)
    margin = settings.publishing.promotion_margin
    decision = decide(ndcg, champion, baseline_ndcg, margin, quality_failed)
    aliases.record_decision(settings, version, decision)
    return decision.promote, decision.reason


def test_first_version_becomes_champion_then_only_a_clear_win_replaces_it(gated) -> None:
    v1 = _register(gated, 1)
    assert promote_if_better(gated, v1, 0.50, None, None) == (True, "no champion yet")
    v2 = _register(gated, 2)
    promoted, reason = promote_if_better(gated, v2, 0.505, 0.50, v1)
    assert not promoted and "does not beat" in reason  # within the margin
    assert models.load_champion(gated).version == v1
    v3 = _register(gated, 3)
    promoted, _ = promote_if_better(gated, v3, 0.45, 0.50, v1)
    assert not promoted  # a worse model is never promoted
    v4 = _register(gated, 4)
    promoted, reason = promote_if_better(gated, v4, 0.53, 0.50, v1)
    assert promoted and "beats champion v1" in reason
    champion = models.load_champion(gated)
    assert champion.version == v4 and champion.features == ["f1", "f2"]
    tags = tracking.client_for(gated).get_model_version(gated.publishing.model_name, v2).tags
    assert "does not beat" in tags["promotion"]


def test_reuse_lookup_matches_hash_code_and_training_settings(gated) -> None:
    v1 = _register(gated, 7)
    config = tracking.training_config(gated)
    assert reuse.version_trained_on(gated, "7", "test", config) == v1
    assert reuse.version_trained_on(gated, "7", "other-commit", config) is None
    assert reuse.version_trained_on(gated, "8", "test", config) is None
    fewer_rounds = gated.updated(training={"n_estimators": 6})
    assert tracking.training_config(fewer_rounds) != config
    assert reuse.version_trained_on(gated, "7", "test",
                                       tracking.training_config(fewer_rounds)) is None  # fmt: skip
    assert reuse.evaluation_of(gated, v1).loc["xgboost", "ndcg@10"] == 0.5


def test_losers_become_challenger_and_the_first_must_beat_the_baseline(gated) -> None:
    client = tracking.client_for(gated)
    v1 = _register(gated, 11)
    promoted, reason = promote_if_better(gated, v1, 0.40, None, None, baseline_ndcg=0.45)
    assert not promoted and "most-popular" in reason
    assert models.load_champion(gated) is None
    assert (
        str(client.get_model_version_by_alias(gated.publishing.model_name, "challenger").version)
        == v1
    )
    v2 = _register(gated, 12)
    promoted, _ = promote_if_better(gated, v2, 0.50, None, None, baseline_ndcg=0.45)
    assert promoted and models.load_champion(gated).version == v2
    v3 = _register(gated, 13)
    promoted, reason = promote_if_better(
        gated, v3, 0.90, 0.50, v2, quality_failed="events/freshness_hours"
    )
    assert not promoted and "data checks failed" in reason
    assert models.load_champion(gated).version == v2


def test_manual_promotion_and_rollback_walk_the_champion_history(gated) -> None:
    v1, v2, v3 = (_register(gated, s) for s in (21, 22, 23))
    aliases.promote(gated, v1, "first")
    aliases.promote(gated, v2, "looked better offline")
    aliases.promote(gated, v3, "hotfix")
    assert aliases.rollback(gated, "v3 broke the feed") == (v3, v2)
    assert models.load_champion(gated).version == v2
    assert aliases.rollback(gated, "v2 too") == (v2, v1)
    with pytest.raises(ValueError, match="nothing to roll back to"):
        aliases.rollback(gated, "no more")
    listed = aliases.list_versions(gated)
    assert list(listed["version"]) == [1, 2, 3]
    assert listed.set_index("version").loc[int(v1), "aliases"] == "champion"
    shown = aliases.describe_version(gated, v3)
    assert shown["tags"]["rolled_back"] == "v3 broke the feed"
    assert "promoted by hand: hotfix" in shown["tags"]["promotion"]


def test_a_reader_of_the_alias_never_fails_during_promotions(gated) -> None:
    import threading

    versions = [_register(gated, s) for s in (31, 32)]
    aliases.promote(gated, versions[0], "start")
    failures: list[Exception] = []
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        client = tracking.client_for(gated)
        while not stop.is_set():
            try:
                seen.add(
                    str(
                        client.get_model_version_by_alias(
                            gated.publishing.model_name, "champion"
                        ).version
                    )
                )
            except Exception as exc:  # noqa: BLE001 - any failure is what we look for
                failures.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(20):
        aliases.promote(gated, versions[i % 2], f"flip {i}")
    stop.set()
    reader.join()
    assert not failures
    assert seen <= set(versions) and seen


def test_a_version_left_incomplete_is_invisible_refused_and_later_removed(gated) -> None:
    """A run killed right after creating its version leaves it with some tags only."""
    v1 = _register(gated, 21)
    client = tracking.client_for(gated)
    name = gated.publishing.model_name
    first = client.get_model_version(name, v1)
    orphan = client.create_model_version(name, first.source, first.run_id,
                                         {"training_set_hash": "22"})  # fmt: skip
    assert list(aliases.list_versions(gated)["version"]) == [int(v1)]
    with pytest.raises(RegistryError, match="not completely registered"):
        aliases.promote(gated, str(orphan.version), "by mistake")
    with pytest.raises(RegistryError, match="no version 99"):
        aliases.promote(gated, "99", "typo")
    config = tracking.training_config(gated)
    assert reuse.version_trained_on(gated, "22", "test", config) is None  # never reused
    young = orphan.creation_timestamp + tracking.ORPHAN_AGE_MS // 2
    assert tracking.remove_orphans(client, name, young) == []  # may still be written
    old = orphan.creation_timestamp + tracking.ORPHAN_AGE_MS + 1
    assert tracking.remove_orphans(client, name, old) == [str(orphan.version)]
    remaining = [str(mv.version) for mv in client.search_model_versions(f"name = '{name}'")]
    assert remaining == [v1]


def test_a_run_shows_its_datasets_curve_and_name_and_takes_float64_input(gated) -> None:
    version = _log_real_version(gated, 31)
    client = tracking.client_for(gated)
    run = client.get_run(client.get_model_version(gated.publishing.model_name, version).run_id)
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "valid"}
    assert json.loads(inputs["train"].dataset.profile)["num_rows"] == len(_frame(31))
    curve = client.get_metric_history(run.info.run_id, "valid_ndcg_at_10_by_round")
    assert [m.step for m in curve] == list(range(len(curve))) and len(curve) >= 2
    assert run.info.run_name == f"ranker-v{version}-2026-03-01"
    model = mlflow.pyfunc.load_model(f"models:/{gated.publishing.model_name}/{version}")
    scores = model.predict(_frame(32)[["f1", "f2"]].astype("float64"))
    assert len(scores) == len(_frame(32))


def test_the_kept_champion_serves_only_while_the_alias_names_its_version(gated) -> None:
    v1, v2 = _register(gated, 41), _register(gated, 42)
    aliases.promote(gated, v1, "first")
    assert champion.kept_champion(gated) is None  # nothing kept yet: the registry answers
    assert serving_model.serving_champion(gated).version == v1
    kept = champion.kept_champion(gated)
    assert kept is not None and kept.version == v1 and kept.features == ["f1", "f2"]
    x = _frame(1)[["f1", "f2"]]
    registry = models.load_champion(gated)
    assert np.array_equal(kept.model.predict(x), registry.model.predict(x))

    aliases.promote(gated, v2, "second")
    assert champion.kept_champion(gated) is None  # v1's copy is not served for v2
    assert serving_model.serving_champion(gated).version == v2
    assert champion.kept_champion(gated).version == v2

    # A registry rebuilt since (the same number, another run): the copy is not trusted.
    meta = champion.kept_dir(gated) / f"v{v2}" / champion.META_FILE
    meta.write_text(json.dumps(json.loads(meta.read_text()) | {"run_id": "elsewhere"}))
    assert champion.kept_champion(gated) is None
