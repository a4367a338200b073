"""Test queries at the cut-off, training rows before it, and the LightGBM peer model."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from ranking.evaluation import metrics as evaluate
from ranking.ingest.contract import ingest
from ranking.settings import Settings
from ranking.training import dataset
from ranking.training import rankers as train
from ranking.warehouse import warehouse
from tests.conftest import NOW

TIMES = dataset.split_times(
    datetime(2026, 2, 1), datetime(2026, 3, 1), timedelta(days=5), timedelta(days=5)
)
# train [02-01, 02-19), valid [02-19, 02-24), test [02-24, 03-01)

ITEMS = """\
item_id,category,available
i1,a,true
i2,a,true
i3,b,true
i4,b,true
i5,c,true
i6,c,false
"""

EVENTS = """\
user_id,item_id,event_type,event_timestamp,value
ua,i1,click,2026-02-10T09:00:00,
ua,i2,purchase,2026-02-25T09:00:00,
ua,i3,view,2026-02-25T09:05:00,
ub,i1,view,2026-02-10T10:00:00,
ub,i2,view,2026-02-26T10:00:00,
uc,i7,click,2026-02-25T11:00:00,
ud,i2,click,2026-02-20T12:00:00,
ud,i3,view,2026-02-21T12:00:00,
ud,i1,click,2026-02-24T00:00:00,
ud,i4,rating,2026-02-26T12:00:00,5
ud,i6,click,2026-02-27T12:00:00,
ue,i3,click,2026-02-12T13:00:00,
ue,i3,click,2026-03-01T00:00:00,
uf,i5,click,2026-02-15T14:00:00,
uf,i5,rating,2026-02-26T14:00:00,2
"""
# ua: history, then a purchase after the cut-off            -> a test query
# ub: history, but only a view after the cut-off              -> not a query
# uc: nothing before the cut-off (and i7 exists only after it) -> not a query
# ud: history, a click exactly at the cut-off, a 5-star rating -> a test query
# ue: its second click is at `end`, outside the test window   -> not a query
# uf: history, a 2-star rating after the cut-off (label 0)    -> not a query

CUTOFF = pd.Timestamp(TIMES.test_start, tz="UTC")
KNOWN_BEFORE_CUTOFF = {"i1", "i2", "i3", "i4", "i5", "i6"}


@pytest.fixture
def small(tmp_path: Path, settings: Settings) -> Settings:
    (tmp_path / "events.csv").write_text(EVENTS)
    (tmp_path / "items.csv").write_text(ITEMS)
    reports = ingest(
        settings.warehouse_path,
        tmp_path / "events.csv",
        settings.event_types,
        NOW,
        tmp_path / "items.csv",
    )
    assert [r.accepted for r in reports] == [6, 15]
    # These tests are about sampled groups; retrieval groups: test_retrieved.py.
    return settings.updated(
        training={"candidates": "sampled", "negatives_popular": 2, "negatives_random": 2},
        evaluation={"negatives_popular": 2, "negatives_random": 2},
    )


def _holdout(settings: Settings, **kwargs) -> pd.DataFrame:
    """One cut-off (at ``TIMES.test_start``) unless ``cutoffs`` says otherwise."""
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return dataset.build_holdout_frame(con, settings, TIMES, **({"cutoffs": 1} | kwargs))


def _entities(settings: Settings) -> pd.DataFrame:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return dataset.build_entity_frame(con, settings, TIMES)


def _labels(frame: pd.DataFrame) -> dict[tuple[str, str], float]:
    met = frame[~frame["sampled"]]
    return {(u, i): y for u, i, y in met[["user_id", "item_id", "label"]].itertuples(index=False)}


def test_queries_are_returning_users_with_a_relevant_event_after_the_cutoff(small) -> None:
    frame = _holdout(small)
    assert set(frame["user_id"]) == {"ua", "ud"}
    # Every item the user met in [test_start, end), graded; the click at test_start counts.
    assert _labels(frame) == {
        ("ua", "i2"): 3.0,
        ("ua", "i3"): 0.0,
        ("ud", "i1"): 1.0,
        ("ud", "i4"): 3.0,
        ("ud", "i6"): 1.0,
    }
    assert (frame.loc[frame["sampled"], "label"] == 0).all()
    history = frame.drop_duplicates("user_id").set_index("user_id")["user_history_events"]
    assert history.to_dict() == {"ua": 1, "ud": 2}


def test_a_cutoff_tests_at_most_its_cap_of_users_a_seeded_sample(small) -> None:
    everyone = _labels(_holdout(small))
    capped = small.updated(evaluation={"test_users_per_cutoff": 1})
    frame = _holdout(capped, first_group_id=3)
    assert frame["user_id"].nunique() == 1 and set(frame["group_id"]) == {3}
    user = frame["user_id"].iloc[0]
    # The kept user keeps every label it had; the same seed keeps the same user.
    assert _labels(frame) == {k: v for k, v in everyone.items() if k[0] == user}
    assert set(_holdout(capped)["user_id"]) == {user}
    others = {u for seed in range(8)
              for u in _holdout(capped.updated(seed=seed))["user_id"]}  # fmt: skip
    assert others == {"ua", "ud"}  # a sample, not the first user by id


@pytest.mark.parametrize("full_catalogue", [False, True])
def test_one_group_per_user_stamped_at_the_cutoff(small, full_catalogue: bool) -> None:
    frame = _holdout(small, full_catalogue=full_catalogue, first_group_id=7)
    assert frame.groupby("user_id")["group_id"].nunique().eq(1).all()
    assert frame.groupby("group_id")["user_id"].nunique().eq(1).all()
    assert sorted(frame["group_id"].unique()) == [7, 8]
    assert not frame.duplicated(["group_id", "item_id"]).any()
    assert (frame["event_timestamp"] == CUTOFF).all()
    assert (frame["request_timestamp_s"] == int(CUTOFF.timestamp())).all()
    assert (frame["split"] == "test").all()
    assert frame["group_id"].is_monotonic_increasing


def test_cutoffs_tile_the_test_window_in_whole_snapshot_steps() -> None:
    day = 86400.0
    at = [c.day for c in dataset.holdout_cutoffs(TIMES, day, 4)]
    assert at == [24, 25, 27, 28]  # 5 daily steps in 4 windows: 0, 1.25, 2.5, 3.75 rounded
    assert [c.day for c in dataset.holdout_cutoffs(TIMES, day, 9)] == [24, 25, 26, 27, 28]
    assert dataset.holdout_cutoffs(TIMES, 7 * day, 4) == [TIMES.test_start]


def test_rolling_cutoffs_make_a_query_of_each_return(small) -> None:
    frame = _holdout(small, cutoffs=4, first_group_id=3)
    queries = frame.drop_duplicates("group_id")
    stamps = queries["event_timestamp"].dt.strftime("%d").tolist()
    assert list(zip(queries["group_id"], queries["user_id"], stamps, strict=True)) == [
        (3, "ud", "24"),  # the click at the first cut-off
        (4, "ua", "25"),  # the purchase
        (5, "ud", "25"),  # the 5-star rating on the 26th, labelled until the 27th
        (6, "ud", "27"),  # the click on the 27th; ue's click at `end` stays out
    ]
    assert queries["user_history_events"].tolist() == [2, 1, 3, 4]  # events before each
    labelled = frame[~frame["sampled"]]
    by_query = labelled.groupby("group_id").apply(
        lambda g: dict(zip(g["item_id"], g["label"], strict=True)), include_groups=False
    )
    assert by_query.to_dict() == {
        3: {"i1": 1.0},
        4: {"i2": 3.0, "i3": 0.0},
        5: {"i4": 3.0},
        6: {"i6": 1.0},
    }


def test_full_catalogue_offers_every_available_item(small) -> None:
    frame = _holdout(small, full_catalogue=True)
    available = {"i1", "i2", "i3", "i4", "i5"}  # i6 is not available
    for user, group in frame.groupby("user_id"):
        items = set(group["item_id"])
        assert available <= items, user
    # The unavailable i6 only where the user met it; the catalogue never overwrites a label.
    assert set(frame.loc[frame["item_id"] == "i6", "user_id"]) == {"ud"}
    assert _labels(frame) == _labels(_holdout(small))


def test_full_catalogue_has_no_item_first_seen_after_the_cutoff(small) -> None:
    frame = _holdout(small, full_catalogue=True)
    assert set(frame["item_id"]) <= KNOWN_BEFORE_CUTOFF


@pytest.mark.parametrize("group_by", ["session", "day"])
def test_entity_frame_stays_before_the_cutoff(small, group_by: str) -> None:
    settings = small.model_copy(update={"group_by": group_by})
    frame = _entities(settings)
    assert (frame["event_timestamp"] < CUTOFF).all()
    # Only relevant events before test_start make positives: ud's click at the cut-off and
    # everything after it do not; ub's view-only day teaches nothing and is dropped.
    positives = frame.loc[frame["label"] > 0, ["user_id", "item_id"]]
    assert set(positives.itertuples(index=False, name=None)) == {
        ("ua", "i1"),
        ("ue", "i3"),
        ("uf", "i5"),
        ("ud", "i2"),
    }
    assert set(frame["user_id"]) == {"ua", "ud", "ue", "uf"}
    valid = pd.Timestamp(TIMES.valid_start, tz="UTC")
    expected_split = np.where(frame["event_timestamp"] < valid, "train", "valid")
    assert (frame["split"] == expected_split).all()
    assert set(frame.loc[frame["split"] == "valid", "user_id"]) == {"ud"}


def test_entity_frame_samples_no_item_first_seen_after_the_cutoff(small) -> None:
    settings = small.model_copy(update={"negatives_popular": 20, "negatives_random": 20})
    frame = _entities(settings)
    assert set(frame["item_id"]) <= KNOWN_BEFORE_CUTOFF


# LightGBM --------------------------------------------------------------------------------


def _synthetic(groups: int, first: int, rng: np.random.Generator, size: int = 12):
    n = groups * size
    signal = rng.normal(size=n)
    label = np.digitize(signal + 0.3 * rng.normal(size=n), [0.5, 1.2, 1.8])  # 0..3
    return pd.DataFrame(
        {
            "group_id": np.repeat(np.arange(first, first + groups), size),
            "signal": signal,
            "noise": rng.normal(size=n),
            "label": label.astype(float),
        }
    )


def test_lightgbm_learns_a_signal(settings: Settings) -> None:
    rng = np.random.default_rng(0)
    fit, valid, test = (_synthetic(g, f, rng) for g, f in ((150, 0), (40, 150), (80, 190)))
    settings = settings.updated(training={"n_estimators": 40, "early_stopping_rounds": 10})
    trained = train.train_lightgbm(fit, valid, ["signal", "noise"], settings)
    assert trained.features == ["signal", "noise"]
    assert 1 <= trained.best_iteration <= 40
    scores = pd.Series(trained.model.predict(test[["signal", "noise"]]), index=test.index)
    test = test.assign(model=scores, random=rng.random(len(test)))
    model = evaluate.ranking_metrics(test, "model")["ndcg@10"]
    random = evaluate.ranking_metrics(test, "random")["ndcg@10"]
    assert model > random + 0.2, (model, random)
    assert model > 0.8
    with pytest.raises(ValueError):
        train.train_lightgbm(fit, valid.iloc[:0], ["signal", "noise"], settings)


def test_feature_importance_counts_only_the_trees_prediction_uses(settings: Settings) -> None:
    """After early stopping, the rounds past the best one must not inflate the gains."""
    rng = np.random.default_rng(1)
    fit, valid = _synthetic(150, 0, rng), _synthetic(40, 150, rng)
    settings = settings.updated(training={"n_estimators": 200, "early_stopping_rounds": 5})
    trained = train.train_ranker(fit, valid, ["signal", "noise"], settings)
    booster = trained.model.get_booster()
    assert trained.best_iteration + 1 < booster.num_boosted_rounds()  # it did stop early
    used = train.feature_importance(trained.model, ["signal", "noise"])
    every_tree = booster.get_score(importance_type="total_gain")
    assert used.sum() < sum(every_tree.values())
    assert used.index[0] == "signal"


def test_fits_sharing_prepared_splits_equal_fits_that_prepare_their_own(
    settings: Settings,
) -> None:
    """The benchmark prepares a cut-off's splits once for every seed and both models: the
    models must be the ones each fit would make on its own, and stop where they stopped."""
    rng = np.random.default_rng(2)
    fit, valid, test = (_synthetic(g, f, rng) for g, f in ((150, 0), (40, 150), (80, 190)))
    features = ["signal", "noise"]
    data = train.fit_data(fit, valid, features)
    for seed in (0, 1):
        seeded = settings.updated(seed=seed, training={"n_estimators": 60,
                                                       "early_stopping_rounds": 5})  # fmt: skip
        for trainer in (train.train_ranker, train.train_lightgbm):
            alone = trainer(fit, valid, features, seeded)
            shared = trainer(fit, valid, features, seeded, data)
            assert shared.best_iteration == alone.best_iteration
            np.testing.assert_array_equal(
                train.score(shared.model, test, features), train.score(alone.model, test, features)
            )
    xgboost = train.train_ranker(fit, valid, features, settings, data).model
    assert isinstance(xgboost, xgb.XGBRanker)  # what the registry logs and serving loads
    assert xgboost.best_score > 0.8 and xgboost.get_booster().feature_names == features
    curve = xgboost.evals_result()["validation_0"]["ndcg@10"]  # the run logs it by round
    assert len(curve) == xgboost.get_booster().num_boosted_rounds()
    with pytest.raises(ValueError):
        train.fit_data(fit, valid.iloc[:0], features)
