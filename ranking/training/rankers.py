"""XGBoost learning-to-rank: ``rank:ndcg`` with query groups and early stopping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xgboost as xgb

from ranking import progress
from ranking.retrieval.merge import RETRIEVAL_FEATURES
from ranking.settings import Settings

if TYPE_CHECKING:
    import lightgbm as lgb

FIT_STEP = "XGBoost boosting rounds (early stopping may end sooner)"


@dataclass
class TrainedRanker:
    """A fitted ranker and what it was fitted on."""

    model: xgb.XGBRanker | lgb.LGBMRanker
    features: list[str]
    best_iteration: int
    params: dict


def monotone_constraints(features: list[str]) -> list[int]:
    """+1 for a retrieval score (and the number of sources), -1 for a retrieval rank, 0 for
    every other feature: a source that likes an item more never lowers it, all else equal.
    On small logs this keeps the ranker from unlearning retrieval's order (on the tiny e2e
    log NDCG@10 0.18 -> 0.20; on MovieLens 0.155 -> 0.170; on 300k generated events 0.127
    -> 0.122, seeds 0-2)."""
    retrieval = set(RETRIEVAL_FEATURES)
    return [(-1 if f.endswith("_rank") else 1) if f in retrieval else 0 for f in features]


def ranker_params(settings: Settings, features: list[str] | None = None) -> dict:
    """XGBRanker parameters from settings (logged to MLflow as they are)."""
    params = {
        "objective": "rank:ndcg",
        "eval_metric": "ndcg@10",
        "lambdarank_pair_method": "topk",
        # topk: pairs from each of the top 30 documents (LightGBM's default truncation);
        # chosen on the validation windows of the quality benchmark (NDCG@10 0.2455 with
        # 10, 0.2470 with 30; 'mean' pairs 0.238).
        "lambdarank_num_pair_per_sample": 30,
        "n_estimators": settings.training.n_estimators,
        "learning_rate": settings.training.learning_rate,
        "max_depth": settings.training.max_depth,
        "min_child_weight": settings.training.min_child_weight,
        "subsample": 0.9,
        "colsample_bytree": 0.9,
        "tree_method": "hist",
        "device": settings.training.device,
        "early_stopping_rounds": settings.training.early_stopping_rounds,
        "random_state": settings.seed,
        "n_jobs": 0,
    }
    if features and settings.training.monotone_retrieval:
        params["monotone_constraints"] = (
            "(" + ",".join(map(str, monotone_constraints(features))) + ")"
        )
    return params


def _xy(frame: pd.DataFrame, features: list[str]) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    ordered = frame.sort_values("group_id", kind="stable")  # qid must not decrease
    return ordered[features].astype("float32"), ordered["label"], ordered["group_id"]


@dataclass
class FitData:
    """The train and validation splits as the libraries take them, made once and reused by
    every fit on them (each seed, each model): ``(x, y, qid)`` per split, and XGBoost's
    quantised matrices, built on first use (the validation one on the train one's bins)."""

    features: list[str]
    train: tuple[pd.DataFrame, pd.Series, pd.Series]
    valid: tuple[pd.DataFrame, pd.Series, pd.Series]
    _matrices: tuple[xgb.QuantileDMatrix, xgb.QuantileDMatrix] | None = None

    def xgboost(self) -> tuple[xgb.QuantileDMatrix, xgb.QuantileDMatrix]:
        if self._matrices is None:
            (x, y, qid), (xv, yv, qv) = self.train, self.valid
            train = xgb.QuantileDMatrix(x, y, qid=qid)
            self._matrices = (train, xgb.QuantileDMatrix(xv, yv, qid=qv, ref=train))
        return self._matrices


def fit_data(train: pd.DataFrame, valid: pd.DataFrame, features: list[str]) -> FitData:
    """:class:`FitData` of both splits; both must have rows."""
    if train.empty or valid.empty:
        raise ValueError("training needs rows in both the train and the validation split")
    return FitData(features, _xy(train, features), _xy(valid, features))


def _booster_params(params: dict) -> dict:
    """The XGBRanker parameters under the names ``xgb.train`` takes (the round budget and
    the stopping rule are its arguments, not parameters)."""
    renamed = {"learning_rate": "eta", "random_state": "seed", "n_jobs": "nthread"}
    skipped = {"n_estimators", "early_stopping_rounds"}
    return {renamed.get(k, k): v for k, v in params.items() if k not in skipped}


def train_ranker(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    settings: Settings,
    data: FitData | None = None,
) -> TrainedRanker:
    """Fit on ``train``, stop early on ``valid`` NDCG@10 (``data``: the same splits already
    prepared by :func:`fit_data`, to share them between fits)."""
    params = ranker_params(settings, features)
    data = data or fit_data(train, valid, features)
    dtrain, dvalid = data.xgboost()
    history: dict = {}
    booster = xgb.train(
        _booster_params(params),
        dtrain,
        num_boost_round=params["n_estimators"],
        evals=[(dvalid, "validation_0")],
        early_stopping_rounds=params["early_stopping_rounds"],
        callbacks=[_Rounds(params["n_estimators"])],
        evals_result=history,
        verbose_eval=False,
    )
    model = xgb.XGBRanker(**params)  # the scikit-learn face the registry logs and loads
    model.load_model(bytearray(booster.save_raw("ubj")))
    model.evals_result_ = history  # what XGBRanker.fit keeps: the validation curve logged
    done = booster.num_boosted_rounds()
    progress.advance(FIT_STEP, done, done)  # stopped early: the bar ends where the fit did
    best = int(getattr(model, "best_iteration", params["n_estimators"] - 1))
    return TrainedRanker(model=model, features=features, best_iteration=best, params=params)


class _Rounds(xgb.callback.TrainingCallback):
    """Reports each boosting round done (``ranking.progress``)."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        progress.advance(FIT_STEP, epoch + 1, self.total)
        return False  # never stops training: early stopping does


def score(model: xgb.XGBRanker, frame: pd.DataFrame, features: list[str]) -> pd.Series:
    """Model scores for ``frame`` rows (index kept)."""
    return pd.Series(model.predict(frame[features].astype("float32")), index=frame.index)


def feature_importance(model: xgb.XGBRanker, features: list[str]) -> pd.Series:
    """Total gain per feature over the trees prediction uses, largest first (features never
    split on get 0): with early stopping, the rounds after the best one do not count."""
    booster = model.get_booster()
    best = getattr(model, "best_iteration", None)
    if best is not None:
        booster = booster[: best + 1]
    gain = booster.get_score(importance_type="total_gain")
    return pd.Series({f: gain.get(f, 0.0) for f in features}).sort_values(ascending=False)


def lightgbm_params(settings: Settings, features: list[str] | None = None) -> dict:
    """LGBMRanker parameters comparable to the XGBoost ones (same budget and depth)."""
    params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "n_estimators": settings.training.n_estimators,
        "learning_rate": settings.training.learning_rate,
        "num_leaves": 2 ** min(settings.training.max_depth, 10) - 1,
        "min_child_samples": 20,
        "min_child_weight": settings.training.min_child_weight,
        "subsample": 0.9,
        "subsample_freq": 1,
        "colsample_bytree": 0.9,
        "random_state": settings.seed,
        "n_jobs": 0,
        "verbose": -1,
    }
    if features and settings.training.monotone_retrieval:
        params["monotone_constraints"] = monotone_constraints(features)
    return params


def _group_sizes(qid: pd.Series) -> np.ndarray:
    return qid.groupby(qid.to_numpy(), sort=False).size().to_numpy()


def train_lightgbm(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: list[str],
    settings: Settings,
    data: FitData | None = None,
) -> TrainedRanker:
    """The peer model: LightGBM ``lambdarank`` on the same rows, features and stopping rule."""
    import lightgbm as lgb  # the peer model only: its import (1 s with sklearn) stays off serving

    params = lightgbm_params(settings, features)
    model = lgb.LGBMRanker(**params)
    data = data or fit_data(train, valid, features)
    (x, y, qid), (xv, yv, qv) = data.train, data.valid
    model.fit(
        x,
        y.astype(int),
        group=_group_sizes(qid),
        eval_X=(xv,),
        eval_y=(yv.astype(int),),
        eval_group=[_group_sizes(qv)],
        eval_at=[10],  # early stopping on validation NDCG@10, as for XGBoost
        callbacks=[lgb.early_stopping(settings.training.early_stopping_rounds, verbose=False)],
    )
    best = int(model.best_iteration_ or params["n_estimators"])
    return TrainedRanker(model=model, features=features, best_iteration=best, params=params)
