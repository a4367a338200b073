"""A simulated audience: users with hidden tastes that react to the lists they are served.

Built on the generator of ``ranking.ingest.synth``: the same catalogue (categories,
prices, a hidden quality per item), the same tastes over categories (some users' drift
during the period, and ``taste_shift_to`` moves the drifting ones towards one category)
and the same choice model (``synth.react``: a click falls with the rank it is shown at,
then a play or a skip, an add to cart, a purchase). Given a served list it returns the
events its users produce, in the data contract, so they can be ingested as any log.

Its ground truth is known: :meth:`Audience.appeal` is the probability that a user clicks
an item shown first, at a given time, so the true quality of any served list can be
computed (:meth:`Audience.true_ndcg`), which no logged metric can give.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from ranking.ingest import synth

#: Event types in the order of a reaction (an impression first, a purchase last).
REACTIONS = ("impression", "click", "view", "play", "skip", "add_to_cart", "purchase")


@dataclass(frozen=True)
class Audience:
    """Hidden tastes and item appeal; every draw from a generator the caller passes."""

    cfg: synth.SynthConfig
    items: pd.DataFrame  # item_id, category, price, available, _primary, _quality
    user_ids: np.ndarray
    taste0: np.ndarray  # (users, categories): the taste at the start of the period
    taste1: np.ndarray  # the taste drifting users reach at its end
    drifts: np.ndarray  # which users drift

    @classmethod
    def generate(cls, cfg: synth.SynthConfig) -> Audience:
        """The users and items of ``synth.generate(cfg)``: the same seed, the same draws."""
        rng = np.random.default_rng(cfg.seed)
        items = synth.generate_items(cfg, rng)
        n_cat = len(synth.CATEGORIES)
        taste0 = rng.dirichlet(np.full(n_cat, 0.35), size=cfg.n_users)
        taste1 = rng.dirichlet(np.full(n_cat, 0.35), size=cfg.n_users)
        drifts = rng.random(cfg.n_users) < cfg.drifting_user_share
        if cfg.taste_shift_to is not None:
            target = np.eye(n_cat)[list(synth.CATEGORIES).index(cfg.taste_shift_to)]
            taste1 = 0.2 * taste1 + 0.8 * target
        user_ids = np.array([f"u{i:06d}" for i in range(cfg.n_users)])
        return cls(cfg, items, user_ids, taste0, taste1, drifts)

    def _user_index(self, user_ids) -> np.ndarray:
        index = pd.Index(self.user_ids).get_indexer(np.asarray(user_ids))
        if (index < 0).any():
            unknown = np.asarray(user_ids)[index < 0][:3].tolist()
            raise KeyError(f"users unknown to the audience: {unknown}")
        return index

    def _item_index(self, item_ids) -> np.ndarray:
        index = pd.Index(self.items["item_id"]).get_indexer(np.asarray(item_ids))
        if (index < 0).any():
            unknown = np.asarray(item_ids)[index < 0][:3].tolist()
            raise KeyError(f"items unknown to the audience: {unknown}")
        return index

    def taste(self, user_ids, at: datetime) -> np.ndarray:
        """Each user's taste over the categories at ``at`` (rows sum to 1)."""
        users = self._user_index(user_ids)
        frac = np.clip((at - self.cfg.start) / timedelta(days=self.cfg.days), 0.0, 1.0)
        drifted = (1 - frac) * self.taste0[users] + frac * self.taste1[users]
        return np.where(self.drifts[users][:, None], drifted, self.taste0[users])

    def _affinity(self, user_ids, item_ids, at: datetime) -> tuple[np.ndarray, np.ndarray]:
        items = self._item_index(item_ids)
        taste = self.taste(user_ids, at)
        primary = self.items["_primary"].to_numpy()[items]
        affinity = taste[np.arange(len(items)), primary] * len(synth.CATEGORIES)
        return affinity, items

    def appeal(self, user_ids, item_ids, at: datetime) -> np.ndarray:
        """The probability that each user clicks each item shown first, at ``at``: the
        hidden truth any ranking is judged against."""
        affinity, items = self._affinity(user_ids, item_ids, at)
        quality = self.items["_quality"].to_numpy()[items]
        return synth.sigmoid(synth.click_logit(affinity, quality, np.ones(len(items))))

    def click_probability(self, served: pd.DataFrame, at: datetime) -> np.ndarray:
        """The probability of a click on each served row (``user_id``, ``item_id``,
        ``position`` from 1) at ``at``: the true click rate of any list, position bias
        included, which off-policy estimates are judged against."""
        affinity, items = self._affinity(served["user_id"], served["item_id"], at)
        quality = self.items["_quality"].to_numpy()[items]
        position = served["position"].to_numpy(dtype=float)
        return synth.sigmoid(synth.click_logit(affinity, quality, position))

    def react(self, served: pd.DataFrame, at: datetime, rng: np.random.Generator) -> pd.DataFrame:
        """The events of users shown ``served`` (``user_id``, ``item_id``, ``position``
        from 1, ``session_id``) at ``at``: an impression for every row, then what the
        choice model draws, in the data contract's columns, a few seconds apart."""
        affinity, items = self._affinity(served["user_id"], served["item_id"], at)
        quality = self.items["_quality"].to_numpy()[items]
        price = self.items["price"].to_numpy()[items]
        position = served["position"].to_numpy()
        click, play, skip, cart, buy, dwell, watch = synth.react(
            affinity, quality, price, position, rng
        )
        seconds = position * 4.0
        nothing = np.full(len(served), np.nan)
        kinds = [
            (np.ones(len(served), bool), seconds, nothing),
            (click, seconds + 2, nothing),
            (click, seconds + 3, np.round(dwell, 1)),
            (play, seconds + 3 + dwell, np.round(watch, 1)),
            (skip, seconds + 3 + dwell, np.round(rng.uniform(1, 20, len(served)), 1)),
            (cart, seconds + 5 + dwell, price),
            (buy, seconds + 40 + dwell, price),
        ]
        parts = [
            pd.DataFrame({
                "user_id": served["user_id"].to_numpy()[mask],
                "item_id": served["item_id"].to_numpy()[mask],
                "event_type": kind,
                "event_timestamp": pd.Timestamp(at) + pd.to_timedelta(offset[mask], unit="s"),
                "value": value[mask],
                "session_id": served["session_id"].to_numpy()[mask],
                "position": position[mask],
            })
            for kind, (mask, offset, value) in zip(REACTIONS, kinds, strict=True)
        ]  # fmt: skip
        events = pd.concat(parts, ignore_index=True)
        events["event_timestamp"] = events["event_timestamp"].dt.floor("ms")
        return events.sort_values(["session_id", "event_timestamp"], kind="stable",
                                  ignore_index=True)  # fmt: skip

    def true_ndcg(self, served: pd.DataFrame, at: datetime, k: int = 10) -> float:
        """Mean NDCG@k of the served lists (one per ``session_id``) against the hidden
        appeal: each list's discounted appeal over the best any list of k items available
        and released at ``at`` could reach for its user."""
        catalogue = self.items
        available = catalogue[catalogue["available"] & (catalogue["created_at"] <= at)]
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        scores = []
        for _, shown in served.sort_values("position").groupby("session_id", sort=True):
            user = shown["user_id"].iloc[0]
            gains = self.appeal(np.repeat(user, len(shown)), shown["item_id"], at)[:k]
            every = self.appeal(np.repeat(user, len(available)), available["item_id"], at)
            ideal = np.sort(every)[::-1][:k]
            best = ideal @ discounts[: len(ideal)]
            scores.append(float(gains @ discounts[: len(gains)] / best))
        return float(np.mean(scores)) if scores else float("nan")
