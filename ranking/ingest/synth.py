"""Generated behavioural data that looks like a real feed's (the embedded default).

Users have tastes over categories, and some users' tastes drift during the period.
Items have categories, creation dates, prices, availability and a popularity that rises
or fades. Each session shows a user a slate of items at positions (impressions); the
user clicks some, views them, plays them (with watch time) or skips them, and adds some
to the cart and buys a share of those. Everything is drawn from one seeded generator,
vectorised with NumPy so 10M events take seconds, and written with the data contract's
columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

CATEGORIES = [
    "drama", "comedy", "action", "documentary", "kids", "music",
    "sports", "news", "scifi", "romance", "horror", "travel",
]  # fmt: skip

#: Share of the hours of the day at which sessions start (evening peak).
_HOURLY_SHAPE = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 2.5, 2.5, 2.4, 2.5,
     3, 2.8, 2.6, 2.6, 2.8, 3.2, 4, 5, 5.5, 5, 3.5, 2],
    dtype=float,
)  # fmt: skip


@dataclass(frozen=True)
class SynthConfig:
    """Size and shape of a generated data set."""

    events: int = 300_000
    days: int = 42
    end: datetime = datetime(2026, 1, 1)
    seed: int = 7
    slate_size: int = 10
    drifting_user_share: float = 0.3
    #: A fault to inject: drifting users' tastes move towards this one category.
    taste_shift_to: str | None = None
    dirty_rows: int = 40

    @property
    def n_users(self) -> int:
        return max(50, self.events // 150)

    @property
    def n_items(self) -> int:
        return max(60, self.events // 300)

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.days)


@dataclass
class SynthData:
    """What :func:`generate` produced."""

    events: pa.Table
    items: pd.DataFrame
    dirty: pd.DataFrame


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_items(cfg: SynthConfig, rng: np.random.Generator) -> pd.DataFrame:
    n, n_cat = cfg.n_items, len(CATEGORIES)
    cat_share = rng.dirichlet(np.full(n_cat, 3.0))
    primary = rng.choice(n_cat, size=n, p=cat_share)
    primary[:n_cat] = np.arange(n_cat)  # every category has items
    secondary = rng.integers(0, n_cat, size=n)
    has_secondary = (rng.random(n) < 0.3) & (secondary != primary)
    age_days = np.where(
        rng.random(n) < 0.7,
        -rng.uniform(1, 365, size=n),  # catalogue that existed before the period
        rng.uniform(0, cfg.days, size=n),  # new releases during the period
    )
    age_days[:n_cat] = -30.0
    created = pd.Timestamp(cfg.start) + pd.to_timedelta(age_days, unit="D")
    category = np.array(CATEGORIES, dtype=object)[primary]
    category = np.where(
        has_secondary,
        category + "|" + np.array(CATEGORIES, dtype=object)[secondary],
        category,
    )
    return pd.DataFrame(
        {
            "item_id": [f"i{i:06d}" for i in range(n)],
            "category": category,
            "created_at": created.floor("s"),
            "price": np.round(rng.lognormal(2.3 + 0.1 * primary % 5, 0.6, size=n), 2),
            "available": rng.random(n) > 0.05,
            "_primary": primary,
            "_quality": rng.normal(0, 1, size=n),
            "_trend": rng.normal(0, 1.2, size=n),
            "_age0": age_days,
        }
    )


def _slot_items(
    cfg: SynthConfig,
    items: pd.DataFrame,
    day: np.ndarray,
    cat: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Pick an item of category ``cat`` for each slot, by that day's popularity."""
    n_cat = len(CATEGORIES)
    order = np.argsort(items["_primary"].to_numpy(), kind="stable")
    prim = items["_primary"].to_numpy()[order]
    quality = items["_quality"].to_numpy()[order]
    trend = items["_trend"].to_numpy()[order]
    age0 = items["_age0"].to_numpy()[order]
    out = np.empty(cat.shape, dtype=np.int64)
    for d in np.unique(day):
        rows = day == d
        frac = d / max(cfg.days - 1, 1)
        age = d - age0
        weight = np.exp(0.8 * quality + trend * (frac - 0.5)) * (1 + 3 * np.exp(-age / 7))
        weight = np.where(age > 0, weight, 0.0)  # not released yet: not shown
        # One increasing array: category c spans (c, c + 1], so c + u finds an item of c.
        cum = np.zeros(len(weight))
        for c in range(n_cat):
            seg = prim == c
            w = np.cumsum(weight[seg])
            cum[seg] = c + (w / w[-1] if w[-1] > 0 else np.linspace(0, 1, seg.sum() + 1)[1:])
        target = cat[rows] + rng.random(rows.sum())
        out[rows] = order[np.minimum(np.searchsorted(cum, target), len(cum) - 1)]
    return out


def click_logit(affinity: np.ndarray, quality: np.ndarray, position: np.ndarray) -> np.ndarray:
    """The logit of a click on an item shown at ``position`` (1 = top): the user's taste
    for its category (``affinity``, 1 = average), its hidden quality, and examination
    falling with the rank. At position 1 it is the item's hidden appeal to the user."""
    return -2.4 + 0.9 * np.log(affinity + 0.1) + 0.6 * quality - 0.1 * position


def react(
    affinity: np.ndarray, quality: np.ndarray, price: np.ndarray, position: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    """How users react to shown items (arrays of one shape): masks of click, play, skip,
    add to cart and purchase, then dwell and watch seconds. The choice model of the
    generated data and of the simulated audience (``ranking.simulation``)."""
    log_aff = np.log(affinity + 0.1)
    click = rng.random(affinity.shape) < sigmoid(click_logit(affinity, quality, position))
    play = click & (rng.random(affinity.shape) < sigmoid(0.2 + 0.8 * log_aff + 0.5 * quality))
    skip = click & ~play & (rng.random(affinity.shape) < 0.85)
    cart = click & (
        rng.random(affinity.shape)
        < sigmoid(-1.6 + 0.6 * log_aff + 0.4 * quality - 0.3 * np.log(price / 10))
    )
    buy = cart & (rng.random(affinity.shape) < 0.45)
    dwell = rng.lognormal(3.0 + 0.3 * log_aff, 0.5)
    watch = rng.lognormal(6.0 + 0.4 * log_aff + 0.2 * quality, 0.6)
    return click, play, skip, cart, buy, dwell, watch


def generate(cfg: SynthConfig) -> SynthData:
    """Generate events, items and a small batch of dirty rows, all from ``cfg.seed``."""
    rng = np.random.default_rng(cfg.seed)
    n_cat = len(CATEGORIES)
    items = generate_items(cfg, rng)

    n_users = cfg.n_users
    taste0 = rng.dirichlet(np.full(n_cat, 0.35), size=n_users)
    taste1 = rng.dirichlet(np.full(n_cat, 0.35), size=n_users)
    drifts = rng.random(n_users) < cfg.drifting_user_share
    if cfg.taste_shift_to is not None:  # drawn above either way, so seeds stay comparable
        target = np.eye(n_cat)[list(CATEGORIES).index(cfg.taste_shift_to)]
        taste1 = 0.2 * taste1 + 0.8 * target
    activity = rng.lognormal(0, 1.0, size=n_users)
    join_day = np.where(rng.random(n_users) < 0.8, 0.0, rng.uniform(0, cfg.days * 0.8, n_users))

    # Sessions: who, when.
    events_per_slot = 1.31
    n_sessions = max(1, int(cfg.events / (cfg.slate_size * events_per_slot)))
    user = rng.choice(n_users, size=n_sessions, p=activity / activity.sum())
    day_float = join_day[user] + rng.random(n_sessions) * (cfg.days - join_day[user])
    day = np.minimum(day_float.astype(np.int64), cfg.days - 1)
    hour = rng.choice(24, size=n_sessions, p=_HOURLY_SHAPE / _HOURLY_SHAPE.sum())
    second = day * 86400 + hour * 3600 + rng.integers(0, 3600, size=n_sessions)
    frac = (day_float / cfg.days)[:, None]
    taste = np.where(drifts[user][:, None], (1 - frac) * taste0[user] + frac * taste1[user],
                     taste0[user])  # fmt: skip

    # Slates: half the slots follow the user's taste, half the feed's global mix.
    s = cfg.slate_size
    own = rng.random((n_sessions, s)) < 0.5
    cum_taste = np.cumsum(taste, axis=1)
    u = rng.random((n_sessions, s))
    cat_own = (cum_taste[:, None, :] < u[..., None]).sum(-1)
    cat_any = rng.integers(0, n_cat, size=(n_sessions, s))
    cat = np.minimum(np.where(own, cat_own, cat_any), n_cat - 1)
    day_slot = np.repeat(day, s)
    item = _slot_items(cfg, items, day_slot, cat.ravel(), rng).reshape(n_sessions, s)
    position = np.tile(np.arange(1, s + 1), (n_sessions, 1))

    item_cat = items["_primary"].to_numpy()[item]
    affinity = np.take_along_axis(taste, item_cat, axis=1) * n_cat
    quality = items["_quality"].to_numpy()[item]
    price = items["price"].to_numpy()[item]
    click, play, skip, cart, buy, dwell, watch = react(affinity, quality, price, position, rng)

    t0 = second[:, None] + position * 4
    kinds = [
        ("impression", np.ones_like(click), t0, np.full(item.shape, np.nan)),
        ("click", click, t0 + 2, np.full(item.shape, np.nan)),
        ("view", click, t0 + 3, np.round(dwell, 1)),
        ("play", play, t0 + 3 + dwell, np.round(watch, 1)),
        ("skip", skip, t0 + 3 + dwell, np.round(rng.uniform(1, 20, item.shape), 1)),
        ("add_to_cart", cart, t0 + 5 + dwell, price),
        ("purchase", buy, t0 + 40 + dwell, price),
    ]
    parts = []
    sess_idx = np.broadcast_to(np.arange(n_sessions)[:, None], item.shape)
    user_idx = np.broadcast_to(user[:, None], item.shape)
    for code, (_, mask, ts, value) in enumerate(kinds):
        parts.append(
            pd.DataFrame(
                {
                    "u": user_idx[mask],
                    "i": item[mask],
                    "k": np.full(mask.sum(), code, dtype=np.int8),
                    "t": np.asarray(ts)[mask].astype(np.int64),
                    "v": value[mask],
                    "s": sess_idx[mask],
                    "p": position[mask],
                }
            )
        )
    ev = pd.concat(parts, ignore_index=True).sort_values(["t", "s", "k"], kind="stable")
    ev = ev[ev["t"] < cfg.days * 86400]  # nothing at or after ``end``
    start_us = np.int64(pd.Timestamp(cfg.start).value // 1000)
    ts_us = start_us + ev["t"].to_numpy() * 1_000_000
    # Strings through Arrow dictionaries: 10M ids without a Python loop.
    user_vocab = pa.array([f"u{i:06d}" for i in range(n_users)])
    item_vocab = pa.array(items["item_id"].tolist())
    kind_vocab = pa.array([k[0] for k in kinds])
    n = len(ev)
    event_ids = pa.compute.binary_join_element_wise(
        "e", pa.compute.cast(pa.array(np.arange(n)), pa.string()), ""
    )
    session_ids = pa.compute.binary_join_element_wise(
        "s", pa.compute.cast(pa.array(ev["s"].to_numpy()), pa.string()), ""
    )
    table = pa.table(
        {
            "event_id": event_ids,
            "user_id": pa.DictionaryArray.from_arrays(pa.array(ev["u"].to_numpy()), user_vocab),
            "item_id": pa.DictionaryArray.from_arrays(pa.array(ev["i"].to_numpy()), item_vocab),
            "event_type": pa.DictionaryArray.from_arrays(pa.array(ev["k"].to_numpy()), kind_vocab),
            "event_timestamp": pa.array(ts_us, pa.timestamp("us", tz="UTC")),
            "value": pa.array(ev["v"].to_numpy(), from_pandas=True),
            "session_id": session_ids,
            "position": pa.array(ev["p"].to_numpy().astype(np.int32)),
        }
    )
    dirty = _dirty_rows(table, cfg, rng)
    return SynthData(events=table, items=items.drop(columns=[c for c in items if c[0] == "_"]),
                     dirty=dirty)  # fmt: skip


def _dirty_rows(table: pa.Table, cfg: SynthConfig, rng: np.random.Generator) -> pd.DataFrame:
    """A late CSV batch: re-sent copies of loaded rows and one of each kind of bad row."""
    if cfg.dirty_rows <= 0 or table.num_rows == 0:
        return pd.DataFrame()
    k = min(cfg.dirty_rows, table.num_rows)
    sample = table.take(rng.choice(table.num_rows, size=k, replace=False)).to_pandas()
    for col in ("user_id", "item_id", "event_type"):
        sample[col] = sample[col].astype(str)
    sample["event_timestamp"] = sample["event_timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sample["value"] = sample["value"].astype(object)
    sample["position"] = sample["position"].astype(object)
    bad = sample.iloc[: min(7, k)].copy()
    future = (pd.Timestamp(cfg.end) + pd.Timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    faults = [
        ("user_id", None),
        ("event_type", "hover"),
        ("event_timestamp", "yesterday"),
        ("event_timestamp", future),
        ("value", -5.0),
        ("value", "abc"),
        ("position", "top"),
    ]
    for row, (col, val) in enumerate(faults[: len(bad)]):
        bad.iloc[row, bad.columns.get_loc(col)] = val
    bad["event_id"] = "bad-" + bad["event_id"]
    # Re-sent copies of rows already in the main file (duplicates), then the bad ones.
    return pd.concat([sample, bad], ignore_index=True)


def write(data: SynthData, out_dir: Path) -> dict[str, Path]:
    """Write events (Parquet), the dirty late batch (CSV) and items (Parquet)."""
    events_dir = out_dir / "events"
    events_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "events": events_dir,
        "items": out_dir / "items.parquet",
    }
    pq.write_table(data.events, events_dir / "events.parquet", row_group_size=1_000_000)
    if not data.dirty.empty:
        data.dirty.to_csv(events_dir / "late_batch.csv", index=False)
    items = data.items.copy()
    items["created_at"] = items["created_at"].astype("datetime64[us]").dt.tz_localize("UTC")
    items.to_parquet(paths["items"], index=False)
    return paths
