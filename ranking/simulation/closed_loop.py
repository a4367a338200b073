"""The closed loop, round by round: who is served when, the lists each policy serves
(with every item's score, model version and propensity), the audience's reactions written
to the home's raw folder as any log would be, and the round's row of figures.

A simulation starts from generated history (``ranking.ingest.synth``, the same users and
items as the :class:`Audience`) that ends ``rounds`` days before the day it runs, so every
round lies in the past; round ``r`` serves on day ``r`` at noon and the scheduled steps
(ingest, features, train and gate, monitor) run at the end of that day. With
``taste_shift_round``, the drifting users' tastes jump to one category from that round on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ranking.ingest import synth
from ranking.publishing.gate import OffPolicyEvidence
from ranking.publishing.serving_model import serving_champion
from ranking.schema import IMPRESSION, POLICY, PROPENSITY, SCORE, SERVED_LOG_PREFIX
from ranking.serving.exploration import EXPLORE
from ranking.serving.ranker import rank_request
from ranking.serving.replay import read_served_log
from ranking.settings import Settings
from ranking.simulation.audience import Audience
from ranking.simulation.rounds import POLICIES, SERVED_COLUMNS, popular_items, serve_lists
from ranking.warehouse import warehouse

#: What each served row carries into the propensity log.
LOGGED_COLUMNS = [*SERVED_COLUMNS, SCORE, PROPENSITY, "rule"]
#: Where a simulation writes its rounds, under the home's raw folder.
SIMULATION_DIR = "simulation"


@dataclass(frozen=True)
class SimulationSpec:
    """How a simulation runs: its size, the serving policy, the seed and the shift."""

    rounds: int = 10
    users: int = 300  # active users served per round
    policy: str = "champion"
    seed: int = 7
    events: int = 60_000  # generated history before round 1
    days: int = 28
    k: int = 10
    exploration: float = 0.1  # serving.exploration during the simulation
    taste_shift_round: int | None = None
    taste_shift_to: str = "documentary"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}: one of {', '.join(POLICIES)}")
        if self.taste_shift_to not in synth.CATEGORIES:
            raise ValueError(f"unknown category {self.taste_shift_to!r}")

    def history_end(self, today: datetime) -> datetime:
        """The end of the generated history: ``rounds`` days before ``today`` (midnight)."""
        return today.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
            days=self.rounds
        )

    def config(self, end: datetime, round_no: int = 0) -> synth.SynthConfig:
        """The generator's configuration: the shifted tastes from the shift round on."""
        cfg = synth.SynthConfig(events=self.events, days=self.days, end=end, seed=self.seed)
        shifted = self.taste_shift_round is not None and round_no >= self.taste_shift_round
        return replace(cfg, taste_shift_to=self.taste_shift_to) if shifted else cfg

    def serving_time(self, end: datetime, round_no: int) -> datetime:
        """When round ``round_no`` (from 1) serves: noon of its day."""
        return end + timedelta(days=round_no - 1, hours=12)

    def closing_time(self, end: datetime, round_no: int) -> datetime:
        """When round ``round_no``'s scheduled steps run: the end of its day."""
        return end + timedelta(days=round_no)


def write_history(settings: Settings, spec: SimulationSpec, end: datetime) -> dict[str, Path]:
    """Generate the history before round 1 into ``<raw>/simulation/history`` (kept when
    the same spec wrote it already); the events folder and the items file."""
    folder = settings.raw_dir / SIMULATION_DIR / "history"
    stamp = folder / "spec.json"
    wanted = {**asdict(spec), "end": end.isoformat()}
    wanted = {k: wanted[k] for k in ("events", "days", "seed", "end")}
    paths = {"events": folder / "events", "items": folder / "items.parquet"}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return paths
    paths = synth.write(synth.generate(spec.config(end)), folder)
    stamp.write_text(json.dumps(wanted))
    return paths


def active_users(
    settings: Settings, audience: Audience, spec: SimulationSpec, round_no: int
) -> list[str]:
    """The users served in a round: a seeded draw of ``spec.users`` of the audience's
    users the warehouse knows (the service logs no list for a user it never saw)."""
    with warehouse(settings.warehouse_path, read_only=True) as con:
        known = {u for (u,) in con.execute("SELECT DISTINCT user_id FROM events").fetchall()}
    users = np.array(sorted(set(audience.user_ids) & known))
    rng = np.random.default_rng([spec.seed, round_no])
    size = min(spec.users, len(users))
    return sorted(rng.choice(users, size=size, replace=False).tolist())


def serve_round(
    settings: Settings, audience: Audience, spec: SimulationSpec, round_no: int, at: datetime
) -> pd.DataFrame:
    """One list per active user by ``spec.policy``, each row with its score and
    propensity: the champion's through the serving call (exploring
    ``spec.exploration``), the popular list (propensity 1), or a uniform draw (each item
    at each place with probability one over the released catalogue)."""
    users = active_users(settings, audience, spec, round_no)
    rng = np.random.default_rng([spec.seed, round_no, 1])
    if spec.policy != "champion":
        popular = popular_items(settings, at, spec.k) if spec.policy == "popular" else None
        served = serve_lists(audience, users, at, spec.policy, rng, spec.k, popular=popular)
        catalogue = audience.items
        released = int((catalogue["available"] & (catalogue["created_at"] <= at)).sum())
        served[SCORE] = np.nan
        served[PROPENSITY] = 1.0 if spec.policy == "popular" else 1.0 / max(released, 1)
        served["rule"] = spec.policy
        return served[LOGGED_COLUMNS]
    serving = settings.updated(serving={"exploration": spec.exploration})
    champion = serving_champion(serving)

    def feast_store():  # opened only when the publication cannot answer
        from ranking.features.store import get_store

        return get_store(serving)

    frames = []
    for n, user in enumerate(users):
        ranked = rank_request(serving, feast_store, champion, user, at, spec.k)
        items = ranked.items
        frames.append(pd.DataFrame({
            "user_id": user, "item_id": items["item_id"].to_numpy(),
            "position": items["rank"].to_numpy(dtype=int),
            "session_id": f"sim-{at:%Y%m%dT%H%M%S}-champion-{n}", POLICY: "champion",
            "model_version": ranked.model_version,
            SCORE: items["score"].to_numpy(dtype=float),
            PROPENSITY: items[PROPENSITY].to_numpy(dtype=float),
            "rule": items["rule"].to_numpy(),
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)[LOGGED_COLUMNS]


def write_round(
    settings: Settings, round_no: int, served: pd.DataFrame, events: pd.DataFrame
) -> Path:
    """Write a round to ``<raw>/simulation/round-NN``: the impressions as a served log
    (``served-<day>.jsonl``, contract rows plus score, model version, policy and
    propensity) and the other reactions as Parquet. The folder, for ingest."""
    folder = settings.raw_dir / SIMULATION_DIR / f"round-{round_no:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    shown = events[events["event_type"] == IMPRESSION].merge(
        served[["session_id", "item_id", "model_version", POLICY, SCORE, PROPENSITY, "rule"]],
        on=["session_id", "item_id"], how="left", validate="one_to_one",
    )  # fmt: skip
    day = shown["event_timestamp"].min()
    shown.to_json(folder / f"served-{day:%Y%m%d}.jsonl", orient="records", lines=True,
                  date_format="iso", date_unit="ms")  # fmt: skip
    reactions = events[events["event_type"] != IMPRESSION].copy()
    stamps = pd.to_datetime(reactions["event_timestamp"])
    reactions["event_timestamp"] = stamps.astype("datetime64[us]").dt.tz_localize("UTC")
    reactions.to_parquet(folder / "reactions.parquet", index=False)
    return folder


def read_logged(settings: Settings, round_no: int) -> pd.DataFrame:
    """A round's propensity log back: one row per served item, with ``reward`` 1 when
    the user clicked it."""
    folder = settings.raw_dir / SIMULATION_DIR / f"round-{round_no:02d}"
    logs = sorted(folder.glob(f"{SERVED_LOG_PREFIX}*.jsonl"))
    served = pd.concat([read_served_log(p) for p in logs], ignore_index=True)
    reactions = pd.read_parquet(folder / "reactions.parquet")
    clicked = reactions.loc[reactions["event_type"] == "click", ["session_id", "item_id"]]
    clicked = clicked.drop_duplicates().assign(reward=1)
    logged = served.merge(clicked, on=["session_id", "item_id"], how="left")
    logged["reward"] = logged["reward"].fillna(0).astype(int)
    return logged


def round_row(
    spec: SimulationSpec, round_no: int, figures: dict[str, float], served: pd.DataFrame,
    champion: str | None, drift: str, trained: str, off_policy: OffPolicyEvidence | None,
) -> dict[str, object]:  # fmt: skip
    """A round's row of the table: its figures, whether tastes had shifted, the champion
    after its steps, the drift verdict, what training did and the gate's off-policy
    estimates of the new version and the champion (NaN when there were none)."""
    nan = float("nan")
    return {
        "round": round_no,
        "policy": spec.policy,
        **figures,
        "explored_share": float((served["rule"] == EXPLORE).mean()),
        "taste_shift": spec.taste_shift_round is not None and round_no >= spec.taste_shift_round,
        "champion": champion,
        "drift": drift,
        "training": trained,
        "ope_challenger_snips": off_policy.challenger.value if off_policy else nan,
        "ope_champion_snips": off_policy.champion.value if off_policy else nan,
    }  # fmt: skip
