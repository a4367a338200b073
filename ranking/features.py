"""Behavioural features, computed with DuckDB SQL as point-in-time snapshots.

A snapshot at time ``s`` describes each entity using only events strictly before ``s``:
events are bucketed by the snapshot cadence (``time_bucket``), and a bucket starting at
``b`` feeds snapshot ``s`` only when ``b < s``, i.e. when the whole bucket lies before ``s``.
Snapshots are taken at every cadence boundary from the first event to ``as_of``.

Each :class:`FeatureFamily` is one definition: entity keys, feature specs (name, type,
description) and the SQL that fills them. ``feature_repo/`` builds its Feast views from
these definitions, so the Parquet columns and the Feast schema cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from ranking.events import scalar, warehouse


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: ``<entity>_<signal>_<window>`` name, Feast type name and meaning."""

    name: str
    dtype: str  # "Int64" or "Float64"
    description: str


@dataclass(frozen=True)
class FeatureFamily:
    """A feature view's worth of features and the SQL that computes them."""

    name: str
    entity_keys: tuple[str, ...]
    description: str
    features: tuple[FeatureSpec, ...]
    sql: str = field(repr=False)
    ttl: timedelta = timedelta(days=2)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def parquet_path(self, features_dir: Path) -> Path:
        return features_dir / f"{self.name}.parquet"


def _f(name: str, dtype: str, description: str) -> FeatureSpec:
    return FeatureSpec(name, dtype, description)


# Common shapes. ``b`` is a bucket row, ``s`` a snapshot; windows count buckets that
# start within the window before ``s``; decay weighs a bucket by its age at ``s``.
_AGE_DAYS = "((epoch(s.ts) - epoch(b.bucket)) / 86400.0)"
_IN_1D = f"{_AGE_DAYS} <= 1.0"
_IN_7D = f"{_AGE_DAYS} <= 7.0"
_DECAY = f"pow(0.5, {_AGE_DAYS} / {{half_life}})"


def _ratio(num: str, den: str) -> str:
    return f"CASE WHEN {den} > 0 THEN ({num})::DOUBLE / ({den}) END"


USER_LONG_TERM = FeatureFamily(
    name="user_long_term",
    entity_keys=("user_id",),
    description="What a user has done over all their history before the snapshot.",
    features=(
        _f("user_events_all", "Int64", "Events of any type by the user, all history."),
        _f("user_impressions_all", "Int64", "Items shown to the user, all history."),
        _f("user_clicks_all", "Int64", "Clicks by the user, all history."),
        _f("user_plays_all", "Int64", "Plays / watches by the user, all history."),
        _f("user_purchases_all", "Int64", "Purchases by the user, all history."),
        _f("user_ctr_all", "Float64", "Clicks per impression, all history."),
        _f("user_skip_rate_all", "Float64", "Skips per play-or-skip, all history."),
        _f("user_purchase_rate_all", "Float64", "Purchases per click, all history."),
        _f("user_items_distinct_all", "Int64", "Distinct items interacted with (not shown)."),
        _f("user_avg_dwell_all", "Float64", "Mean seconds of views and plays."),
        _f("user_avg_rating_all", "Float64", "Mean rating given, all history."),
        _f("user_active_span_days_all", "Float64", "Days between first and last event."),
    ),
    sql="""
    SELECT b.user_id, s.ts AS snapshot_ts,
        sum(b.n_events) AS user_events_all,
        sum(b.n_impressions) AS user_impressions_all,
        sum(b.n_clicks) AS user_clicks_all,
        sum(b.n_plays) AS user_plays_all,
        sum(b.n_purchases) AS user_purchases_all,
        """
    + _ratio("sum(b.n_clicks)", "sum(b.n_impressions)")
    + """ AS user_ctr_all,
        """
    + _ratio("sum(b.n_skips)", "sum(b.n_skips) + sum(b.n_plays)")
    + """
            AS user_skip_rate_all,
        """
    + _ratio("sum(b.n_purchases)", "sum(b.n_clicks)")
    + """ AS user_purchase_rate_all,
        sum(b.n_new_items) AS user_items_distinct_all,
        """
    + _ratio("sum(b.dwell_sum)", "sum(b.dwell_n)")
    + """ AS user_avg_dwell_all,
        """
    + _ratio("sum(b.rating_sum)", "sum(b.rating_n)")
    + """ AS user_avg_rating_all,
        (epoch(max(b.last_ts)) - epoch(min(b.first_ts))) / 86400.0 AS user_active_span_days_all
    FROM user_buckets b JOIN snapshots s ON b.bucket < s.ts
    GROUP BY b.user_id, s.ts
    """,
)

USER_SHORT_TERM = FeatureFamily(
    name="user_short_term",
    entity_keys=("user_id",),
    description="What a user did recently: last day, last 7 days, recency-decayed.",
    features=(
        _f("user_events_1d", "Int64", "Events by the user in the last day."),
        _f("user_clicks_1d", "Int64", "Clicks by the user in the last day."),
        _f("user_events_7d", "Int64", "Events by the user in the last 7 days."),
        _f("user_clicks_7d", "Int64", "Clicks by the user in the last 7 days."),
        _f("user_plays_7d", "Int64", "Plays by the user in the last 7 days."),
        _f("user_purchases_7d", "Int64", "Purchases by the user in the last 7 days."),
        _f("user_sessions_7d", "Int64", "Sessions of the user in the last 7 days."),
        _f("user_events_per_session_7d", "Float64", "Mean session length (events), 7 days."),
        _f("user_clicks_decayed_7d", "Float64", "Clicks weighted by 0.5^(age / half-life)."),
        _f("user_days_since_last_event", "Float64", "Days from the last event to the snapshot."),
    ),
    sql="""
    SELECT b.user_id, s.ts AS snapshot_ts,
        coalesce(sum(b.n_events) FILTER (WHERE """
    + _IN_1D
    + """), 0) AS user_events_1d,
        coalesce(sum(b.n_clicks) FILTER (WHERE """
    + _IN_1D
    + """), 0) AS user_clicks_1d,
        coalesce(sum(b.n_events) FILTER (WHERE """
    + _IN_7D
    + """), 0) AS user_events_7d,
        coalesce(sum(b.n_clicks) FILTER (WHERE """
    + _IN_7D
    + """), 0) AS user_clicks_7d,
        coalesce(sum(b.n_plays) FILTER (WHERE """
    + _IN_7D
    + """), 0) AS user_plays_7d,
        coalesce(sum(b.n_purchases) FILTER (WHERE """
    + _IN_7D
    + """), 0) AS user_purchases_7d,
        coalesce(sum(b.n_sessions) FILTER (WHERE """
    + _IN_7D
    + """), 0) AS user_sessions_7d,
        """
    + _ratio(
        "sum(b.n_events) FILTER (WHERE " + _IN_7D + ")",
        "sum(b.n_sessions) FILTER (WHERE " + _IN_7D + ")",
    )
    + """ AS user_events_per_session_7d,
        sum(b.n_clicks * """
    + _DECAY
    + """) AS user_clicks_decayed_7d,
        (epoch(s.ts) - epoch(max(b.last_ts))) / 86400.0 AS user_days_since_last_event
    FROM user_buckets b JOIN snapshots s ON b.bucket < s.ts
    GROUP BY b.user_id, s.ts
    """,
)

ITEM_STATS = FeatureFamily(
    name="item_stats",
    entity_keys=("item_id",),
    description="How an item is doing: popularity raw and decayed, rates, freshness, price.",
    features=(
        _f("item_impressions_7d", "Int64", "Times the item was shown in the last 7 days."),
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
        _f("item_ctr_7d", "Float64", "Clicks per impression, last 7 days."),
        _f("item_ctr_all", "Float64", "Clicks per impression, all history."),
        _f("item_conversion_rate_all", "Float64", "Purchases per click, all history."),
        _f("item_skip_rate_all", "Float64", "Skips per play-or-skip, all history."),
        _f("item_avg_value_all", "Float64", "Mean rating, or mean dwell seconds if unrated."),
        _f("item_age_days", "Float64", "Days since the item was created (or first seen)."),
        _f("item_price", "Float64", "Catalogue price."),
    ),
    sql="""
    WITH agg AS (
        SELECT b.item_id, s.ts,
            coalesce(sum(b.n_impressions) FILTER (WHERE """
    + _IN_7D
    + """), 0) AS impr_7d,
            coalesce(sum(b.n_clicks) FILTER (WHERE """
    + _IN_7D
    + """), 0) AS clicks_7d,
            coalesce(sum(b.n_positive) FILTER (WHERE """
    + _IN_1D
    + """), 0) AS pop_1d,
            coalesce(sum(b.n_positive) FILTER (WHERE """
    + _IN_7D
    + """), 0) AS pop_7d,
            sum(b.n_positive) AS pop_all,
            sum(b.n_positive * """
    + _DECAY
    + """) AS pop_decayed,
            sum(b.n_impressions) AS impr_all, sum(b.n_clicks) AS clicks_all,
            sum(b.n_purchases) AS purchases_all, sum(b.n_skips) AS skips_all,
            sum(b.n_plays) AS plays_all,
            """
    + _ratio("sum(b.rating_sum)", "sum(b.rating_n)")
    + """ AS avg_rating,
            """
    + _ratio("sum(b.dwell_sum)", "sum(b.dwell_n)")
    + """ AS avg_dwell,
            min(b.first_ts) AS first_ts
        FROM item_buckets b JOIN snapshots s ON b.bucket < s.ts
        GROUP BY b.item_id, s.ts
    ), grid AS (
        SELECT i.item_id, s.ts FROM items i JOIN snapshots s
            ON i.created_at IS NULL OR i.created_at < s.ts
        UNION SELECT item_id, ts FROM agg
    )
    SELECT g.item_id, g.ts AS snapshot_ts,
        coalesce(a.impr_7d, 0) AS item_impressions_7d,
        coalesce(a.pop_1d, 0) AS item_popularity_1d,
        coalesce(a.pop_7d, 0) AS item_popularity_7d,
        coalesce(a.pop_all, 0) AS item_popularity_all,
        coalesce(a.pop_decayed, 0.0) AS item_popularity_decayed_7d,
        """
    + _ratio("a.clicks_7d", "a.impr_7d")
    + """ AS item_ctr_7d,
        """
    + _ratio("a.clicks_all", "a.impr_all")
    + """ AS item_ctr_all,
        """
    + _ratio("a.purchases_all", "a.clicks_all")
    + """ AS item_conversion_rate_all,
        """
    + _ratio("a.skips_all", "a.skips_all + a.plays_all")
    + """ AS item_skip_rate_all,
        coalesce(a.avg_rating, a.avg_dwell) AS item_avg_value_all,
        (epoch(g.ts) - epoch(coalesce(i.created_at, a.first_ts))) / 86400.0 AS item_age_days,
        i.price AS item_price
    FROM grid g LEFT JOIN agg a USING (item_id, ts) LEFT JOIN items i USING (item_id)
    """,
)

USER_CATEGORY = FeatureFamily(
    name="user_category",
    entity_keys=("user_id", "category"),
    description="A user's affinity for a category (an item's primary category).",
    features=(
        _f("user_category_impressions_all", "Int64", "Items of the category shown to the user."),
        _f("user_category_clicks_all", "Int64", "Clicks on the category, all history."),
        _f("user_category_ctr_all", "Float64", "Clicks per impression in the category."),
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
    sql="""
    WITH per_cat AS (
        SELECT b.user_id, b.category, s.ts,
            sum(b.n_impressions) AS impr, sum(b.n_clicks) AS clicks,
            sum(b.n_positive) AS pos, sum(b.n_positive * """
    + _DECAY
    + """) AS pos_decayed
        FROM user_category_buckets b JOIN snapshots s ON b.bucket < s.ts
        GROUP BY b.user_id, b.category, s.ts
    ), per_user AS (
        SELECT user_id, ts, sum(pos) AS pos, sum(pos_decayed) AS pos_decayed
        FROM per_cat GROUP BY user_id, ts
    )
    SELECT c.user_id, c.category, c.ts AS snapshot_ts,
        c.impr AS user_category_impressions_all,
        c.clicks AS user_category_clicks_all,
        """
    + _ratio("c.clicks", "c.impr")
    + """ AS user_category_ctr_all,
        """
    + _ratio("c.pos", "u.pos")
    + """ AS user_category_share_all,
        """
    + _ratio("c.pos_decayed", "u.pos_decayed")
    + """ AS user_category_affinity_decayed_7d
    FROM per_cat c JOIN per_user u USING (user_id, ts)
    WHERE c.pos > 0
    """,
)

#: Every family computed by :func:`compute_features`, in order.
FAMILIES: tuple[FeatureFamily, ...] = (USER_LONG_TERM, USER_SHORT_TERM, ITEM_STATS, USER_CATEGORY)

#: Request-time context features (computed by a Feast on-demand feature view).
CONTEXT_FEATURES: tuple[FeatureSpec, ...] = (
    _f("context_hour_of_day", "Int64", "Hour (UTC, 0-23) of the ranking request."),
    _f("context_day_of_week", "Int64", "Day of week of the request, Monday = 0."),
    _f("context_is_weekend", "Int64", "1 on Saturday and Sunday, else 0."),
)

# Event types whose rows count as a positive interaction with an item.
POSITIVE_TYPES = ("click", "play", "add_to_cart", "purchase", "rating")

_BUCKETS_SQL = """
CREATE OR REPLACE TEMP TABLE ev AS
SELECT e.user_id, e.item_id, e.event_type, e.event_timestamp, e.value, e.session_id,
       time_bucket(INTERVAL '{cadence_s} seconds', e.event_timestamp) AS bucket,
       coalesce(i.primary_category, 'unknown') AS category
FROM events e LEFT JOIN items i USING (item_id)
WHERE e.event_timestamp < ?::TIMESTAMP;

CREATE OR REPLACE TEMP TABLE snapshots AS
SELECT unnest(generate_series(
    greatest((SELECT min(bucket) FROM ev) + INTERVAL '{cadence_s} seconds',
             time_bucket(INTERVAL '{cadence_s} seconds', ?::TIMESTAMP)),
    ?::TIMESTAMP, INTERVAL '{cadence_s} seconds')) AS ts;
"""

_AGG_COLUMNS = """
    count(*) AS n_events,
    count(*) FILTER (WHERE event_type = 'impression') AS n_impressions,
    count(*) FILTER (WHERE event_type = 'click') AS n_clicks,
    count(*) FILTER (WHERE event_type = 'play') AS n_plays,
    count(*) FILTER (WHERE event_type = 'skip') AS n_skips,
    count(*) FILTER (WHERE event_type = 'purchase') AS n_purchases,
    count(*) FILTER (WHERE event_type IN {positive}) AS n_positive,
    sum(value) FILTER (WHERE event_type IN ('view', 'play')) AS dwell_sum,
    count(value) FILTER (WHERE event_type IN ('view', 'play')) AS dwell_n,
    sum(value) FILTER (WHERE event_type = 'rating') AS rating_sum,
    count(value) FILTER (WHERE event_type = 'rating') AS rating_n,
    count(DISTINCT session_id) AS n_sessions,
    min(event_timestamp) AS first_ts, max(event_timestamp) AS last_ts
"""


def _prepare(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime,
    cadence: timedelta,
    first_snapshot: datetime | None = None,
) -> None:
    """Bucket events and lay out the snapshot grid in temp tables.

    Snapshots start at ``first_snapshot`` (aligned to the cadence) or one cadence after
    the first event; aggregates always use the whole history before each snapshot.
    """
    cadence_s = int(cadence.total_seconds())
    if cadence_s <= 0:
        raise ValueError("snapshot cadence must be positive")
    ev_sql, snapshots_sql = _BUCKETS_SQL.format(cadence_s=cadence_s).split(";")[:2]
    con.execute(ev_sql, [as_of])
    con.execute(snapshots_sql, [first_snapshot or datetime(1970, 1, 1), as_of])
    positive = "(" + ", ".join(f"'{t}'" for t in POSITIVE_TYPES) + ")"
    aggs = _AGG_COLUMNS.format(positive=positive)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE user_buckets AS
        WITH firsts AS (
            SELECT user_id, min(bucket) AS bucket, item_id FROM ev
            WHERE event_type <> 'impression' GROUP BY user_id, item_id
        ), new_items AS (
            SELECT user_id, bucket, count(*) AS n_new_items FROM firsts GROUP BY ALL
        )
        SELECT a.*, coalesce(n.n_new_items, 0) AS n_new_items
        FROM (SELECT user_id, bucket, {aggs} FROM ev GROUP BY user_id, bucket) a
        LEFT JOIN new_items n USING (user_id, bucket);
        CREATE OR REPLACE TEMP TABLE item_buckets AS
            SELECT item_id, bucket, {aggs} FROM ev GROUP BY item_id, bucket;
        CREATE OR REPLACE TEMP TABLE user_category_buckets AS
            SELECT user_id, category, bucket, {aggs} FROM ev GROUP BY user_id, category, bucket;
        """
    )


def _typed(spec: FeatureSpec) -> str:
    sql_type = {"Int64": "BIGINT", "Float64": "DOUBLE"}[spec.dtype]
    return f"CAST({spec.name} AS {sql_type}) AS {spec.name}"


def snapshot_times(con: duckdb.DuckDBPyConnection) -> list[datetime]:
    """Snapshot times laid out by the last :func:`compute_features` on this connection."""
    return [r[0] for r in con.execute("SELECT ts FROM snapshots ORDER BY ts").fetchall()]


def compute_features(
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    as_of: datetime,
    cadence: timedelta = timedelta(days=1),
    half_life_days: float = 7.0,
    families: tuple[FeatureFamily, ...] = FAMILIES,
    first_snapshot: datetime | None = None,
) -> dict[str, int]:
    """Compute every family's snapshots up to ``as_of`` and write one Parquet file each.

    ``as_of`` is naive UTC; events at or after it are ignored. Files are replaced
    atomically (written aside, then renamed). Returns the row count of each family.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _prepare(con, as_of, cadence, first_snapshot)
    if scalar(con, "SELECT count(*) FROM snapshots") == 0:
        raise ValueError(f"no events before {as_of:%Y-%m-%d %H:%M}: nothing to snapshot")
    rows: dict[str, int] = {}
    for family in families:
        body = family.sql.format(half_life=float(half_life_days))
        keys = ", ".join(family.entity_keys)
        target = family.parquet_path(out_dir)
        tmp = target.with_suffix(".parquet.tmp")
        # Microsecond UTC timestamps: what Feast's DuckDB store can materialize.
        con.execute(
            f"""
            COPY (
                SELECT {keys}, (snapshot_ts AT TIME ZONE 'UTC') AS event_timestamp,
                       {", ".join(_typed(f) for f in family.features)}
                FROM ({body}) ORDER BY snapshot_ts, {keys}
            ) TO '{tmp}' (FORMAT parquet)
            """
        )
        tmp.replace(target)
        rows[family.name] = scalar(con, f"SELECT count(*) FROM read_parquet('{target}')")
    return rows


def first_snapshot(as_of: datetime, history_days: int | None) -> datetime | None:
    """Where the snapshot grid starts for a history window of ``history_days`` (None: all)."""
    return None if history_days is None else as_of - timedelta(days=history_days)


@dataclass
class FeatureBuild:
    """What :func:`build_feature_tables` wrote."""

    rows: dict[str, int]
    snapshots: list[datetime]


def build_feature_tables(
    warehouse_path: Path,
    out_dir: Path,
    as_of: datetime,
    cadence: timedelta,
    half_life_days: float,
    first_snapshot: datetime | None = None,
) -> FeatureBuild:
    """Open the warehouse, compute every family up to ``as_of``, return counts and snapshots."""
    with warehouse(warehouse_path) as con:
        rows = compute_features(
            con, out_dir, as_of, cadence, half_life_days, first_snapshot=first_snapshot
        )
        return FeatureBuild(rows=rows, snapshots=snapshot_times(con))
