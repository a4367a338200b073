"""The closed loop measured: each policy over rounds and seeds, and the off-policy
estimator against the simulation's truth.

    python benchmarks/loop.py [--rounds 10] [--seeds 3] [--users 300] [--events 60000]
                              [--policies champion,popular,random] [--taste-shift-round R]
                              [--json out.json] [--home DIR]

For each seed and policy, ``ranking simulate``'s flow runs on a fresh home (the same
generated history and audience for every policy of a seed), and its rounds are printed:
CTR, true NDCG@10, plays and purchases per session, skip rate, coverage, the champion,
the drift verdict. Then, on each champion run, every round's logged traffic is replayed
for every registered version (``ranking.simulation.off_policy_truth``): its SNIPS
estimate and 95 % interval against its true click rate on the same users. Printed: the
mean relative error and the intervals' coverage. The JSON holds ``rounds: [{round,
policy, seed, ctr, true_ndcg10, ...}]`` and ``off_policy: [{seed, round,
target_version, estimate, low, high, truth, covered}]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from machine_info import machine_line  # beside this script

from flows.simulate import simulate_flow
from ranking.home import load as load_home
from ranking.ingest.profile import fit_settings, profile_of
from ranking.simulation.audience import Audience
from ranking.simulation.closed_loop import SimulationSpec
from ranking.simulation.off_policy_truth import estimate_against_truth

SHOWN = ["round", "ctr", "true_ndcg@10", "plays_per_session", "purchases_per_session",
         "skip_rate", "coverage", "champion", "drift"]  # fmt: skip


def run_policy(policy: str, seed: int, args, today: datetime, home: Path) -> pd.DataFrame:
    started = time.perf_counter()
    result = simulate_flow(rounds=args.rounds, users=args.users, policy=policy, seed=seed,
                           taste_shift_round=args.taste_shift_round, events=args.events,
                           days=args.days, today=today.isoformat(), home=str(home))  # fmt: skip
    table = result.table.assign(seed=seed, seconds=time.perf_counter() - started)
    print(f"\n{policy}, seed {seed} ({table['seconds'].iloc[0]:.0f} s):")
    print(table[SHOWN].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return table


def off_policy_rows(seed: int, args, today: datetime, home: Path) -> list[dict]:
    spec = SimulationSpec(rounds=args.rounds, users=args.users, seed=seed, events=args.events,
                          days=args.days, taste_shift_round=args.taste_shift_round)  # fmt: skip
    end = spec.history_end(today)
    settings = load_home(str(home))
    settings = fit_settings(settings, profile_of(settings.warehouse_path))  # as the flows
    rows = []
    for n in range(1, args.rounds + 1):
        audience = Audience.generate(spec.config(end, n))
        for row in estimate_against_truth(settings, audience, n, spec.closing_time(end, n)):
            rows.append({"seed": seed, **row})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--policies", default="champion,popular,random")
    parser.add_argument("--taste-shift-round", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--home", type=Path, default=None, help="Folder for the homes.")
    args = parser.parse_args(argv)
    root = args.home or Path(tempfile.mkdtemp(prefix="loop-bench-"))
    today = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    print(machine_line())
    tables, off_policy = [], []
    for seed in range(1, args.seeds + 1):
        for policy in args.policies.split(","):
            home = root / f"{policy}-seed{seed}"
            tables.append(run_policy(policy, seed, args, today, home))
            if policy == "champion":
                off_policy += off_policy_rows(seed, args, today, home)
    rounds = pd.concat(tables, ignore_index=True)
    means = rounds.pivot_table(index="round", columns="policy", values=["ctr", "true_ndcg@10"])
    print("\nMean over seeds, by round:")
    print(means.to_string(float_format=lambda v: f"{v:.4f}"))
    if off_policy:
        ope = pd.DataFrame(off_policy)
        print("\nOff-policy SNIPS vs truth (every registered version on each champion round):")
        shown = ["seed", "round", "logging_version", "target_version", "estimate", "low",
                 "high", "truth", "covered"]  # fmt: skip
        print(ope[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        judged = ope.dropna(subset=["estimate"])
        print(f"mean |relative error| {judged['relative_error'].abs().mean():.3f}; within 10 %: "
              f"{(judged['relative_error'].abs() <= 0.1).mean():.0%}; 95 % intervals cover the "
              f"truth: {judged['covered'].mean():.0%} of {len(judged)}")  # fmt: skip
    if args.json:
        records = rounds.rename(columns={"true_ndcg@10": "true_ndcg10"})
        out = {"machine": machine_line(), "args": {k: (str(v) if isinstance(v, Path) else v)
                                                   for k, v in vars(args).items()},
               "rounds": json.loads(records.to_json(orient="records")),
               "off_policy": off_policy}  # fmt: skip
        args.json.write_text(json.dumps(out, indent=1, default=str))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
