"""Business rules after scoring: each rule on a list made to trigger it, and properties
that hold for any list (hypothesis)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ranking.serving.rules import (
    CATEGORY_CAP_FILL,
    FRESH_SLOT,
    MODEL,
    UNANSWERED_FILL,
    apply_rules,
    category_cap,
)
from ranking.settings import ServingSettings

NOW = datetime(2026, 3, 1, 12)
OLD = datetime(2025, 1, 1)
#: Every rule off: the model's order, cut at k.
OFF = ServingSettings(drop_consumed=False, max_unanswered_impressions=0, fresh_slot_days=0,
                      max_category_share=1.0)  # fmt: skip


def _candidates(*rows: tuple) -> pd.DataFrame:
    """(item_id, category, score[, column=value ...]) rows."""
    frame = pd.DataFrame(
        [
            {
                "item_id": r[0],
                "category": r[1],
                "score": r[2],
                "created_at": OLD,
                **(r[3] if len(r) > 3 else {}),
            }
            for r in rows
        ]  # fmt: skip
    )
    return frame


def _ids(ruled) -> list[str]:
    return list(ruled.items["item_id"])


def test_with_every_rule_off_the_list_is_the_models_order() -> None:
    scored = _candidates(("b", "x", 0.5), ("a", "x", 0.5), ("c", "x", 0.9), ("d", "x", 0.1))
    ruled = apply_rules(scored, 3, OFF, NOW)
    assert _ids(ruled) == ["c", "a", "b"]  # ties: the smaller id first
    assert set(ruled.items["rule"]) == {MODEL}


def test_unavailable_consumed_and_unanswered_items_are_dropped_and_counted() -> None:
    scored = _candidates(
        ("gone", "x", 0.9, {"available": False}),
        ("seen", "x", 0.8, {"consumed": True}),
        ("ignored", "x", 0.7, {"unanswered_impressions": 3}),
        ("shown", "x", 0.6, {"unanswered_impressions": 2}),
        ("ok", "x", 0.5),
    )
    rules = OFF.model_copy(update={"drop_consumed": True, "max_unanswered_impressions": 3})
    ruled = apply_rules(scored, 2, rules, NOW)
    assert _ids(ruled) == ["shown", "ok"]
    assert ruled.dropped == {"unavailable": 1, "consumed": 1, "unanswered_impressions": 1,
                             "category_cap": 0}  # fmt: skip
    # The ignored item is held back, not lost: it fills a list that would be short.
    ruled = apply_rules(scored, 10, rules, NOW)
    assert _ids(ruled) == ["shown", "ok", "ignored"]
    assert list(ruled.items["rule"]) == [MODEL, MODEL, UNANSWERED_FILL]
    assert ruled.dropped["unanswered_impressions"] == 0
    # Switched off, consumed and unanswered items stay (a re-consuming domain).
    assert "seen" in _ids(apply_rules(scored, 10, OFF, NOW))
    assert "ignored" in _ids(apply_rules(scored, 10, OFF, NOW))


def test_the_category_cap_holds_a_category_to_its_share() -> None:
    scored = _candidates(("a1", "a", 0.9), ("a2", "a", 0.8), ("a3", "a", 0.7),
                         ("b1", "b", 0.6), ("c1", "c", 0.5), ("a4", "a", 0.4))  # fmt: skip
    rules = OFF.model_copy(update={"max_category_share": 0.5})
    ruled = apply_rules(scored, 4, rules, NOW)
    assert _ids(ruled) == ["a1", "a2", "b1", "c1"]
    assert ruled.dropped["category_cap"] == 1  # a3 waited; a4 was never reached
    assert category_cap(4, 0.5) == 2 and category_cap(3, 0.1) == 1


def test_the_cap_gives_way_when_nothing_else_is_left() -> None:
    scored = _candidates(("a1", "a", 0.9), ("a2", "a", 0.8), ("a3", "a", 0.7), ("b1", "b", 0.1))
    ruled = apply_rules(scored, 4, OFF.model_copy(update={"max_category_share": 0.25}), NOW)
    assert _ids(ruled) == ["a1", "b1", "a2", "a3"]
    assert list(ruled.items["rule"]) == [MODEL, MODEL, CATEGORY_CAP_FILL, CATEGORY_CAP_FILL]
    assert ruled.dropped["category_cap"] == 0


def test_a_fresh_item_takes_the_last_place_when_none_made_the_list() -> None:
    fresh = {"created_at": NOW - timedelta(days=2)}
    scored = _candidates(("o1", "x", 0.9), ("o2", "y", 0.8), ("o3", "z", 0.7),
                         ("new", "w", 0.1, fresh), ("newer", "w", 0.05, fresh))  # fmt: skip
    rules = OFF.model_copy(update={"fresh_slot_days": 7})
    ruled = apply_rules(scored, 3, rules, NOW)
    assert _ids(ruled) == ["o1", "o2", "new"]
    assert list(ruled.items["rule"]) == [MODEL, MODEL, FRESH_SLOT]
    # Created 8 days ago is not fresh for a 7-day slot; one fresh item in the list is enough.
    stale = scored.assign(created_at=[OLD, OLD, OLD, NOW - timedelta(days=8), OLD])
    assert _ids(apply_rules(stale, 3, rules, NOW)) == ["o1", "o2", "o3"]
    already = scored.assign(created_at=[OLD, NOW - timedelta(days=1), OLD, OLD, OLD])
    assert _ids(apply_rules(already, 3, rules, NOW)) == ["o1", "o2", "o3"]
    # A short list gains the fresh item without losing one.
    short = apply_rules(scored.iloc[[0, 3]], 3, rules, NOW)
    assert _ids(short) == ["o1", "new"]


_rows = st.lists(
    st.tuples(
        st.sampled_from("abcd"),
        st.floats(0, 1),
        st.booleans(),
        st.booleans(),
        st.integers(0, 5),
        st.integers(0, 30),
    ),  # fmt: skip
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(rows=_rows, k=st.integers(1, 12), share=st.sampled_from([0.1, 0.3, 0.5, 1.0]))
def test_any_list_keeps_the_rules(rows, k, share) -> None:
    """Whatever the candidates: at most k items, each once, nothing a dropping rule
    removed, never short while a candidate remains, an ignored item or a category past its
    cap only as a fill after the others, the model's order among the rest."""
    scored = pd.DataFrame([
        {"item_id": f"i{n}", "category": c, "score": s, "available": a, "consumed": u,
         "unanswered_impressions": m, "created_at": NOW - timedelta(days=d)}
        for n, (c, s, a, u, m, d) in enumerate(rows)
    ], columns=["item_id", "category", "score", "available", "consumed",
                "unanswered_impressions", "created_at"])  # fmt: skip
    rules = ServingSettings(max_category_share=share, fresh_slot_days=3,
                            max_unanswered_impressions=4)  # fmt: skip
    ruled = apply_rules(scored, k, rules, NOW)
    items = ruled.items.merge(scored, on="item_id", suffixes=("", "_in"))
    assert len(items) <= k and items["item_id"].is_unique
    assert items["available"].all() and not items["consumed"].any()
    ignored = items["unanswered_impressions"] >= 4
    assert (items.loc[ignored, "rule"] == UNANSWERED_FILL).all()
    eligible = scored[scored["available"] & ~scored["consumed"]]
    assert len(items) == min(k, len(eligible))  # never short while a candidate remains
    fills = list(items["rule"].isin([CATEGORY_CAP_FILL, UNANSWERED_FILL]))
    assert fills == sorted(fills) or items["rule"].iloc[-1] == FRESH_SLOT  # fills come last
    capped = items[items["rule"] == MODEL].groupby("category").size()
    assert (capped <= category_cap(k, share)).all()
    model = items[items["rule"] == MODEL]
    assert list(model["score"]) == sorted(model["score"], reverse=True)
    assert set(ruled.dropped) >= {"unavailable", "consumed", "unanswered_impressions"}
