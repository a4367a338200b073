"""The closed loop's pieces: the spec's calendar, a round written as a served log with
propensities plus reactions, read back as an off-policy log, and the plot."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ranking.ingest.contract import ingest
from ranking.schema import IMPRESSION, PROPENSITY
from ranking.settings import Settings
from ranking.simulation.audience import Audience
from ranking.simulation.closed_loop import SimulationSpec, read_logged, write_round
from ranking.simulation.report import plot_rounds
from ranking.simulation.rounds import serve_lists

SPEC = SimulationSpec(rounds=3, users=30, events=5_000, days=14, seed=4, taste_shift_round=2)


def test_the_calendar_and_the_taste_shift() -> None:
    end = SPEC.history_end(datetime(2026, 3, 10, 15, 30))
    assert end == datetime(2026, 3, 7)  # three rounds before today's midnight
    assert SPEC.serving_time(end, 1) == datetime(2026, 3, 7, 12)
    assert SPEC.closing_time(end, 3) == datetime(2026, 3, 10)
    assert SPEC.config(end, 1).taste_shift_to is None
    assert SPEC.config(end, 2).taste_shift_to == SPEC.taste_shift_to
    with pytest.raises(ValueError, match="unknown policy"):
        SimulationSpec(policy="greedy")


def test_a_round_is_a_served_log_and_reactions_that_load_and_read_back(
    settings: Settings,
) -> None:
    end = SPEC.history_end(datetime(2026, 3, 10))
    audience = Audience.generate(SPEC.config(end))
    at = SPEC.serving_time(end, 1)
    served = serve_lists(audience, list(audience.user_ids[:30]), at, "random",
                         np.random.default_rng(0))  # fmt: skip
    served = served.assign(score=np.nan, propensity=0.01, rule="random")
    events = audience.react(served, at, np.random.default_rng(1))
    folder = write_round(settings, 1, served, events)
    assert sorted(p.name for p in folder.iterdir()) == ["reactions.parquet",
                                                        f"served-{at:%Y%m%d}.jsonl"]  # fmt: skip
    logged = read_logged(settings, 1)
    assert len(logged) == len(served)
    assert (logged[PROPENSITY] == 0.01).all() and set(logged["event_type"]) == {IMPRESSION}
    clicks = events[events["event_type"] == "click"]
    assert logged["reward"].sum() == len(clicks) > 0
    reports = ingest(settings.warehouse_path, folder, settings.event_types,
                     at + timedelta(hours=1))  # fmt: skip
    assert sum(r.accepted for r in reports) == len(events)  # every row, nothing quarantined
    table = pd.DataFrame({"round": [1, 2, 1, 2], "policy": ["a", "a", "b", "b"],
                          "ctr": [0.1, 0.2, 0.1, 0.1], "true_ndcg@10": [0.5, 0.6, 0.4, 0.4],
                          "plays_per_session": 0.3, "coverage": 0.5,
                          "taste_shift": [False, True, False, True]})  # fmt: skip
    png = plot_rounds(table, settings.home / "rounds.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
