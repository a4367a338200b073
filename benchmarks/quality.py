"""Ranking quality: the XGBoost ranker against every baseline and LightGBM, over seeds.

    python benchmarks/quality.py --dataset movielens --data-dir ../shared/data/ml-latest-small \
        [--seeds 3] [--full-catalogue] [--json out.json]
    python benchmarks/quality.py --dataset synth --events 300000 [--seeds 3]

One fresh home per run: ingest, weekly (MovieLens) or daily (synth) feature snapshots,
``feast apply``, then per seed: the training set through Feast (negatives sampled with
the seed), XGBoost and LightGBM trained with the seed, and every scorer evaluated on the
same test holdout: users active after a global cut-off who have history before it.
Prints mean ± sd over seeds of each metric, plus training time, and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.common import quiet_libraries  # noqa: E402
from ranking import home as ranking_home  # noqa: E402
from ranking.evaluation import report as holdout  # noqa: E402
from ranking.evaluation.retrieval import (  # noqa: E402
    RECALL_AT,
    retrieval_recall,
    with_two_stages,
)
from ranking.features import snapshots as features  # noqa: E402
from ranking.features import store  # noqa: E402
from ranking.ingest import synth  # noqa: E402
from ranking.ingest.contract import ingest  # noqa: E402
from ranking.ingest.movielens import is_movielens  # noqa: E402
from ranking.ingest.sources import resolve_source  # noqa: E402
from ranking.retrieval.merge import retrieve_from  # noqa: E402
from ranking.schema import REPORT_METRICS  # noqa: E402
from ranking.settings import Settings, get_settings  # noqa: E402
from ranking.training import dataset  # noqa: E402
from ranking.training import rankers as train  # noqa: E402
from ranking.training.retrieved import with_retrieval_columns  # noqa: E402
from ranking.warehouse import warehouse  # noqa: E402

NOW = datetime(2026, 1, 1)  # load time for the "future timestamp" check; data is older


def _quantile_time(settings: Settings, q: float) -> datetime:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        epoch = con.execute(
            "SELECT quantile_cont(epoch(event_timestamp), ?) FROM events", [q]
        ).fetchall()[0][0]
    return datetime.utcfromtimestamp(epoch).replace(hour=0, minute=0, second=0, microsecond=0)


def prepare(args: argparse.Namespace, home: Path) -> tuple[Settings, dataset.SplitTimes]:
    """Load the data set and build the feature store; returns settings and split times."""
    base = get_settings(home=home)
    if args.dataset == "movielens":
        source = resolve_source(args.data_dir, source_format="movielens")
        ranking_home.ensure_dirs(base)
        ingest(base.warehouse_path, source.events, base.event_types, NOW, source.items,
               source.events_reader, source.items_reader)  # fmt: skip
        with warehouse(base.warehouse_path, read_only=True) as con:
            newest = con.execute("SELECT max(event_timestamp) FROM events").fetchall()[0][0]
        as_of = newest.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        test_start = _quantile_time(base, 1 - args.test_share)
        valid_start = _quantile_time(base, 1 - args.test_share - args.valid_share)
        features_section = {
            "snapshot_every": timedelta(days=7),
            "decay_half_life_days": 30.0,
            "history_days": (as_of - valid_start).days + args.train_years * 365,
        }
        # A sparse 22-year log: retrieval looks back a year, with a quarter's half-life.
        retrieval_section = {"window_days": 365.0, "half_life_days": 90.0, "fresh_days": 365.0}
        training_section = {
            "group_by": "day",
            "test_days": (as_of - test_start).days,
            "valid_days": (test_start - valid_start).days,
        }
    else:
        end = datetime(2026, 3, 1)
        data = synth.generate(synth.SynthConfig(events=args.events, days=42, end=end, seed=7))
        paths = synth.write(data, base.raw_dir)
        ingest(base.warehouse_path, paths["events"], base.event_types, end, paths["items"])
        as_of, features_section, training_section, retrieval_section = end, {}, {}, {}
    popular, uniform = (int(n) for n in args.negatives.split(","))
    training_section |= {"n_estimators": args.n_estimators, "negatives_popular": popular,
                         "negatives_random": uniform}  # fmt: skip
    settings = get_settings(home=home, features=features_section, training=training_section,
                            retrieval=retrieval_section)  # fmt: skip
    ranking_home.prepare(settings)
    cadence = settings.features.snapshot_every
    first = features.first_snapshot(as_of, settings.features.history_days)
    build = features.build_feature_tables(settings.warehouse_path, settings.features_dir, as_of,
                                          cadence, settings.features.decay_half_life_days,
                                          first_snapshot=first)  # fmt: skip
    store.apply_repo(settings)
    start = max(min(build.snapshots), first or min(build.snapshots))
    times = dataset.split_times(start, as_of, settings.training.valid_days,
                                settings.training.test_days)  # fmt: skip
    return settings, times


def run_seed(settings: Settings, times: dataset.SplitTimes, seed: int, full_catalogue: bool):
    """Train both models with ``seed`` and evaluate every scorer; long-format rows."""
    settings = settings.updated(seed=seed)
    fs = store.get_store(settings)
    frame, names = dataset.build_training_set(settings.warehouse_path, fs, settings, times)
    fit_train, fit_valid = frame[frame["split"] == "train"], frame[frame["split"] == "valid"]
    test = frame[frame["split"] == "test"]
    models, seconds = {}, {}
    for name, trainer in (("xgboost", train.train_ranker), ("lightgbm", train.train_lightgbm)):
        t0 = time.perf_counter()
        models[name] = trainer(fit_train, fit_valid, names, settings)
        seconds[name] = time.perf_counter() - t0
    rows = []
    modes = [("sampled", test)]
    if full_catalogue:
        full = holdout.holdout_with_features(settings, fs, times, True)[0]
        modes.append(("full", full))
        candidates = retrieve_from(settings.warehouse_path, settings,
                                   sorted(full["user_id"].unique()), times.test_start)  # fmt: skip
        full = with_retrieval_columns(full, candidates)
        modes[-1] = ("full", full)
        recall = retrieval_recall(candidates, full[full["label"] > 0])
        for source, values in recall.drop(columns="candidates_per_user").iterrows():
            for metric, value in values.items():
                rows.append({"mode": "retrieval", "segment": "all", "model": source,
                             "metric": metric, "value": float(value)})  # fmt: skip
        rows.append({"mode": "retrieval", "segment": "all", "model": "merged",
                     "metric": "candidates_per_user",
                     "value": float(recall.loc["merged", "candidates_per_user"])})  # fmt: skip
    for mode, part in modes:
        scores = {n: train.score(m.model, part, names) for n, m in models.items()}
        if mode == "full":  # the two stages: retrieval proposes, the ranker orders
            scores = with_two_stages(candidates, part, scores)
        table, by_segment = holdout.evaluation_tables(settings, part, scores, times.test_start)
        for model, metrics in table.iterrows():
            for metric in REPORT_METRICS:
                rows.append({"mode": mode, "segment": "all", "model": model, "metric": metric,
                             "value": float(metrics[metric])})  # fmt: skip
        for model, metrics in by_segment.iterrows():
            for metric in ("ndcg@10", "recall@10"):
                rows.append({"mode": mode, "segment": metrics["segment"], "model": model,
                             "metric": metric, "value": float(metrics[metric])})  # fmt: skip
    for model, s in seconds.items():
        rows.append({"mode": "train", "segment": "all", "model": model, "metric": "train_s",
                     "value": s})  # fmt: skip
    info = {"train_rows": len(fit_train), "valid_rows": len(fit_valid),
            "test_queries": int(test["group_id"].nunique()),
            "best_iteration": {n: m.best_iteration for n, m in models.items()}}  # fmt: skip
    return rows, info


def machine() -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (FileNotFoundError, StopIteration):
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}"


def print_table(console: Console, summary: pd.DataFrame, mode: str, title: str) -> None:
    part = summary[(summary["mode"] == mode) & (summary["segment"] == "all")]
    table = Table(title=title)
    table.add_column("model")
    metrics = [m for m in REPORT_METRICS if m in set(part["metric"])]
    for m in metrics:
        table.add_column(m, justify="right")
    order = part[part["metric"] == "ndcg@10"].sort_values("mean", ascending=False)["model"]
    for model in order:
        cells = part[part["model"] == model].set_index("metric")
        table.add_row(model, *[f"{cells.loc[m, 'mean']:.4f} ± {cells.loc[m, 'sd']:.4f}"
                               for m in metrics])  # fmt: skip
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["movielens", "synth"], default="movielens")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/ml-latest-small"))
    parser.add_argument("--events", type=int, default=300_000, help="synth only")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--test-share", type=float, default=0.15)
    parser.add_argument("--valid-share", type=float, default=0.10)
    parser.add_argument("--train-years", type=int, default=3)
    parser.add_argument("--n-estimators", type=int, default=400)
    parser.add_argument("--full-catalogue", action="store_true")
    parser.add_argument("--negatives", type=str, default="5,5",
                        help="Training negatives per group: popular,random.")  # fmt: skip
    parser.add_argument("--json", type=Path)
    parser.add_argument("--home", type=Path, help="Home folder (default: a temporary one).")
    args = parser.parse_args(argv)
    quiet_libraries()
    if args.dataset == "movielens" and not is_movielens(args.data_dir):
        parser.error(f"{args.data_dir}: no ratings.csv and movies.csv (MovieLens layout)")
    home = args.home or Path(tempfile.mkdtemp(prefix="ranking-quality-"))
    console = Console(width=max(Console().width, 160))
    try:
        t0 = time.perf_counter()
        settings, times = prepare(args, home)
        prep_s = time.perf_counter() - t0
        rows, infos = [], []
        for seed in range(args.seeds):
            seed_rows, info = run_seed(settings, times, seed, args.full_catalogue)
            rows += [r | {"seed": seed} for r in seed_rows]
            infos.append(info)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    long = pd.DataFrame(rows)
    summary = (
        long.groupby(["mode", "segment", "model", "metric"])["value"]
        .agg(["mean", "std"])
        .rename(columns={"std": "sd"})
        .fillna(0.0)
        .reset_index()
    )
    console.print(
        f"{args.dataset}: cut-off {times.test_start:%Y-%m-%d}, validation from "
        f"{times.valid_start:%Y-%m-%d}, training from {times.start:%Y-%m-%d}; "
        f"{infos[0]['test_queries']} test queries, {infos[0]['train_rows']:,} training rows; "
        f"{args.seeds} seeds; preparation {prep_s:.1f} s"
    )
    print_table(console, summary, "sampled", "Sampled candidates (positives + popular + random)")
    if args.full_catalogue:
        print_table(console, summary, "full", "Full catalogue")
        retrieval = summary[summary["mode"] == "retrieval"].pivot(
            index="model", columns="metric", values="mean"
        )
        order = [f"recall@{k}" for k in RECALL_AT] + ["candidates_per_user"]
        retrieval = retrieval[[c for c in order if c in retrieval.columns]]
        console.print("Retrieval recall on the same holdout (share of the users' next relevant "
                      "items among the candidates):")  # fmt: skip
        console.print(retrieval.round(4).to_string())
    seg = summary[(summary["mode"] == "sampled") & (summary["segment"] != "all")
                  & (summary["metric"] == "ndcg@10")]  # fmt: skip
    console.print("NDCG@10 by user segment (sampled):")
    console.print(seg.pivot(index="model", columns="segment", values="mean").round(4).to_string())
    train_s = summary[summary["metric"] == "train_s"].set_index("model")
    console.print("Training seconds (mean): " + ", ".join(
        f"{m} {r['mean']:.1f}" for m, r in train_s.iterrows()))  # fmt: skip
    ndcg = summary[(summary["mode"] == "sampled") & (summary["segment"] == "all")
                   & (summary["metric"] == "ndcg@10")].set_index("model")["mean"]  # fmt: skip
    best_baseline = ndcg.drop(["xgboost", "lightgbm"]).idxmax()
    console.print(
        f"XGBoost NDCG@10 {ndcg['xgboost']:.4f} = {ndcg['xgboost'] / ndcg['most_popular']:.2f} x "
        f"most-popular (target >= 1.25); best baseline {best_baseline} "
        f"{ndcg[best_baseline]:.4f}; LightGBM {ndcg['lightgbm']:.4f}"
    )
    console.print(f"machine: {machine()}; best iterations {[i['best_iteration'] for i in infos]}")
    if args.json:
        overall = summary[summary["segment"] == "all"]

        def records(part: pd.DataFrame) -> list[dict]:
            return [{"model": r.model, "metric": r.metric, "mean": r.mean, "sd": r.sd}
                    for r in part.itertuples()]  # fmt: skip

        results = records(overall[overall["mode"].isin(["sampled", "train"])])
        full = records(overall[overall["mode"] == "full"])
        retrieval_rows = records(overall[overall["mode"] == "retrieval"])
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "dataset": args.dataset, "seeds": args.seeds, "machine": machine(),
            "cutoff": times.test_start.isoformat(), "results": results,
            "full_catalogue_results": full, "retrieval_results": retrieval_rows, "runs": infos,
        }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
