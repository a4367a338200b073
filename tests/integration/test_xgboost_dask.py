"""The ranker trained by xgboost.dask on a local Dask cluster: the same model class,
stopping rule and quality as the in-process fit.

The fit on a LocalCluster runs in ``make test-scale`` (marker ``scale``, with the
partitioned feature build); the partitioning of query groups runs in the default suite.
"""

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


@pytest.mark.scale
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


def test_no_query_group_spans_two_partitions() -> None:
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 40, size=101)  # uneven groups: row-count cuts would split some
    qid = pd.Series(np.repeat(np.arange(101), sizes))
    x = pd.DataFrame({"f": rng.random(len(qid), dtype="float32")})
    y = pd.Series(rng.integers(0, 2, len(qid)))
    parts_x, parts_y, parts_q = distributed._partitioned((x, y, qid), 4)
    assert parts_q.npartitions > 1
    groups = [set(part.compute()) for part in parts_q.to_delayed()]
    assert sum(len(g) for g in groups) == 101  # each query in exactly one partition
    assert parts_q.compute().is_monotonic_increasing  # XGBoost takes qid sorted
    assert parts_x.compute()["f"].tolist() == x["f"].tolist()  # rows and order kept
    assert parts_y.compute().tolist() == y.tolist()
