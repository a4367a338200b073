"""Behavioural test of the two-stage ranker under a taste shift (issue 11).

The issue's expectation: on generated data with a taste shift (``taste_shift_to``), the
ranker follows the shift within one retraining. Two data sets come from the same seed and
size; in one, the drifting users (30 %) move their tastes linearly over the period towards
one category X, which is the least engaged-with category of the data without the shift
(scifi: 4 of 66 items, 3.8 % of the positive events). Each is ingested into its own home
and goes through the real pipeline, nothing mocked: DuckDB, feature snapshots, Feast
(apply, materialize, point-in-time join), training groups made of *retrieved* candidates
(the default ``candidates = "retrieval"``), one XGBoost ranker fitted at the end of the
period. On the test holdout (one query per returning user at the cut-off, candidates from
retrieval) the ranker orders each user's retrieved candidates; we measure the share of X
in the top 10 and check that:

1. it is clearly higher with the shift than without it (the ranker reacts to the shift);
2. it is at least half of the share of X among the items the users actually took after
   the cut-off (the ranker follows the users, not merely moves a little);
3. it is closer to that share than a stale, shift-blind ordering: the user's favourite
   categories over their whole history (the ``favourite_categories`` baseline).

The ranker can see the shift only through features that weigh recent behaviour (decayed
and short-term category affinities, recent popularity, retrieval's recency-weighted
sources) and must have learnt to use them from training groups in which the shift is
partly under way. A ranker leaning on long-term tastes, or on global popularity alone,
fails the second and third checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from ranking.evaluation.baselines import baseline_scores
from ranking.ingest import synth
from ranking.schema import FAVOURITE_CATEGORIES
from ranking.settings import get_settings
from ranking.training.retrieved import only_retrieved
from ranking.warehouse import warehouse
from tests.conftest import END
from tests.model.conftest import fit_home

#: The category the drifting users move to: the least engaged-with one without the shift.
SHIFT_TO = "scifi"
#: Same seed and size for both data sets: only the drifting users' target tastes differ
#: (the generator draws them either way, so every other draw is the same).
DATA = synth.SynthConfig(events=20_000, days=21, end=END, seed=2)
#: A small budget, the default two-stage training groups (retrieved candidates).
TRAINING = {"n_estimators": 60, "valid_window": "P5D", "test_window": "P5D"}
TOP_K = 10


@dataclass(frozen=True)
class Holdout:
    """The test queries of one home, with the scores of the ranker and of a stale order.

    ``rows`` are the holdout rows (``group_id``, ``user_id``, ``item_id``, ``category``,
    ``label``, ``retrieved``...) plus ``model`` and ``stale``, NaN where retrieval did not
    propose the item (no scorer can show it)."""

    rows: pd.DataFrame

    @property
    def groups(self) -> int:
        return int(self.rows["group_id"].nunique())

    def top_share(self, score: str, category: str = SHIFT_TO) -> float:
        """Share of ``category`` among the top ``TOP_K`` retrieved items of every query,
        ordered by ``score`` (ties by item id, so the figure is deterministic)."""
        shown = self.rows[self.rows[score].notna()]
        ranked = shown.sort_values(
            ["group_id", score, "item_id"], ascending=[True, False, True], kind="stable"
        )
        top = ranked.groupby("group_id", sort=False).head(TOP_K)
        return float((top["category"] == category).mean())

    def taken_share(self, category: str = SHIFT_TO) -> float:
        """Share of ``category`` among the items the users took after the cut-off (label
        > 0), retrieved or not: what they actually did."""
        taken = self.rows[self.rows["label"] > 0]
        return float((taken["category"] == category).mean())


def _retrained_holdout(root: Path, cfg: synth.SynthConfig) -> Holdout:
    """Generate ``cfg``, build a home from it, train the ranker once at ``END`` and score
    the holdout with it and with the stale favourite-categories order."""
    settings = get_settings(home=root, training=TRAINING)
    assert settings.training.candidates == "retrieval"  # the two-stage default
    home = fit_home(settings, synth.generate(cfg))
    test, times = home.test, home.times
    test["model"] = only_retrieved(test, home.score(test))
    with warehouse(settings.warehouse_path, read_only=True) as con:
        stale = baseline_scores(con, settings, test, times.test_start, seed=settings.seed)
    test["stale"] = only_retrieved(test, stale[FAVOURITE_CATEGORIES])
    return Holdout(rows=test)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Holdout:
    """The drifting users move towards ``SHIFT_TO``; the ranker is retrained once after."""
    cfg = dataclasses.replace(DATA, taste_shift_to=SHIFT_TO)
    return _retrained_holdout(tmp_path_factory.mktemp("shifted_home"), cfg)


@pytest.fixture(scope="module")
def stable(tmp_path_factory: pytest.TempPathFactory) -> Holdout:
    """The same data without the shift: the drifting users drift at random."""
    return _retrained_holdout(tmp_path_factory.mktemp("stable_home"), DATA)


def test_the_holdout_has_enough_queries_to_measure_shares(
    shifted: Holdout, stable: Holdout
) -> None:
    # Measured: 81 test queries with the shift, 79 without; ~97 % of the holdout rows
    # were proposed by retrieval.
    for holdout in (shifted, stable):
        assert holdout.groups >= 50
        assert holdout.rows["model"].notna().mean() > 0.9


def test_the_retrained_ranker_shows_more_of_the_category_users_shift_to(
    shifted: Holdout, stable: Holdout
) -> None:
    # Measured (seed 2): scifi is 15.2 % of the rankers' top 10 with the shift, 2.9 %
    # without (5.2x). Other data sets explored while choosing the thresholds (20k events
    # seeds 1, 7, 11; 30k events over 28 days seeds 2, 11, 42, each towards one of its
    # least engaged-with categories): 2.0x to 31x.
    with_shift, without = shifted.top_share("model"), stable.top_share("model")
    assert with_shift >= 1.5 * without, (
        f"share of {SHIFT_TO} in the top {TOP_K}: {with_shift:.3f} with the shift, "
        f"{without:.3f} without: the retrained ranker does not react to the shift"
    )


def test_the_retrained_ranker_follows_what_the_users_took(shifted: Holdout) -> None:
    # Measured (seed 2): the users took scifi for 18.9 % of their relevant items after the
    # cut-off, and the ranker puts it at 15.2 % of their top 10 (0.80 of it; 0.60 to 1.37
    # on the other data sets explored). Without the shift they took 3.5 % scifi.
    shown, taken = shifted.top_share("model"), shifted.taken_share()
    assert shown >= 0.5 * taken, (
        f"users took {taken:.3f} {SHIFT_TO} after the cut-off but the ranker's top {TOP_K} "
        f"holds only {shown:.3f}: it lags the shift"
    )


def test_the_retrained_ranker_is_closer_to_the_shift_than_long_term_tastes(
    shifted: Holdout,
) -> None:
    # The stale order ranks each user's candidates by the share of their whole history in
    # the item's category: it knows the users but not that their tastes moved recently.
    # Measured (seed 2): stale top 10 6.9 % scifi, ranker 15.2 %, users took 18.9 %
    # (distance 0.120 vs 0.037). The ranker was closer on every data set explored.
    taken = shifted.taken_share()
    model_gap = abs(shifted.top_share("model") - taken)
    stale_gap = abs(shifted.top_share("stale") - taken)
    assert model_gap < stale_gap, (
        f"users took {taken:.3f} {SHIFT_TO}; the ranker's top {TOP_K} is {model_gap:.3f} "
        f"away, the long-term favourite categories only {stale_gap:.3f}"
    )
