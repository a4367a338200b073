"""Judging the off-policy estimator against the simulation's truth: on a round the
champion served, estimate another registered version's click rate from the logged
traffic (as the gate does, ``ranking.serving.replay``) and compare it with that
version's true click rate on the same users (the audience's click probabilities of the
lists it would have served)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from ranking.publishing.aliases import list_versions
from ranking.publishing.models import load_version
from ranking.serving.replay import estimate_for, target_lists
from ranking.settings import Settings
from ranking.simulation.audience import Audience
from ranking.simulation.closed_loop import read_logged


def _by_user(logged: pd.DataFrame, lists: dict[str, list[str]]) -> dict[str, list[str]]:
    users = logged.groupby("session_id")["user_id"].first()
    return {users[session]: items for session, items in lists.items()}


def true_click_rate(audience: Audience, lists: dict[str, list[str]], at: datetime) -> float:
    """The mean click probability over every place of ``lists`` (user -> items)."""
    rows = pd.DataFrame(
        [(user, item, pos) for user, items in lists.items()
         for pos, item in enumerate(items, start=1)],
        columns=["user_id", "item_id", "position"],
    )  # fmt: skip
    return float(audience.click_probability(rows, at).mean()) if len(rows) else float("nan")


def estimate_against_truth(
    settings: Settings, audience: Audience, round_no: int, at: datetime
) -> list[dict[str, object]]:
    """For every registered version other than the one that served round ``round_no``:
    its SNIPS estimate on that round's log (with the 95 % interval) and its true click
    rate at ``at``, and the same for the serving version itself (the on-policy check)."""
    logged = read_logged(settings, round_no)
    served_by = logged["model_version"].dropna()
    if served_by.empty:
        return []
    logging_version = str(served_by.mode().iloc[0])
    logged = logged[logged["model_version"] == logging_version]
    champion = load_version(settings, logging_version)
    k = int(logged["position"].max())
    rows = []
    for version in sorted(list_versions(settings)["version"].astype(str), key=int):
        target = load_version(settings, version)
        theirs, _ = target_lists(settings, [target, champion], logged, k)
        est = estimate_for(logged, theirs)
        truth = true_click_rate(audience, _by_user(logged, theirs), at)
        rows.append({
            "round": round_no, "logging_version": logging_version, "target_version": version,
            "estimate": est.value, "low": est.low, "high": est.high,
            "effective_rows": est.effective_rows, "truth": truth,
            "relative_error": (est.value - truth) / truth if truth else float("nan"),
            "covered": bool(est.covers(truth)),
        })  # fmt: skip
    return rows
