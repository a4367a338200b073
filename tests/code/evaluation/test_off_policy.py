"""Clipped IPS and SNIPS against values worked out by hand on a four-row log."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ranking.evaluation.off_policy import Z_95, clipped_ips, significantly_below, snips
from ranking.schema import PROPENSITY, REWARD, TARGET_PROBABILITY

#: Weights target / propensity = 2, 2, 0, 0.5; rewards 1, 0, 1, 1.
LOG = pd.DataFrame({
    "position": [1, 2, 1, 3],
    "item_id": ["a", "b", "c", "d"],
    PROPENSITY: [0.5, 0.25, 1.0, 0.5],
    REWARD: [1, 0, 1, 1],
    TARGET_PROBABILITY: [1.0, 0.5, 0.0, 0.25],
})  # fmt: skip


def test_clipped_ips_by_hand() -> None:
    est = clipped_ips(LOG, clip=10.0)
    # Terms w * r = 2, 0, 0, 0.5: mean 0.625; squared deviations sum to 2.6875.
    assert est.value == pytest.approx(0.625)
    half = Z_95 * math.sqrt(2.6875 / 3) / 2
    assert (est.low, est.high) == pytest.approx((0.625 - half, 0.625 + half))
    assert est.rows == 4
    assert est.effective_rows == pytest.approx(4.5**2 / 8.25)
    # Clipped at 1.5: terms 1.5, 0, 0, 0.5, mean 0.5 (the clip pulls the estimate down).
    assert clipped_ips(LOG, clip=1.5).value == pytest.approx(0.5)


def test_snips_by_hand() -> None:
    est = snips(LOG)
    assert est.value == pytest.approx(2.5 / 4.5)
    v = 2.5 / 4.5
    variance = (4 * (1 - v) ** 2 + 4 * v**2 + 0.25 * (1 - v) ** 2) / 4.5**2
    assert est.high - est.value == pytest.approx(Z_95 * math.sqrt(variance))
    assert est.value - est.low == pytest.approx(Z_95 * math.sqrt(variance))
    assert est.covers(0.5) and not est.covers(1.2)  # the interval is 0.556 ± 0.627


def test_on_policy_log_gives_the_mean_click_rate() -> None:
    # The target is the logging policy: every weight is 1, both estimators are the mean.
    rng = np.random.default_rng(0)
    p = rng.uniform(0.1, 1.0, 500)
    log = pd.DataFrame({PROPENSITY: p, TARGET_PROBABILITY: p,
                        REWARD: (rng.random(500) < 0.3).astype(int)})  # fmt: skip
    mean = log[REWARD].mean()
    assert clipped_ips(log).value == pytest.approx(mean)
    assert snips(log).value == pytest.approx(mean)
    assert snips(log).effective_rows == pytest.approx(500)


def test_unbiased_over_many_simulated_logs() -> None:
    # Logging shows item A with probability 0.8, B 0.2; the target 0.3 and 0.7.
    # Click rates 0.1 (A) and 0.5 (B): the target's true rate is 0.3*0.1 + 0.7*0.5 = 0.38.
    rng = np.random.default_rng(1)
    covered = 0
    values = []
    for _ in range(200):
        shows_b = rng.random(2000) < 0.2
        log = pd.DataFrame({
            PROPENSITY: np.where(shows_b, 0.2, 0.8),
            TARGET_PROBABILITY: np.where(shows_b, 0.7, 0.3),
            REWARD: (rng.random(2000) < np.where(shows_b, 0.5, 0.1)).astype(int),
        })  # fmt: skip
        est = snips(log)
        values.append(est.value)
        covered += est.covers(0.38)
    assert np.mean(values) == pytest.approx(0.38, abs=0.005)
    assert 0.90 <= covered / 200 <= 0.99


def test_bad_logs_are_refused_and_empty_logs_say_nothing() -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        snips(LOG.assign(**{PROPENSITY: [0.0, 0.5, 0.5, 0.5]}))
    with pytest.raises(ValueError, match="lacks"):
        clipped_ips(LOG.drop(columns=[REWARD]))
    assert math.isnan(snips(LOG.iloc[:0]).value)
    assert math.isnan(snips(LOG.assign(**{TARGET_PROBABILITY: 0.0})).value)


def test_significantly_below_needs_the_gap_beyond_both_intervals() -> None:
    from ranking.evaluation.off_policy import Estimate

    champion = Estimate("snips", 0.30, 0.28, 0.32, 1000, 1000.0)
    assert significantly_below(Estimate("snips", 0.20, 0.18, 0.22, 1000, 900.0), champion)
    assert not significantly_below(Estimate("snips", 0.28, 0.25, 0.31, 1000, 900.0), champion)
    assert not significantly_below(Estimate("snips", 0.35, 0.33, 0.37, 1000, 900.0), champion)
    nan = Estimate("snips", math.nan, math.nan, math.nan, 0, 0.0)
    assert not significantly_below(nan, champion)
