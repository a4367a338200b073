"""Long steps report their progress to whoever listens (ranking.progress)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ranking import progress
from ranking.settings import Settings
from ranking.training import rankers


def _frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"group_id": np.repeat(np.arange(30), 6), "f1": rng.normal(size=180)})
    frame["label"] = (frame["f1"] > 0.5).astype(float)
    return frame


def test_the_fit_reports_every_round_and_ends_where_it_stopped(settings: Settings) -> None:
    seen: list[tuple[str, int, int | None]] = []
    small = settings.updated(training={"n_estimators": 12, "early_stopping_rounds": 3})
    with progress.listening(lambda *report: seen.append(report)):
        trained = rankers.train_ranker(_frame(1), _frame(2), ["f1"], small)
    rounds = [(done, total) for step, done, total in seen if step == rankers.FIT_STEP]
    boosted = trained.model.get_booster().num_boosted_rounds()
    assert rounds[0] == (1, 12)
    assert rounds[-1] == (boosted, boosted)
    assert [d for d, _ in rounds[:-1]] == list(range(1, boosted + 1))
    assert trained.model.get_params()["callbacks"] is None  # nothing of it is logged


def test_nothing_listens_outside_the_block() -> None:
    seen: list[tuple] = []
    with progress.listening(lambda *report: seen.append(report)):
        progress.advance("step", 1, 2)
    progress.advance("step", 2, 2)
    assert seen == [("step", 1, 2)]
