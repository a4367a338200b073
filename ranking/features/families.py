"""The built-in feature families, each as readable SQL over bucketed events.

``ranking.features.snapshots`` prepares, per snapshot time ``ts``, the views
``user_buckets_at``, ``item_buckets_at`` and ``user_category_buckets_at``: one row per
(entity, event bucket, snapshot) for every bucket that lies wholly before the snapshot,
with its counts (``n_events``, ``n_clicks``, ``n_positive``...), ``age_days`` (bucket start
to snapshot) and ``decay`` (``0.5 ^ (age_days / half-life)``). Windows filter on
``age_days``; decayed signals multiply by ``decay``. A rate is NULL where its denominator
is zero, and its denominator is never below its numerator, so that it stays in [0, 1] on
any funnel (a log may hold a purchase without the click before it, or clicks without
impressions).
"""

from __future__ import annotations

from ranking.features.specs import ENTITY_KEYS, FeatureFamily, FeatureSpec

_f = FeatureSpec

USER_LONG_TERM = FeatureFamily(
    name="user_long_term",
    entity_keys=ENTITY_KEYS["user"],
    description="What a user has done over all their history before the snapshot.",
    features=(
        _f("user_events_all", "Int64", "Events of any type by the user, all history."),
        _f(
            "user_impressions_all",
            "Int64",
            "Items shown to the user, all history.",
            needs="impressions",
        ),
        _f("user_clicks_all", "Int64", "Clicks by the user, all history.", needs="clicks"),
        _f("user_plays_all", "Int64", "Plays / watches by the user, all history.", needs="plays"),
        _f("user_purchases_all", "Int64", "Purchases by the user, all history.", needs="purchases"),
        _f("user_ctr_all", "Float64", "Clicks per impression, all history.", needs="impressions"),
        _f("user_skip_rate_all", "Float64", "Skips per play-or-skip, all history.", needs="skips"),
        _f(
            "user_purchase_rate_all",
            "Float64",
            "Share of the user's events (impressions aside) that are purchases, all history.",
            needs="purchases",
        ),
        _f("user_items_distinct_all", "Int64", "Distinct items interacted with (not shown)."),
        _f("user_avg_dwell_all", "Float64", "Mean seconds of views and plays.", needs="dwell"),
        _f("user_avg_rating_all", "Float64", "Mean rating given, all history.", needs="ratings"),
        _f("user_active_span_days_all", "Float64", "Days between first and last event."),
    ),
    sql="""
    SELECT user_id, ts AS snapshot_ts,
        sum(n_events) AS user_events_all,
        sum(n_impressions) AS user_impressions_all,
        sum(n_clicks) AS user_clicks_all,
        sum(n_plays) AS user_plays_all,
        sum(n_purchases) AS user_purchases_all,
        sum(n_clicks)::DOUBLE / nullif(greatest(sum(n_impressions), sum(n_clicks)), 0)
            AS user_ctr_all,
        sum(n_skips)::DOUBLE / nullif(sum(n_skips) + sum(n_plays), 0) AS user_skip_rate_all,
        sum(n_purchases)::DOUBLE / nullif(sum(n_events) - sum(n_impressions), 0)
            AS user_purchase_rate_all,
        sum(n_new_items) AS user_items_distinct_all,
        sum(dwell_sum) / nullif(sum(dwell_n), 0) AS user_avg_dwell_all,
        sum(rating_sum) / nullif(sum(rating_n), 0) AS user_avg_rating_all,
        (epoch(max(last_ts)) - epoch(min(first_ts))) / 86400.0 AS user_active_span_days_all
    FROM user_buckets_at
    GROUP BY user_id, ts
    """,
)

USER_SHORT_TERM = FeatureFamily(
    name="user_short_term",
    entity_keys=ENTITY_KEYS["user"],
    description="What a user did recently: last day, last 7 days, recency-decayed.",
    features=(
        _f("user_events_1d", "Int64", "Events by the user in the last day."),
        _f("user_clicks_1d", "Int64", "Clicks by the user in the last day.", needs="clicks"),
        _f("user_events_7d", "Int64", "Events by the user in the last 7 days."),
        _f("user_clicks_7d", "Int64", "Clicks by the user in the last 7 days.", needs="clicks"),
        _f("user_plays_7d", "Int64", "Plays by the user in the last 7 days.", needs="plays"),
        _f(
            "user_purchases_7d",
            "Int64",
            "Purchases by the user in the last 7 days.",
            needs="purchases",
        ),
        _f(
            "user_sessions_7d",
            "Int64",
            "Sessions of the user in the last 7 days.",
            needs="sessions",
        ),
        _f(
            "user_events_per_session_7d",
            "Float64",
            "Mean session length (events), 7 days.",
            needs="sessions",
        ),
        _f(
            "user_clicks_decayed_7d",
            "Float64",
            "Clicks weighted by 0.5^(age / half-life).",
            needs="clicks",
        ),
        _f("user_days_since_last_event", "Float64", "Days from the last event to the snapshot."),
    ),
    sql="""
    SELECT user_id, ts AS snapshot_ts,
        coalesce(sum(n_events) FILTER (WHERE age_days <= 1), 0) AS user_events_1d,
        coalesce(sum(n_clicks) FILTER (WHERE age_days <= 1), 0) AS user_clicks_1d,
        coalesce(sum(n_events) FILTER (WHERE age_days <= 7), 0) AS user_events_7d,
        coalesce(sum(n_clicks) FILTER (WHERE age_days <= 7), 0) AS user_clicks_7d,
        coalesce(sum(n_plays) FILTER (WHERE age_days <= 7), 0) AS user_plays_7d,
        coalesce(sum(n_purchases) FILTER (WHERE age_days <= 7), 0) AS user_purchases_7d,
        coalesce(sum(n_sessions) FILTER (WHERE age_days <= 7), 0) AS user_sessions_7d,
        (sum(n_events) FILTER (WHERE age_days <= 7))::DOUBLE
            / nullif(sum(n_sessions) FILTER (WHERE age_days <= 7), 0)
            AS user_events_per_session_7d,
        sum(n_clicks * decay) AS user_clicks_decayed_7d,
        (epoch(ts) - epoch(max(last_ts))) / 86400.0 AS user_days_since_last_event
    FROM user_buckets_at
    GROUP BY user_id, ts
    """,
)

ITEM_STATS = FeatureFamily(
    name="item_stats",
    entity_keys=ENTITY_KEYS["item"],
    description="How an item is doing: popularity raw and decayed, rates, freshness, price.",
    features=(
        _f(
            "item_impressions_7d",
            "Int64",
            "Times the item was shown in the last 7 days.",
            needs="impressions",
        ),
        _f("item_popularity_1d", "Int64", "Positive interactions in the last day."),
        _f(
            "item_popularity_7d",
            "Int64",
            "Positive interactions (click, play, cart, purchase, rating) in the last 7 days.",
        ),
        _f("item_popularity_all", "Int64", "Positive interactions, all history."),
        _f(
            "item_popularity_decayed_7d",
            "Float64",
            "Positive interactions weighted by 0.5^(age / half-life).",
        ),
        _f("item_ctr_7d", "Float64", "Clicks per impression, last 7 days.", needs="impressions"),
        _f("item_ctr_all", "Float64", "Clicks per impression, all history.", needs="impressions"),
        _f(
            "item_conversion_rate_all",
            "Float64",
            "Share of the item's events (impressions aside) that are purchases, all history.",
            needs="purchases",
        ),
        _f("item_skip_rate_all", "Float64", "Skips per play-or-skip, all history.", needs="skips"),
        _f("item_avg_value_all", "Float64", "Mean rating, or mean dwell seconds if unrated."),
        _f("item_age_days", "Float64", "Days since the item was created (or first seen)."),
        _f("item_price", "Float64", "Catalogue price.", needs="prices"),
    ),
    # Every catalogue item gets a row from its creation on, with or without events.
    sql="""
    WITH agg AS (
        SELECT item_id, ts,
            coalesce(sum(n_impressions) FILTER (WHERE age_days <= 7), 0) AS impr_7d,
            coalesce(sum(n_clicks) FILTER (WHERE age_days <= 7), 0) AS clicks_7d,
            coalesce(sum(n_positive) FILTER (WHERE age_days <= 1), 0) AS pop_1d,
            coalesce(sum(n_positive) FILTER (WHERE age_days <= 7), 0) AS pop_7d,
            sum(n_positive) AS pop_all,
            sum(n_positive * decay) AS pop_decayed,
            sum(n_impressions) AS impr_all,
            sum(n_clicks) AS clicks_all,
            sum(n_purchases) AS purchases_all,
            sum(n_events) - sum(n_impressions) AS engaged_all,
            sum(n_skips) AS skips_all,
            sum(n_plays) AS plays_all,
            sum(rating_sum) / nullif(sum(rating_n), 0) AS avg_rating,
            sum(dwell_sum) / nullif(sum(dwell_n), 0) AS avg_dwell,
            min(first_ts) AS first_ts
        FROM item_buckets_at
        GROUP BY item_id, ts
    ), grid AS (
        SELECT i.item_id, s.ts
        FROM items i JOIN snapshots s ON i.created_at IS NULL OR i.created_at < s.ts
        UNION
        SELECT item_id, ts FROM agg
    )
    SELECT g.item_id, g.ts AS snapshot_ts,
        coalesce(a.impr_7d, 0) AS item_impressions_7d,
        coalesce(a.pop_1d, 0) AS item_popularity_1d,
        coalesce(a.pop_7d, 0) AS item_popularity_7d,
        coalesce(a.pop_all, 0) AS item_popularity_all,
        coalesce(a.pop_decayed, 0.0) AS item_popularity_decayed_7d,
        a.clicks_7d::DOUBLE / nullif(greatest(a.impr_7d, a.clicks_7d), 0) AS item_ctr_7d,
        a.clicks_all::DOUBLE / nullif(greatest(a.impr_all, a.clicks_all), 0) AS item_ctr_all,
        a.purchases_all::DOUBLE / nullif(a.engaged_all, 0) AS item_conversion_rate_all,
        a.skips_all::DOUBLE / nullif(a.skips_all + a.plays_all, 0) AS item_skip_rate_all,
        coalesce(a.avg_rating, a.avg_dwell) AS item_avg_value_all,
        -- An item met before its catalogue date existed then: its age counts from the first.
        (epoch(g.ts) - epoch(least(i.created_at, a.first_ts))) / 86400.0 AS item_age_days,
        i.price AS item_price
    FROM grid g
    LEFT JOIN agg a USING (item_id, ts)
    LEFT JOIN items i USING (item_id)
    """,
)

USER_CATEGORY = FeatureFamily(
    name="user_category",
    entity_keys=ENTITY_KEYS["user_category"],
    description="A user's affinity for a category (an item's primary category).",
    features=(
        _f(
            "user_category_impressions_all",
            "Int64",
            "Items of the category shown to the user.",
            needs="impressions",
        ),
        _f(
            "user_category_clicks_all",
            "Int64",
            "Clicks on the category, all history.",
            needs="clicks",
        ),
        _f(
            "user_category_ctr_all",
            "Float64",
            "Clicks per impression in the category.",
            needs="impressions",
        ),
        _f(
            "user_category_share_all",
            "Float64",
            "Share of the user's positive interactions that fell in the category, all history.",
        ),
        _f(
            "user_category_affinity_decayed_7d",
            "Float64",
            "Share of the user's decayed "
            "positive interactions that fell in the category (follows drifting tastes).",
        ),
    ),
    # Only categories the user engaged with positively: one row per (user, category) seen.
    sql="""
    WITH per_category AS (
        SELECT user_id, category, ts,
            sum(n_impressions) AS impressions,
            sum(n_clicks) AS clicks,
            sum(n_positive) AS positive,
            sum(n_positive * decay) AS positive_decayed
        FROM user_category_buckets_at
        GROUP BY user_id, category, ts
    ), per_user AS (
        SELECT user_id, ts, sum(positive) AS positive, sum(positive_decayed) AS positive_decayed
        FROM per_category
        GROUP BY user_id, ts
    )
    SELECT c.user_id, c.category, c.ts AS snapshot_ts,
        c.impressions AS user_category_impressions_all,
        c.clicks AS user_category_clicks_all,
        c.clicks::DOUBLE / nullif(greatest(c.impressions, c.clicks), 0) AS user_category_ctr_all,
        c.positive::DOUBLE / nullif(u.positive, 0) AS user_category_share_all,
        c.positive_decayed / nullif(u.positive_decayed, 0) AS user_category_affinity_decayed_7d
    FROM per_category c JOIN per_user u USING (user_id, ts)
    WHERE c.positive > 0
    """,
)

#: Every built-in family, in the order they are computed.
FAMILIES: tuple[FeatureFamily, ...] = (USER_LONG_TERM, USER_SHORT_TERM, ITEM_STATS, USER_CATEGORY)
