"""Business rules, applied to a scored candidate list after the model: decide the top k,
say what each rule did. Pure: the candidates carry what the rules read.

In order:

1. drop unavailable items (``available`` false);
2. drop items the user already consumed (``consumed``; ``serving.drop_consumed``);
3. hold back items shown to the user ``serving.max_unanswered_impressions`` times or more
   with no positive reaction since (``unanswered_impressions``);
4. diversity: walking down the scores, an item whose category already fills
   ``serving.max_category_share`` of the top k waits;
   when nothing else is left, waiting items fill the list (rule ``category_cap_fill``),
   then the held-back ignored ones (rule ``unanswered_fill``): a list is never shorter
   than k while an eligible candidate remains;
5. freshness slot: when no item of the top k was created within ``serving.fresh_slot_days``
   and a remaining candidate was, the best such one takes the last place (rule
   ``fresh_slot``).

Every other item says ``model`` (its place is the model's order, or the fallback's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from ranking.settings import ServingSettings

#: What the rules read from each candidate, and the neutral value when it is unknown.
RULE_INPUTS = {
    "available": True,
    "consumed": False,
    "unanswered_impressions": 0,
    "created_at": pd.NaT,
}
#: The ``rule`` of an item the rules did not move.
MODEL = "model"
FRESH_SLOT, CATEGORY_CAP_FILL = "fresh_slot", "category_cap_fill"
UNANSWERED_FILL = "unanswered_fill"


@dataclass
class RuledList:
    """The top k after the rules, and how many candidates each rule kept out of it
    (``category_cap``: held back while the list could be filled without them)."""

    items: pd.DataFrame  # the scored columns, plus ``rule``, best first
    dropped: dict[str, int] = field(default_factory=dict)


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A rule input as an array, neutral where missing or unknown."""
    neutral = RULE_INPUTS[name]
    if name not in frame.columns:
        values = pd.Series(neutral, index=frame.index)
    elif frame[name].dtype.kind in "biM":  # already typed (the serving path): as it is
        kind = {"available": "b", "consumed": "b", "unanswered_impressions": "i"}.get(name, "M")
        values = frame[name]
        if values.dtype.kind == kind:
            return values.to_numpy()
    else:
        values = frame[name]
    if name == "created_at":
        return pd.to_datetime(values).to_numpy(dtype="datetime64[ns]")
    if name == "unanswered_impressions":
        return pd.to_numeric(values, errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    return values.astype("boolean").fillna(neutral).to_numpy(dtype=bool)


def category_cap(k: int, share: float) -> int:
    """Most items one category may hold in a top ``k`` (always at least one)."""
    return max(1, math.floor(share * k + 1e-9))


def apply_rules(
    scored: pd.DataFrame, k: int, rules: ServingSettings, now: datetime,
    columns: list[str] | None = None,
) -> RuledList:  # fmt: skip
    """The top ``k`` of ``scored`` (needs ``item_id``, ``category``, ``score``) after the
    rules, with ``columns`` of ``scored`` (default: all) and ``rule``; ties in score go to
    the smaller item id. On arrays: a ranking call runs it on hundreds of candidates
    within its few milliseconds."""
    items = scored["item_id"].to_numpy(dtype=str)
    order = np.lexsort((items, -scored["score"].to_numpy(dtype=float)))  # score, then id
    available = _column(scored, "available")[order]
    consumed = _column(scored, "consumed")[order] & rules.drop_consumed
    dropped = {"unavailable": int((~available).sum()),
               "consumed": int((available & consumed).sum())}  # fmt: skip
    keep = available & ~consumed
    order = order[keep]
    limit = rules.max_unanswered_impressions
    ignored = (_column(scored, "unanswered_impressions")[order] >= limit) & (limit > 0)
    categories = scored["category"].to_numpy(dtype=object)[order]

    cap = category_cap(k, rules.max_category_share)
    chosen, waiting, per_category = [], [], {}
    for position in np.flatnonzero(~ignored):
        if len(chosen) == k:
            break
        category = categories[position]
        if per_category.get(category, 0) >= cap:
            waiting.append(position)
            continue
        per_category[category] = per_category.get(category, 0) + 1
        chosen.append(position)
    rule = dict.fromkeys(chosen, MODEL)
    # Nothing else left: the cap gives way first, then the items the user kept ignoring.
    for held, name, fill in ((waiting, "category_cap", CATEGORY_CAP_FILL),
                             (list(np.flatnonzero(ignored)), "unanswered_impressions",
                              UNANSWERED_FILL)):  # fmt: skip
        filling = held[: k - len(chosen)]
        for position in filling:
            chosen.append(position)
            rule[position] = fill
        dropped[name] = len(held) - len(filling)  # held back below the top k
    if rules.fresh_slot_days > 0 and chosen:
        created = _column(scored, "created_at")[order]
        fresh_since = np.datetime64(now - timedelta(days=rules.fresh_slot_days), "ns")
        is_fresh = ~np.isnat(created) & (created >= fresh_since)
        if not is_fresh[chosen].any():
            is_fresh[chosen] = False
            outside = np.flatnonzero(is_fresh & ~ignored)
            if len(outside):
                if len(chosen) == k:
                    rule.pop(chosen.pop())
                chosen.append(outside[0])
                rule[outside[0]] = FRESH_SLOT
    rows = order[chosen]
    top = {c: scored[c].to_numpy()[rows] for c in (scored.columns if columns is None else columns)}
    top["rule"] = np.array([rule[p] for p in chosen], dtype=object)
    return RuledList(items=pd.DataFrame(top), dropped=dropped)
