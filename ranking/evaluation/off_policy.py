"""Off-policy estimates of a target policy's click rate from logged traffic.

Each logged row is one served item: the position it was shown at, the item, the
probability the logging policy showed it there (``propensity``), what the user did
(``reward``: 1 for a click, else 0) and the probability the target policy would have
shown the same item at the same position (``target_probability``). The importance weight
``w = target_probability / propensity`` re-weights what the logging policy's traffic saw
into what the target's would have.

- Clipped IPS: ``mean(min(w, clip) * reward)``, its 95 % interval from the normal
  approximation of that mean. Clipping trades a little (downward) bias for variance.
- Self-normalised IPS (SNIPS): ``sum(w * reward) / sum(w)``, a ratio estimate whose 95 %
  interval comes from the delta method. It needs no clip and cannot leave [0, 1].

Pure functions over a frame: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ranking.schema import CLIPPED_IPS, PROPENSITY, REWARD, SNIPS, TARGET_PROBABILITY

#: The normal quantile of a two-sided 95 % interval.
Z_95 = 1.959963984540054
#: The largest importance weight clipped IPS keeps by default.
DEFAULT_CLIP = 10.0


@dataclass(frozen=True)
class Estimate:
    """An off-policy estimate of the target's click rate with its 95 % interval."""

    estimator: str
    value: float
    low: float
    high: float
    rows: int
    effective_rows: float  # Kish's effective sample size of the weights

    def covers(self, truth: float) -> bool:
        """Whether the interval holds ``truth``."""
        return self.low <= truth <= self.high

    def as_dict(self) -> dict:
        return asdict(self)


def _weights(logged: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    missing = {PROPENSITY, REWARD, TARGET_PROBABILITY} - set(logged.columns)
    if missing:
        raise ValueError(f"logged traffic lacks {sorted(missing)}")
    propensity = logged[PROPENSITY].to_numpy(dtype=float)
    if ((propensity <= 0) | (propensity > 1) | ~np.isfinite(propensity)).any():
        raise ValueError("propensities must lie in (0, 1]")
    target = logged[TARGET_PROBABILITY].to_numpy(dtype=float)
    if ((target < 0) | (target > 1) | ~np.isfinite(target)).any():
        raise ValueError("target probabilities must lie in [0, 1]")
    return target / propensity, logged[REWARD].to_numpy(dtype=float)


def _effective(w: np.ndarray) -> float:
    total = w.sum()
    return float(total**2 / (w**2).sum()) if total > 0 else 0.0


def _empty(estimator: str) -> Estimate:
    return Estimate(estimator, math.nan, math.nan, math.nan, 0, 0.0)


def clipped_ips(logged: pd.DataFrame, clip: float = DEFAULT_CLIP) -> Estimate:
    """Clipped inverse propensity scoring: ``mean(min(w, clip) * reward)`` with a normal
    95 % interval (the sample standard deviation of the terms over the square root of n)."""
    if logged.empty:
        return _empty(CLIPPED_IPS)
    w, reward = _weights(logged)
    w = np.minimum(w, clip)
    terms = w * reward
    n = len(terms)
    value = float(terms.mean())
    half = Z_95 * float(terms.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return Estimate(CLIPPED_IPS, value, value - half, value + half, n, _effective(w))


def snips(logged: pd.DataFrame) -> Estimate:
    """Self-normalised IPS: ``sum(w * reward) / sum(w)``, with the delta method's 95 %
    interval: variance ``sum(w**2 * (reward - value)**2) / sum(w)**2``."""
    if logged.empty:
        return _empty(SNIPS)
    w, reward = _weights(logged)
    total = w.sum()
    if total <= 0:  # the target never shows what was logged: the log says nothing of it
        return Estimate(SNIPS, math.nan, math.nan, math.nan, len(w), 0.0)
    value = float((w * reward).sum() / total)
    half = Z_95 * math.sqrt(float((w**2 * (reward - value) ** 2).sum())) / total
    return Estimate(SNIPS, value, value - half, value + half, len(w), _effective(w))


def significantly_below(challenger: Estimate, champion: Estimate) -> bool:
    """Whether the challenger's estimate is significantly below the champion's: the
    difference's 95 % interval (the two intervals' half-widths combined as independent
    normals) lies wholly below zero."""
    values = (challenger.value, champion.value, challenger.high, champion.high)
    if any(math.isnan(v) for v in values):
        return False
    half = math.hypot((challenger.high - challenger.low) / 2, (champion.high - champion.low) / 2)
    return challenger.value - champion.value + half < 0
