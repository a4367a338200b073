"""The promotion gate as a pure decision: the evidence in, a :class:`Decision` with its
reason out. Writing the outcome to the registry is ``ranking.publishing.aliases``' job
(decide, then act), so the rule is testable without MLflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ranking.evaluation.off_policy import Estimate, significantly_below
from ranking.schema import HEADLINE_METRIC, MODEL_SCORER, MOST_POPULAR


@dataclass(frozen=True)
class Decision:
    """Whether a new version becomes champion, and why (tagged on the version)."""

    promote: bool
    reason: str


@dataclass(frozen=True)
class ChampionScore:
    """The current champion and its NDCG@10 on the new version's holdout.

    ``version`` is None without a champion; ``ndcg`` is None when the champion cannot
    be scored on this holdout (it needs features the training set lacks).
    """

    version: str | None = None
    ndcg: float | None = None


#: Off-policy evidence counts only with at least this many effective logged rows (Kish)
#: behind each estimate: fewer say too little to overrule the offline figures.
MIN_EFFECTIVE_ROWS = 30.0


@dataclass(frozen=True)
class OffPolicyEvidence:
    """The challenger's and the champion's click rates estimated on the champion's
    logged traffic (``ranking.evaluation.off_policy``)."""

    challenger: Estimate
    champion: Estimate
    logged_rows: int

    def below(self) -> bool:
        """Whether the challenger is significantly below the champion, on enough
        agreeing traffic for each (:data:`MIN_EFFECTIVE_ROWS`) to mean anything."""
        enough = min(self.challenger.effective_rows, self.champion.effective_rows)
        return enough >= MIN_EFFECTIVE_ROWS and significantly_below(self.challenger,
                                                                    self.champion)  # fmt: skip

    def describe(self) -> str:
        c, h = self.challenger, self.champion
        return (f"off-policy {c.estimator} CTR {c.value:.4f} [{c.low:.4f}, {c.high:.4f}] vs "
                f"champion {h.value:.4f} [{h.low:.4f}, {h.high:.4f}] on {self.logged_rows:,} "
                "logged rows")  # fmt: skip


def decide(
    candidate_ndcg: float,
    champion: ChampionScore,
    baseline_ndcg: float | None,
    margin: float,
    quality_failed: str | None = None,
    off_policy: OffPolicyEvidence | None = None,
) -> Decision:
    """Promote when the data checks passed and the candidate earns it.

    With no champion, the candidate must beat the most-popular baseline
    (``baseline_ndcg``, when given); with one, it must beat the champion's NDCG@10 on the
    same holdout by more than ``margin``, and not be significantly below the champion's
    click rate estimated off-policy on its logged traffic (``off_policy``, when given),
    whatever its offline NDCG.
    """
    if quality_failed:
        return Decision(False, f"data checks failed: {quality_failed}")
    if champion.version is not None and off_policy is not None and off_policy.below():
        return Decision(
            False,
            f"{off_policy.describe()}: significantly below champion "
            f"v{champion.version}, whatever its NDCG@10 {candidate_ndcg:.4f}",
        )
    decision = _decide_offline(candidate_ndcg, champion, baseline_ndcg, margin)
    if champion.version is not None and off_policy is not None:
        return Decision(decision.promote, f"{decision.reason}; {off_policy.describe()}")
    return decision


def _decide_offline(
    candidate_ndcg: float, champion: ChampionScore, baseline_ndcg: float | None, margin: float
) -> Decision:
    unmeasured = [v for v in (candidate_ndcg, baseline_ndcg) if v is not None and math.isnan(v)]
    if unmeasured:  # a holdout without a relevant item measures nothing: no evidence
        return Decision(
            False, f"NDCG@10 {candidate_ndcg:.4f} vs most-popular {baseline_ndcg} not measured"
        )
    if champion.version is None:
        if baseline_ndcg is not None and candidate_ndcg <= baseline_ndcg:
            return Decision(
                False,
                f"no champion yet, but NDCG@10 {candidate_ndcg:.4f} does not beat the "
                f"most-popular baseline {baseline_ndcg:.4f}",
            )
        reason = "no champion yet"
        if baseline_ndcg is not None:
            reason += f"; NDCG@10 {candidate_ndcg:.4f} beats most-popular {baseline_ndcg:.4f}"
        return Decision(True, reason)
    if champion.ndcg is None:
        return Decision(
            False, f"champion v{champion.version} cannot be scored on this test set; kept"
        )
    verdict = "beats" if candidate_ndcg > champion.ndcg + margin else "does not beat"
    return Decision(
        verdict == "beats",
        f"NDCG@10 {candidate_ndcg:.4f} {verdict} champion v{champion.version} "
        f"{champion.ndcg:.4f} by more than {margin}",
    )


def decide_from_table(table: pd.DataFrame, champion: ChampionScore, margin: float,
                      off_policy: OffPolicyEvidence | None = None) -> Decision:  # fmt: skip
    """:func:`decide` on an evaluation table (the model's and most-popular's rows)."""
    return decide(
        float(table.loc[MODEL_SCORER, HEADLINE_METRIC]),
        champion,
        float(table.loc[MOST_POPULAR, HEADLINE_METRIC]),
        margin,
        off_policy=off_policy,
    )
