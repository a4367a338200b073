"""Off-policy evaluation on the champion's logged traffic: how would another model's
lists have done on the sessions the champion served?

The served logs (``served-<day>.jsonl`` anywhere under the raw folder: the service's, a
simulation's) carry each item's position, model version and propensity; the warehouse
says which were clicked. Each logged session's user is ranked again by the target model
(deterministically, through the same :func:`rank_for_user` as serving, on the candidates
and rule inputs of the session's time), and a logged row counts for the target with
probability 1 when the target puts the same item at the same place, else 0
(:func:`ranking.serving.exploration.target_probability`). The champion is re-ranked
the same way, on the same candidates, so both estimates share one approximation (the
online features are today's, not the session's) and the comparison is like for like.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from ranking.evaluation.off_policy import Estimate, snips
from ranking.publishing.champion import Champion
from ranking.publishing.gate import OffPolicyEvidence
from ranking.retrieval.published import load_published
from ranking.schema import CLICK, PROPENSITY, REWARD, SERVED_LOG_PREFIX, TARGET_PROBABILITY
from ranking.serving.candidates import candidates_for
from ranking.serving.exploration import target_probability
from ranking.serving.ranker import rank_for_user
from ranking.settings import Settings
from ranking.warehouse import warehouse

#: How far back before the gate's time the champion's traffic is read.
LOGGED_WINDOW = timedelta(days=1)
#: The served log's columns read as text, whatever they look like.
SERVED_LOG_IDS = ("user_id", "item_id", "session_id", "model_version")
#: Fewer logged rows than this judge nothing.
MIN_LOGGED_ROWS = 200


def read_served_log(path: Path) -> pd.DataFrame:
    """A served log's rows, ids and model versions as text."""
    return pd.read_json(path, lines=True, dtype=dict.fromkeys(SERVED_LOG_IDS, str))


def logged_traffic(settings: Settings, version: str, until: datetime) -> pd.DataFrame:
    """The rows ``version`` served in the window before ``until``, with ``reward`` 1 for
    the clicked ones (an empty frame without any)."""
    since = until - LOGGED_WINDOW
    frames = []
    for path in sorted(settings.raw_dir.rglob(f"{SERVED_LOG_PREFIX}*.jsonl")):
        found = read_served_log(path)
        if found.empty or PROPENSITY not in found.columns:
            continue  # a log from before propensities were written
        stamps = pd.to_datetime(found["event_timestamp"], utc=True).dt.tz_localize(None)
        keep = (found["model_version"] == version) & (stamps >= since) & (stamps < until)
        frames.append(found.loc[keep].assign(event_timestamp=stamps[keep]))
    logged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if logged.empty:
        return logged
    with warehouse(settings.warehouse_path, read_only=True) as con:
        clicked = con.execute(
            "SELECT DISTINCT session_id, item_id FROM events "
            "WHERE event_type = ? AND session_id IN (SELECT unnest(?::VARCHAR[]))",
            [CLICK, sorted(logged["session_id"].unique())],
        ).df()
    logged = logged.merge(clicked.assign(**{REWARD: 1}), on=["session_id", "item_id"],
                          how="left")  # fmt: skip
    logged[REWARD] = logged[REWARD].fillna(0).astype(int)
    return logged


def target_lists(
    settings: Settings, models: list[Champion], logged: pd.DataFrame, k: int
) -> list[dict[str, list[str]]]:
    """For each model, each logged session's deterministic top ``k`` (rules on, no
    exploration), ranked at the session's time on the candidates and rule inputs of that
    time (retrieval is point in time: what the user did in or after the session is not
    yet known, so a clicked item is still a candidate), the candidates shared by every
    model: what each target policy would have served."""
    rules = settings.serving.model_copy(update={"exploration": 0.0})

    def feast_store():  # opened only when the publication cannot answer
        from ranking.features.store import get_store

        return get_store(settings)

    lists: list[dict[str, list[str]]] = [{} for _ in models]
    sessions = logged.groupby("session_id", sort=True).agg(
        user_id=("user_id", "first"), at=("event_timestamp", "min"))  # fmt: skip
    for session, user, at in sessions.itertuples():
        at = pd.Timestamp(at).to_pydatetime()
        published = load_published(settings, at)
        views = published.views if published is not None else None
        candidates = candidates_for(settings, user, at)
        for found, model in zip(lists, models, strict=True):
            ranked = rank_for_user(feast_store, model, candidates, user, at, k, rules, views)
            found[session] = list(ranked.items["item_id"])
    return lists


def estimate_for(logged: pd.DataFrame, lists: dict[str, list[str]]) -> Estimate:
    """SNIPS of the policy that serves ``lists`` (session -> items) on ``logged``."""
    parts = [
        rows.assign(
            **{TARGET_PROBABILITY: target_probability(rows, lists.get(session, []), [], 0.0)}
        )  # fmt: skip
        for session, rows in logged.groupby("session_id", sort=True)
    ]
    return snips(pd.concat(parts, ignore_index=True))


def compare_on_logged(
    settings: Settings, challenger: Champion, champion: Champion, logged: pd.DataFrame
) -> OffPolicyEvidence:
    """SNIPS click rates of ``challenger`` and ``champion`` on ``logged`` (the champion's
    traffic), both re-ranked as of each session."""
    k = int(logged["position"].max())
    theirs, ours = target_lists(settings, [challenger, champion], logged, k)
    return OffPolicyEvidence(
        challenger=estimate_for(logged, theirs),
        champion=estimate_for(logged, ours),
        logged_rows=len(logged),
    )


def compare_version_on_logged(
    settings: Settings, version: str, at: datetime
) -> OffPolicyEvidence | None:
    """:func:`compare_on_logged` for a registered ``version`` against the champion, on the
    champion's traffic of the window before ``at``; None without a champion (or when the
    version is the champion) or with fewer than :data:`MIN_LOGGED_ROWS` logged rows."""
    from ranking.publishing.models import load_champion, load_version  # MLflow

    champion = load_champion(settings)
    if champion is None or champion.version == version:
        return None
    logged = logged_traffic(settings, champion.version, at)
    if len(logged) < MIN_LOGGED_ROWS:
        return None
    return compare_on_logged(settings, load_version(settings, version), champion, logged)
