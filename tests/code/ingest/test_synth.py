"""Generated data: seeded, shaped like a real feed's log, with drifting tastes."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from ranking.ingest import synth

CFG = synth.SynthConfig(events=30_000, days=28, end=datetime(2026, 3, 1), seed=5)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = synth.generate(CFG), synth.generate(CFG)
    assert a.events.equals(b.events)
    assert a.items.equals(b.items)
    other = synth.generate(synth.SynthConfig(events=30_000, days=28, end=CFG.end, seed=6))
    assert not a.events.equals(other.events)


def test_events_cover_the_funnel_inside_the_window() -> None:
    events = synth.generate(CFG).events.to_pandas()
    assert 25_000 <= len(events) <= 40_000
    counts = events["event_type"].astype(str).value_counts()
    for kind in ("impression", "view", "click", "play", "skip", "add_to_cart", "purchase"):
        assert counts.get(kind, 0) > 0, kind
    # A funnel: more impressions than clicks, more clicks than purchases.
    assert counts["impression"] > counts["click"] > counts["purchase"]
    ts = pd.to_datetime(events["event_timestamp"]).dt.tz_localize(None)
    assert ts.min() >= pd.Timestamp(CFG.start) and ts.max() < pd.Timestamp(CFG.end)
    shown = events[events["event_type"] == "impression"]
    assert shown["position"].between(1, CFG.slate_size).all()  # 1-based slots
    plays = events[events["event_type"] == "play"]
    assert (plays["value"] > 0).all()  # watch seconds


def test_items_have_the_catalogue_columns() -> None:
    items = synth.generate(CFG).items
    assert {"item_id", "category", "created_at", "price", "available"} <= set(items.columns)
    assert items["item_id"].is_unique
    assert (items["price"] >= 0).all()
    assert items["available"].any() and not items["available"].all()
    assert items["category"].str.contains("|", regex=False).any()  # multi-category items


def test_tastes_and_popularity_shift_over_time() -> None:
    data = synth.generate(CFG)
    events = data.events.to_pandas()
    events["day"] = pd.to_datetime(events["event_timestamp"]).dt.tz_localize(None).dt.floor("D")
    clicks = events[events["event_type"] == "click"]
    cats = data.items.set_index("item_id")["category"].str.split("|").str[0]
    clicks = clicks.assign(category=clicks["item_id"].astype(str).map(cats))
    first = clicks[clicks["day"] < clicks["day"].min() + pd.Timedelta(days=7)]
    last = clicks[clicks["day"] >= clicks["day"].max() - pd.Timedelta(days=6)]
    share_first = first["category"].value_counts(normalize=True)
    share_last = last["category"].value_counts(normalize=True)
    total_variation = share_first.sub(share_last, fill_value=0).abs().sum() / 2
    assert total_variation > 0.03  # category mix moved between the first and last week
    top_first = set(first["item_id"].value_counts().head(20).index)
    top_last = set(last["item_id"].value_counts().head(20).index)
    assert len(top_first & top_last) < 20  # the most popular items changed


def test_dirty_batch_holds_duplicates_and_bad_rows() -> None:
    data = synth.generate(CFG)
    dirty = data.dirty
    repeated = dirty["event_id"].isin(data.events.column("event_id").to_pandas())
    assert repeated.sum() == CFG.dirty_rows  # late copies of events already sent
    assert (~repeated).sum() > 0
    assert dirty["user_id"].isna().any()
    assert (~dirty["event_type"].isin(["impression", "view", "click", "play", "skip",
                                       "add_to_cart", "purchase"])).any()  # fmt: skip
