"""The promotion gate as a pure decision: when a new version may become champion, and why."""

from __future__ import annotations

import pandas as pd
import pytest

from ranking.publishing.gate import ChampionScore, Decision, decide, decide_from_table
from ranking.schema import HEADLINE_METRIC, MODEL_SCORER, MOST_POPULAR

NO_CHAMPION = ChampionScore()


def _table(model: float, most_popular: float) -> pd.DataFrame:
    """An evaluation table as the holdout report makes it: scorers as index, metrics as
    columns (a second metric and a second baseline, so the gate must pick the right cells)."""
    return pd.DataFrame(
        {HEADLINE_METRIC: [model, most_popular, 0.01], "ndcg@5": [0.99, 0.99, 0.99]},
        index=[MODEL_SCORER, MOST_POPULAR, "random"],
    )


# Failed data checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    "champion",
    [NO_CHAMPION, ChampionScore("3", 0.10), ChampionScore("3", None)],
    ids=["no-champion", "scored-champion", "unscorable-champion"],
)
def test_failed_data_checks_never_promote_even_a_huge_win(champion: ChampionScore) -> None:
    """Data that failed its checks taints the model, however well it scores on it."""
    decision = decide(0.99, champion, 0.01, 0.0, quality_failed="freshness_hours 96 > 72")
    assert decision == Decision(False, "data checks failed: freshness_hours 96 > 72")


@pytest.mark.parametrize("quality_failed", [None, ""])
def test_no_failed_check_is_no_failure(quality_failed: str | None) -> None:
    """None and an empty string both mean 'every check passed'."""
    assert decide(0.5, NO_CHAMPION, 0.2, 0.0, quality_failed=quality_failed).promote


# First version --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "baseline", "promote"),
    [
        (0.3001, 0.3, True),
        (0.3, 0.3, False),  # equal is not beating
        (0.2999, 0.3, False),
        (0.0, 0.0, False),
        (1.0, 0.0, True),
    ],
)
def test_first_version_must_strictly_beat_most_popular(
    candidate: float, baseline: float, promote: bool
) -> None:
    """Without a champion the bar is the most-popular baseline, and a tie does not clear it."""
    decision = decide(candidate, NO_CHAMPION, baseline, margin=0.0)
    assert decision.promote is promote
    assert decision.reason.startswith("no champion yet")


def test_first_version_ignores_the_margin() -> None:
    """The margin is about replacing a champion; the first version only needs the baseline."""
    assert decide(0.31, NO_CHAMPION, 0.30, margin=0.5).promote


def test_first_version_rejection_names_both_scores() -> None:
    decision = decide(0.25, NO_CHAMPION, 0.3125, margin=0.0)
    assert not decision.promote
    assert "0.2500" in decision.reason
    assert "0.3125" in decision.reason
    assert "most-popular" in decision.reason
    assert "does not beat" in decision.reason


def test_first_version_promotion_names_both_scores() -> None:
    decision = decide(0.4567, NO_CHAMPION, 0.1234, margin=0.0)
    assert decision.promote
    assert decision.reason == "no champion yet; NDCG@10 0.4567 beats most-popular 0.1234"


@pytest.mark.parametrize("candidate", [0.0, 0.5])
def test_first_version_without_baseline_is_promoted(candidate: float) -> None:
    """No baseline to compare with (it could not be scored): nothing stands in the way."""
    decision = decide(candidate, NO_CHAMPION, None, margin=0.0)
    assert decision == Decision(True, "no champion yet")


# With a champion ----------------------------------------------------------------------


@pytest.mark.parametrize("candidate", [0.0, 0.5, 1.0])
def test_champion_that_cannot_be_scored_is_kept(candidate: float) -> None:
    """Without a like-for-like comparison the gate keeps what serves today."""
    decision = decide(candidate, ChampionScore("7", None), baseline_ndcg=0.0, margin=0.0)
    assert not decision.promote
    assert decision.reason == "champion v7 cannot be scored on this test set; kept"


def test_with_a_champion_the_baseline_does_not_matter() -> None:
    """A candidate below most-popular still replaces a champion it beats (and one above
    most-popular does not replace a champion it does not beat)."""
    assert decide(0.30, ChampionScore("2", 0.20), baseline_ndcg=0.90, margin=0.0).promote
    assert not decide(0.30, ChampionScore("2", 0.40), baseline_ndcg=0.01, margin=0.0).promote


# Exact binary fractions, so "champion + margin" is computed without rounding.
@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "promote"),
    [
        (0.5, 0.5, 0.0, False),  # a tie is not a win
        (0.5 + 2**-20, 0.5, 0.0, True),
        (0.625, 0.5, 0.125, False),  # exactly champion + margin
        (0.625 + 2**-20, 0.5, 0.125, True),  # just above
        (0.625 - 2**-20, 0.5, 0.125, False),  # just below
        (0.75, 0.5, 0.125, True),
        (0.25, 0.5, 0.0, False),
    ],
)
def test_a_challenger_must_beat_the_champion_by_more_than_the_margin(
    candidate: float, champion: float, margin: float, promote: bool
) -> None:
    decision = decide(candidate, ChampionScore("4", champion), baseline_ndcg=0.0, margin=margin)
    assert decision.promote is promote
    verdict = "beats" if promote else "does not beat"
    assert f" {verdict} champion v4 " in decision.reason


def test_a_negative_margin_lets_a_slightly_worse_challenger_through() -> None:
    """The margin is added as given: a negative one tolerates a small regression."""
    assert decide(0.49, ChampionScore("4", 0.5), None, margin=-0.02).promote
    assert not decide(0.47, ChampionScore("4", 0.5), None, margin=-0.02).promote


def test_champion_comparison_reason_names_the_numbers_and_the_version() -> None:
    win = decide(0.61234, ChampionScore("12", 0.5), baseline_ndcg=0.1, margin=0.01)
    assert win.reason == "NDCG@10 0.6123 beats champion v12 0.5000 by more than 0.01"
    loss = decide(0.505, ChampionScore("12", 0.5), baseline_ndcg=0.1, margin=0.01)
    assert loss.reason == "NDCG@10 0.5050 does not beat champion v12 0.5000 by more than 0.01"


def test_decision_is_immutable() -> None:
    """The decision is evidence tagged on the version: nothing may edit it afterwards."""
    decision = decide(0.5, NO_CHAMPION, None, 0.0)
    with pytest.raises(AttributeError):
        decision.promote = False  # type: ignore[misc]


# From an evaluation table ---------------------------------------------------------------


def test_decide_from_table_reads_the_model_and_most_popular_rows() -> None:
    decision = decide_from_table(_table(0.4567, 0.1234), NO_CHAMPION, margin=0.0)
    assert decision == Decision(True, "no champion yet; NDCG@10 0.4567 beats most-popular 0.1234")


def test_decide_from_table_rejects_a_first_version_tied_with_most_popular() -> None:
    assert not decide_from_table(_table(0.3, 0.3), NO_CHAMPION, margin=0.0).promote


def test_decide_from_table_applies_the_champion_and_margin() -> None:
    table = _table(0.625, 0.1)
    assert not decide_from_table(table, ChampionScore("5", 0.5), margin=0.125).promote
    assert decide_from_table(table, ChampionScore("5", 0.5), margin=0.0625).promote
    kept = decide_from_table(table, ChampionScore("5", None), margin=0.0)
    assert not kept.promote
    assert "v5" in kept.reason


def test_decide_from_table_accepts_numpy_scalars() -> None:
    """Table cells are numpy floats: the reason must still format them as plain numbers."""
    table = _table(0.5, 0.25).astype("float32")
    decision = decide_from_table(table, NO_CHAMPION, margin=0.0)
    assert decision.promote
    assert "0.5000" in decision.reason
    assert "0.2500" in decision.reason


def test_decide_from_table_needs_both_rows() -> None:
    """A table without the most-popular row is a caller error, not a silent promotion."""
    table = _table(0.5, 0.25).drop(index=MOST_POPULAR)
    with pytest.raises(KeyError):
        decide_from_table(table, NO_CHAMPION, margin=0.0)


# An unmeasured score ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "baseline"), [(float("nan"), 0.3), (0.1, float("nan"))], ids=["model", "baseline"]
)
def test_a_nan_score_does_not_promote_a_first_version(candidate: float, baseline: float) -> None:
    """A score that could not be measured is no evidence that the model beats anything."""
    assert not decide(candidate, NO_CHAMPION, baseline, margin=0.0).promote


def test_a_nan_score_does_not_replace_a_champion() -> None:
    """With a champion the comparison is '>', so NaN already fails safe."""
    assert not decide(float("nan"), ChampionScore("2", 0.2), 0.1, margin=0.0).promote


# Off-policy evidence on the champion's logged traffic -------------------------------------


def _evidence(challenger: tuple[float, float, float], champion=(0.10, 0.09, 0.11)):
    from ranking.evaluation.off_policy import Estimate
    from ranking.publishing.gate import OffPolicyEvidence

    return OffPolicyEvidence(Estimate("snips", *challenger, 3000, 800.0),
                             Estimate("snips", *champion, 3000, 2700.0), 3000)  # fmt: skip


def test_a_challenger_significantly_below_off_policy_is_refused_whatever_its_ndcg() -> None:
    decision = decide(0.9, ChampionScore("4", 0.2), 0.1, margin=0.0,
                      off_policy=_evidence((0.06, 0.05, 0.07)))  # fmt: skip
    assert not decision.promote
    assert "significantly below champion v4" in decision.reason
    assert "off-policy snips CTR 0.0600 [0.0500, 0.0700] vs champion 0.1000" in decision.reason


def test_off_policy_evidence_within_the_noise_leaves_the_offline_rule_to_decide() -> None:
    close = _evidence((0.095, 0.08, 0.11))
    assert decide(0.3, ChampionScore("4", 0.2), 0.1, 0.0, off_policy=close).promote
    refused = decide(0.1, ChampionScore("4", 0.2), 0.1, 0.0, off_policy=close)
    assert not refused.promote and refused.reason.startswith("NDCG@10 0.1000 does not beat")
    assert "off-policy snips CTR 0.0950" in refused.reason  # recorded with the version
    # Without a champion there is no logged traffic to judge by: the first version is free.
    assert decide(0.3, ChampionScore(), 0.1, 0.0, off_policy=_evidence((0.01, 0.0, 0.02))).promote


def test_off_policy_evidence_on_too_few_agreeing_rows_does_not_overrule() -> None:
    from dataclasses import replace

    thin = _evidence((0.06, 0.05, 0.07))
    thin = replace(thin, challenger=replace(thin.challenger, effective_rows=12.0))
    assert decide(0.3, ChampionScore("4", 0.2), 0.1, 0.0, off_policy=thin).promote
