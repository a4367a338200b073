"""The promotion gate on a real MLflow registry (SQLite under a temporary home)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ranking import registry, train
from ranking.config import Settings


def _frame(seed: int, groups: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = groups * 8
    frame = pd.DataFrame({"group_id": np.repeat(np.arange(groups), 8),
                          "f1": rng.normal(size=n), "f2": rng.normal(size=n)})  # fmt: skip
    frame["label"] = (frame["f1"] > 0.8).astype(float)
    return frame


def _register(settings: Settings, seed: int) -> str:
    frame = _frame(seed)
    trained = train.train_ranker(frame, _frame(seed + 100), ["f1", "f2"], settings)
    _, version = registry.log_and_register(
        settings,
        model=trained.model,
        features=["f1", "f2"],
        params=trained.params,
        metrics={"test_ndcg@10": 0.5},
        tags={
            "feature_service": "ranker_v1",
            "data_window": "w",
            "training_set_hash": str(seed),
            "code_version": "test",
        },  # fmt: skip
        example=frame,
        importance=train.feature_importance(trained.model, ["f1", "f2"]),
        tables={"evaluation": pd.DataFrame({"ndcg@10": [0.5]}, index=["xgboost"])},
    )
    return version


@pytest.fixture
def gated(settings: Settings) -> Settings:
    return settings.model_copy(update={"n_estimators": 5, "promotion_margin": 0.01})


def test_first_version_becomes_champion_then_only_a_clear_win_replaces_it(gated) -> None:
    v1 = _register(gated, 1)
    assert registry.promote_if_better(gated, v1, 0.50, None, None) == (True, "no champion yet")
    v2 = _register(gated, 2)
    promoted, reason = registry.promote_if_better(gated, v2, 0.505, 0.50, v1)
    assert not promoted and "does not beat" in reason  # within the margin
    assert registry.load_champion(gated).version == v1
    v3 = _register(gated, 3)
    promoted, _ = registry.promote_if_better(gated, v3, 0.45, 0.50, v1)
    assert not promoted  # a worse model is never promoted
    v4 = _register(gated, 4)
    promoted, reason = registry.promote_if_better(gated, v4, 0.53, 0.50, v1)
    assert promoted and "beats champion v1" in reason
    champion = registry.load_champion(gated)
    assert champion.version == v4 and champion.features == ["f1", "f2"]
    tags = registry.client_for(gated).get_model_version(gated.model_name, v2).tags
    assert "does not beat" in tags["promotion"]


def test_reuse_lookup_matches_hash_and_code(gated) -> None:
    v1 = _register(gated, 7)
    assert registry.version_trained_on(gated, "7", "test") == v1
    assert registry.version_trained_on(gated, "7", "other-commit") is None
    assert registry.version_trained_on(gated, "8", "test") is None
    assert registry.evaluation_of(gated, v1).loc["xgboost", "ndcg@10"] == 0.5
