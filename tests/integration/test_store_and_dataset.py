"""Real DuckDB + Feast: training rows see only the past; the online store serves the newest."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from ranking.features import store
from ranking.ingest import synth
from ranking.settings import Settings
from ranking.training import dataset
from ranking.warehouse import warehouse
from tests.conftest import END
from tests.integration.homes import applied_home, newest_window


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory, small_data: synth.SynthData):
    """A home with events ingested, features computed, `feast apply` run, materialized."""
    settings, build = applied_home(
        tmp_path_factory.mktemp("home"),
        small_data,
        training={"valid_window": "P5D", "test_window": "P5D"},
    )
    fs = store.get_store(settings)
    store.materialize_latest(fs, *newest_window(settings, build))
    times = dataset.split_times(min(build.snapshots), END, timedelta(days=5), timedelta(days=5))
    frame, names = dataset.build_training_set(settings.warehouse_path, fs, settings, times)
    return settings, fs, build, frame, names, times


def test_training_rows_never_see_features_from_after_their_timestamp(applied) -> None:
    settings, _, _, frame, _, _ = applied
    rows = frame[["user_id", "item_id", "event_timestamp", "user_events_all",
                  "item_popularity_all"]].copy()  # fmt: skip
    rows["ts"] = rows["event_timestamp"].dt.tz_convert(None)
    with warehouse(settings.warehouse_path, read_only=True) as con:
        con.register("rows", rows.drop(columns="event_timestamp"))
        truth = con.execute(
            """
            SELECT r.user_id, r.item_id, r.ts, r.user_events_all, r.item_popularity_all,
                (SELECT count(*) FROM events e WHERE e.user_id = r.user_id
                   AND e.event_timestamp < date_trunc('day', r.ts)) AS user_before,
                (SELECT count(*) FROM events e WHERE e.item_id = r.item_id
                   AND e.event_type IN ('click', 'play', 'add_to_cart', 'purchase', 'rating')
                   AND e.event_timestamp < date_trunc('day', r.ts)) AS item_before
            FROM rows r
            """
        ).df()
    # A user with no events before the row's day has no snapshot row: NaN, never a count.
    seen = truth["user_before"] > 0
    assert np.array_equal(truth.loc[seen, "user_events_all"], truth.loc[seen, "user_before"])
    assert truth.loc[~seen, "user_events_all"].isna().all()
    known = truth["item_popularity_all"].notna()
    assert known.mean() > 0.9
    assert np.array_equal(truth.loc[known, "item_popularity_all"],
                          truth.loc[known, "item_before"])  # fmt: skip


def test_entity_frame_labels_negatives_and_time_splits(applied) -> None:
    settings, _, _, frame, names, times = applied
    assert set(frame["label"].unique()) <= {0.0, 1.0, 2.0, 3.0}
    per_group = frame.groupby("group_id")
    assert (per_group["label"].max() > 0).all()
    # Groups are retrieved candidates (the default): every training row was proposed by a
    # source, and the negatives are the retrieved items the user did not take.
    fit_rows = frame[frame["split"] != "test"]
    assert (fit_rows["sources"].str.len() > 0).all()
    negatives = fit_rows.groupby("group_id")["label"].apply(lambda y: (y == 0).sum())
    assert (negatives > 0).mean() > 0.95
    assert fit_rows.groupby("group_id").size().max() <= settings.training.candidates_per_group
    test = frame[frame["split"] == "test"]
    assert (test.loc[~test["retrieved"].astype(bool), "label"] > 0).all()  # what retrieval missed
    assert {"retrieval_score", "retrieval_covisit_score", "retrieval_sources"} <= set(names)
    assert not frame.duplicated(["group_id", "item_id"]).any()
    ts = frame["event_timestamp"].dt.tz_convert(None)
    assert (ts[frame["split"] == "train"] < pd.Timestamp(times.valid_start)).all()
    assert (ts[frame["split"] == "test"] >= pd.Timestamp(times.test_start)).all()
    assert frame["group_id"].is_monotonic_increasing
    assert {"user_clicks_7d", "item_popularity_decayed_7d", "user_category_share_all",
            "context_hour_of_day"} <= set(names)  # fmt: skip
    # Request-time context comes from the group's start time.
    hours = frame["event_timestamp"].dt.hour.to_numpy()
    assert np.array_equal(frame["context_hour_of_day"].to_numpy(), hours)


def test_purchase_outranks_click_in_labels(applied) -> None:
    settings: Settings = applied[0]
    frame = applied[3]
    with warehouse(settings.warehouse_path, read_only=True) as con:
        bought = set(
            con.execute(
                "SELECT DISTINCT session_id || item_id FROM events WHERE event_type = 'purchase'"
            )
            .df()
            .iloc[:, 0]  # fmt: skip
        )
    assert bought  # the generated data has purchases
    assert frame["label"].max() == 3.0


def test_online_store_serves_the_newest_snapshot(applied) -> None:
    settings, fs, build, _, _, _ = applied
    latest = pd.read_parquet(settings.features_dir / "user_long_term.parquet")
    newest = latest[latest["event_timestamp"] == latest["event_timestamp"].max()]
    user = newest.sort_values("user_events_all").iloc[-1]
    online = store.online_features(
        fs,
        [
            {
                "user_id": user["user_id"],
                "item_id": "i000001",
                "category": "drama",
                "request_timestamp_s": 1_772_000_000,
            }
        ],  # fmt: skip
        store.service_name(settings),
    )
    assert online.loc[0, "user_events_all"] == user["user_events_all"]
    assert online.loc[0, "user_clicks_all"] == user["user_clicks_all"]
    assert max(build.snapshots) == END


def test_feature_memo_joins_what_feast_joins_and_fetches_only_new_rows(applied) -> None:
    settings, fs, _, frame, names, times = applied
    memo = store.FeatureMemo()
    first = frame.drop(columns=names[:3]).iloc[: len(frame) // 2]  # some rows, some features
    memo.join(fs, first, store.service_name(settings))
    held = len(memo.rows)
    # The whole frame again: the first half comes from the memo, the rest from Feast.
    again, _ = dataset.build_training_set(settings.warehouse_path, fs, settings, times, memo)
    assert len(memo.rows) > held
    assert len(memo.rows) == len(again[list(store.FeatureMemo.KEYS)].drop_duplicates())
    compared = ["group_id", "user_id", "item_id", "label", *names]
    pd.testing.assert_frame_equal(again[compared], frame[compared], check_dtype=False)
    rows = len(memo.rows)
    dataset.build_training_set(settings.warehouse_path, fs, settings, times, memo)
    assert len(memo.rows) == rows  # nothing new to fetch


def test_joining_distinct_keys_equals_feasts_join_of_every_row(applied) -> None:
    """Feast joins each view group on the distinct (keys, timestamp) rows and the values
    are broadcast back: the frame equals Feast's own join of the whole entity frame."""
    settings, fs, _, frame, names, _ = applied
    entities = frame.drop(columns=names).iloc[::3].reset_index(drop=True)
    assert entities.duplicated(["user_id", "event_timestamp"]).any()  # broadcasting happens
    ours = store.historical_features(fs, entities, store.service_name(settings), chunk_rows=500)
    service = fs.get_feature_service(store.service_name(settings))
    feasts = fs.get_historical_features(entity_df=entities, features=service).to_df()
    feasts = feasts.astype({"event_timestamp": entities["event_timestamp"].dtype})
    keys = ["group_id", "item_id"]
    ours = ours.sort_values(keys, ignore_index=True)
    feasts = feasts.sort_values(keys, ignore_index=True)[list(ours.columns)]
    assert list(ours.columns) == list(feasts.columns) and len(ours) == len(entities)
    feature_names = [n for n in names if n in ours.columns]
    assert len(feature_names) > 30
    rows = ["group_id", "user_id", "item_id", "category", "event_timestamp", "label"]
    pd.testing.assert_frame_equal(ours[rows], feasts[rows], check_dtype=False)
    x = ours[feature_names].to_numpy(dtype=np.float32)
    y = feasts[feature_names].to_numpy(dtype=np.float32)
    assert np.array_equal(x, y, equal_nan=True)
    assert ours[feature_names].dtypes.eq(np.float32).all()
