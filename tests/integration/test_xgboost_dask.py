"""The ranker trained by xgboost.dask on a local Dask cluster: the same model class,
stopping rule and quality as the in-process fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ranking.evaluation import metrics as evaluate
from ranking.settings import Settings
from ranking.training import distributed
from ranking.training import rankers as train
from tests.code.training.test_dataset_and_rankers import _synthetic


def test_dask_ranker_matches_the_in_process_one(settings: Settings) -> None:
    rng = np.random.default_rng(3)
    fit, valid, test = (_synthetic(g, f, rng) for g, f in ((300, 0), (60, 300), (120, 360)))
    features = ["signal", "noise"]
    settings = settings.updated(training={"n_estimators": 60, "early_stopping_rounds": 10},
                                scale={"dask_workers": 2, "train_on_dask": True})  # fmt: skip
    on_dask = distributed.fit_ranker(fit, valid, features, settings)
    alone = train.train_ranker(fit, valid, features, settings)
    assert isinstance(on_dask.model, xgb.XGBRanker)  # what the registry logs and serving loads
    assert 0 <= on_dask.best_iteration < 60
    curve = on_dask.model.evals_result()["validation_0"]["ndcg@10"]
    assert len(curve) == on_dask.model.get_booster().num_boosted_rounds()
    ndcg = {}
    for name, trained in (("dask", on_dask), ("alone", alone), ("random", None)):
        values = rng.random(len(test)) if trained is None else train.score(
            trained.model, test, features)  # fmt: skip
        scored = test.assign(score=pd.Series(values, index=test.index))
        ndcg[name] = evaluate.ranking_metrics(scored, "score")["ndcg@10"]
    assert ndcg["dask"] > ndcg["random"] + 0.2, ndcg
    assert ndcg["dask"] == pytest.approx(ndcg["alone"], abs=0.03), ndcg
