"""Exploration with known propensities: a small share of served places go to the next
best candidates, so that logged traffic can judge a policy other than the one that served
it (``ranking.evaluation.off_policy``).

The scheme, per list: the deterministic top k (after the business rules) and a pool of
the next best ``m`` eligible candidates (the rules applied again to what is left). One
uniform permutation ``slot`` of ``M = max(m, k)`` slots is drawn; each place ``j`` explores
with probability ``share`` and then shows pool item ``slot[j]`` when that slot holds one
(slots past ``m`` keep the deterministic item). Every probability is then exact and
marginal, not conditional on the other places:

- the deterministic item stays at ``j`` with probability ``1 - share * m / M``;
- each pool item is shown at ``j`` with probability ``share / M``;

so the probabilities of the items that may stand at a place sum to one, and no item is
shown twice (a permutation). ``share = 0`` shows the deterministic list with
propensity 1 and draws nothing.
"""

from __future__ import annotations

import zlib
from datetime import datetime

import numpy as np
import pandas as pd

from ranking.schema import PROPENSITY

#: The rule of an item placed by exploration.
EXPLORE = "explore"


def exploration_rng(seed: int, user_id: str, now: datetime) -> np.random.Generator:
    """A generator of its own for each (seed, user, request time): the same request gives
    the same list, whichever thread or process serves it."""
    stamp = int(round(now.timestamp() * 1000)) if now.tzinfo else int(
        round((now - datetime(1970, 1, 1)).total_seconds() * 1000))  # fmt: skip
    return np.random.default_rng([seed, zlib.crc32(user_id.encode()), stamp])


def place_probabilities(k: int, pool: int, share: float) -> tuple[float, float]:
    """The probability that a place keeps its deterministic item, and that one given pool
    item is shown there (``k`` places, ``pool`` pool items)."""
    slots = max(pool, k)
    if share <= 0 or slots == 0:
        return 1.0, 0.0
    return 1.0 - share * pool / slots, share / slots


def explore(
    top: pd.DataFrame, pool: pd.DataFrame, share: float, rng: np.random.Generator | None
) -> pd.DataFrame:
    """``top`` (best first) with some places given to ``pool`` items (best first), each
    row with its ``propensity`` and, where exploration placed it, rule ``explore``."""
    k = len(top)
    shown = top.reset_index(drop=True).copy()
    keep, each = place_probabilities(k, len(pool), share)
    shown[PROPENSITY] = keep
    if share <= 0 or pool.empty or k == 0 or rng is None:
        shown[PROPENSITY] = 1.0
        return shown
    slot = rng.permutation(max(len(pool), k))[:k]
    explores = rng.random(k) < share
    swapped = np.flatnonzero(explores & (slot < len(pool)))
    if len(swapped):
        incoming = pool.iloc[slot[swapped]].reset_index(drop=True)
        for column in shown.columns:
            if column in incoming.columns:
                shown.loc[swapped, column] = incoming[column].to_numpy()
        shown.loc[swapped, "rule"] = EXPLORE
        shown.loc[swapped, PROPENSITY] = each
    return shown


def target_probability(
    logged: pd.DataFrame, top: list[str], pool: list[str], share: float
) -> np.ndarray:
    """The probability that a policy whose deterministic list is ``top`` and whose pool
    is ``pool`` (exploring ``share`` of places as :func:`explore` does) shows each logged
    row's ``item_id`` at its ``position`` (from 1): what off-policy evaluation weighs by."""
    keep, each = place_probabilities(len(top), len(pool), share)
    pooled = set(pool)
    out = np.zeros(len(logged))
    for n, (item, position) in enumerate(zip(logged["item_id"], logged["position"],
                                             strict=True)):  # fmt: skip
        j = int(position) - 1
        if 0 <= j < len(top):
            out[n] = keep if top[j] == item else (each if item in pooled else 0.0)
    return out
