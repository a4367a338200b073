"""Ranking quality on the full catalogue: two stages (retrieval, then the learned ranker)
against every baseline and LightGBM, over rolling cut-offs and seeds.

    python benchmarks/quality.py [--events PATH] [--items PATH] [--mapping YAML] \
        [--cutoffs 12] [--seeds 3] [--json out.json] [--cache DIR] [--models xgboost]
    python benchmarks/quality.py --synth 300000

``--cache DIR`` keeps each cut-off's training set, holdout and baseline scores (most of
the time outside the fits) and reads them back on the next run with the same data and
settings (only the fit's settings may differ): for experiments on the rankers. The code
is not part of the key: empty the folder after changing retrieval, features or labels.

``--events`` is anything ``ranking ingest`` reads: a contract file or folder, the
MovieLens folder (the default: ../shared/data/ml-latest-small), or another layout with a
mapping file. Everything else is derived from the data (see
:mod:`ranking.evaluation.protocol`): the cut-offs tile the last ``--eval-share`` of the
events; at each one the training set is built once through Feast (retrieved candidates,
as ``ranking train`` does), and XGBoost and LightGBM are trained once per seed.

Two tables, pooled over all test queries of all cut-offs, mean ± sd over seeds:
- full catalogue (the headline): every known item is a candidate; ``*_two_stage`` rank
  only what retrieval proposed; ``retrieval_fusion`` and ``<source>_alone`` are the
  retrieval stage alone; the other baselines rank the whole catalogue;
- retrieved candidates (what the promotion gate compares): retrieval's candidates plus
  the relevant items it missed, which no scorer can rank.
Then the XGBoost two stages against the best non-learned scorer query by query (mean
difference of NDCG@10 ± its standard error, wins and losses), retrieval recall per
source, the spread over cut-offs, timings and the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine_info import machine_line  # noqa: E402  (beside this script)

from cli.common import quiet_libraries  # noqa: E402
from ranking import home as ranking_home  # noqa: E402
from ranking.evaluation import baselines, metrics  # noqa: E402
from ranking.evaluation import report as holdout  # noqa: E402
from ranking.evaluation.protocol import RollingProtocol, derive_protocol  # noqa: E402
from ranking.evaluation.retrieval import RECALL_AT, retrieval_recall, with_two_stages  # noqa: E402
from ranking.features import snapshots as features  # noqa: E402
from ranking.features import store  # noqa: E402
from ranking.fingerprint import digest  # noqa: E402
from ranking.ingest import synth  # noqa: E402
from ranking.ingest.contract import ingest  # noqa: E402
from ranking.ingest.sources import resolve_source  # noqa: E402
from ranking.retrieval.merge import FUSED_SCORE, retrieve_from  # noqa: E402
from ranking.schema import HEADLINE_METRIC, MOST_POPULAR, REPORT_METRICS, RETRIEVAL_FUSION  # noqa: E402
from ranking.settings import Settings, get_settings  # noqa: E402
from ranking.training import dataset, distributed  # noqa: E402
from ranking.training import rankers as train  # noqa: E402
from ranking.training.retrieved import only_retrieved, with_retrieval_columns  # noqa: E402
from ranking.warehouse import warehouse  # noqa: E402

LEARNED = ("xgboost", "lightgbm", "xgboost_dask")
DEFAULT_LEARNED = ("xgboost", "lightgbm")
DEFAULT_EVENTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"


def load(args: argparse.Namespace, home: Path) -> tuple[Settings, str]:
    """Ingest the data set into a fresh home; returns base settings and its name."""
    settings = get_settings(home=home)
    ranking_home.ensure_dirs(settings)
    now = datetime.now(UTC).replace(tzinfo=None)  # the load time: a script may read the clock
    if args.synth:
        end = datetime(2026, 3, 1)
        data = synth.generate(synth.SynthConfig(events=args.synth, days=42, end=end, seed=7))
        paths = synth.write(data, settings.raw_dir)
        ingest(settings.warehouse_path, paths["events"], settings.event_types, end, paths["items"])
        return settings, f"synth {args.synth:,} events"
    source = resolve_source(args.events, args.items, args.mapping)
    reports = ingest(settings.warehouse_path, source.events, settings.event_types, now,
                     source.items, source.events_reader, source.items_reader)  # fmt: skip
    for report in reports:
        print(report.summary())
    return settings, args.events.name


def derived_settings(settings: Settings, protocol: RollingProtocol, workers: int = 1) -> Settings:
    """Settings with the values the protocol derives from the data, where the user set
    none (``RANKING_*`` variables win)."""
    updates = {}
    for name, derived in protocol.sections.items():
        chosen = getattr(settings, name).model_fields_set
        updates[name] = {k: v for k, v in derived.items() if k not in chosen}
    # The protocol rolls its own cut-offs: each one's test window is one query time.
    updates["evaluation"] = {"test_cutoffs": 1}
    updates["training"] = {**updates.get("training", {}), "retrieval_workers": workers}
    return settings.updated(**updates)


def build_features(settings: Settings, protocol: RollingProtocol) -> None:
    """Feature snapshots for every cut-off; feast apply."""
    ranking_home.prepare(settings)
    features.build_feature_tables(settings.warehouse_path, settings.features_dir,
                                  protocol.as_of, settings.features.snapshot_every,
                                  settings.features.decay_half_life_days,
                                  first_snapshot=protocol.first_snapshot)  # fmt: skip
    store.apply_repo(settings)


def long_rows(table: pd.DataFrame, **keys) -> list[dict]:
    return [keys | {"model": model, "metric": metric, "value": float(value),
                    "groups": float(row["groups"])}
            for model, row in table.iterrows() for metric, value in row.items()
            if metric in REPORT_METRICS]  # fmt: skip


# Settings that change only the fits, not the training sets, the holdouts or the baselines.
FIT_ONLY = {"seed": None, "training": ("n_estimators", "learning_rate", "max_depth",
            "min_child_weight", "monotone_retrieval", "early_stopping_rounds", "device",
            "retrieval_workers")}  # fmt: skip
CACHE_VERSION = 1


def cache_path(folder: Path, settings: Settings, times: dataset.SplitTimes) -> Path:
    """Where one cut-off's training set, holdout and baseline scores are kept: named by
    every setting that shapes them (not the fit's) and the split times. The code is not
    in the key: delete the folder after changing retrieval, features or labels."""
    dumped = settings.model_dump(mode="json")
    dumped.pop("seed", None)
    # Where things run, not what they compute: a temporary home per run, the checkout's
    # feature repo, the services and the Dask cluster.
    for section in ("home", "feature_repo", "services", "scale"):
        dumped.pop(section, None)
    for key in FIT_ONLY["training"]:
        dumped["training"].pop(key, None)
    key = digest(CACHE_VERSION, dumped, times)
    return folder / f"{times.test_start:%Y-%m-%d}-{key[:16]}.pkl"


def build_cutoff(settings: Settings, times: dataset.SplitTimes,
                 memo: store.FeatureMemo | None = None) -> tuple[dict, dict]:  # fmt: skip
    """One cut-off's training set (through Feast), full-catalogue holdout with its
    retrieval, and the seed-free baseline scores; and the seconds each part took.

    ``memo`` carries the feature rows already joined at earlier cut-offs (their expanding
    training windows share most query groups), so Feast joins only the new ones."""
    fs = store.get_store(settings)
    t0 = time.perf_counter()
    frame, names = dataset.build_training_set(settings.warehouse_path, fs, settings, times, memo)
    phases = {"training_set": time.perf_counter() - t0}
    t0 = time.perf_counter()
    candidates_test = dataset.split_rows(frame, "test")
    full = holdout.holdout_with_features(settings, fs, times, full_catalogue=True)[0]
    users = sorted(full["user_id"].unique())  # the holdout's retrieval, reused
    retrieved = retrieve_from(settings.warehouse_path, settings, users, times.test_start,
                              reuse=True)  # fmt: skip
    full = with_retrieval_columns(full, retrieved)
    with warehouse(settings.warehouse_path, read_only=True) as con:  # seed-free: once
        base_full = baselines.baseline_scores(con, settings, full, times.test_start)
        base_cand = baselines.baseline_scores(con, settings, candidates_test, times.test_start)
    base_cand[RETRIEVAL_FUSION] = candidates_test[FUSED_SCORE].astype(float)
    phases["holdout_and_baselines"] = time.perf_counter() - t0
    built = {"frame": frame, "names": names, "full": full, "retrieved": retrieved,
             "base_full": base_full, "base_cand": base_cand}  # fmt: skip
    return built, phases


def run_cutoff(settings: Settings, times: dataset.SplitTimes, seeds: int,
               memo: store.FeatureMemo | None = None, cache: Path | None = None,
               learned: tuple[str, ...] = DEFAULT_LEARNED, client=None):  # fmt: skip
    """Train and evaluate at one cut-off; long-format rows and facts about the cut-off.

    With ``cache``, the cut-off's training set, holdout and baselines are read from that
    folder when an earlier run kept them there (see :func:`cache_path`), else kept.
    ``client``: the Dask cluster the ``xgboost_dask`` fits run on."""
    t0 = time.perf_counter()
    path = cache_path(cache, settings, times) if cache else None
    if path is not None and path.exists():
        built = pd.read_pickle(path)
        phases = {"cached": time.perf_counter() - t0}
    else:
        built, phases = build_cutoff(settings, times, memo)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            pd.to_pickle(built, path)
    frame, names, full, retrieved, base_full, base_cand = (
        built[k] for k in ("frame", "names", "full", "retrieved", "base_full", "base_cand")
    )
    fit_train, fit_valid = dataset.split_rows(frame, "train"), dataset.split_rows(frame, "valid")
    candidates_test = dataset.split_rows(frame, "test")
    t_fit = time.perf_counter()  # (t0 times each fit below)
    rows, queries, valid_ndcg = [], [], []
    seconds, best = {m: 0.0 for m in learned}, {m: [] for m in learned}
    cutoff = times.test_start.date().isoformat()

    def on_dask(tr, va, names, seeded, _data):  # xgboost.dask partitions the frames itself
        return distributed.train_ranker_on_dask(tr, va, names, seeded, client)

    trainers = {"xgboost": train.train_ranker, "lightgbm": train.train_lightgbm,
                "xgboost_dask": on_dask}  # fmt: skip
    t0 = time.perf_counter()
    data = train.fit_data(fit_train, fit_valid, names)  # shared by every fit below
    seconds["fit_data"] = time.perf_counter() - t0
    for seed in range(seeds):
        seeded = settings.updated(seed=seed)
        models = {}
        for name in learned:
            t0 = time.perf_counter()
            models[name] = trainers[name](fit_train, fit_valid, names, seeded, data)
            seconds[name] += time.perf_counter() - t0
            best[name].append(models[name].best_iteration)
        xgboost = models.get("xgboost")
        valid_ndcg.append(float(getattr(xgboost and xgboost.model, "best_score", "nan")))
        on_full = {n: train.score(m.model, full, names) for n, m in models.items()}
        on_full = with_two_stages(retrieved, full, on_full) | base_full
        table = metrics.report(full, on_full, seed=seed)
        rows += long_rows(table, mode="full", cutoff=cutoff, seed=seed)
        queries += per_query_rows(full, on_full, cutoff=cutoff, seed=seed)
        on_cand = {n: train.score(m.model, candidates_test, names) for n, m in models.items()}
        on_cand = {n: only_retrieved(candidates_test, s) for n, s in (on_cand | base_cand).items()}
        table = metrics.report(candidates_test, on_cand, seed=seed)
        rows += long_rows(table, mode="candidates", cutoff=cutoff, seed=seed)
    phases["fit_and_score"] = time.perf_counter() - t_fit
    recall = retrieval_recall(retrieved, full[full["label"] > 0])
    for source, values in recall.iterrows():
        for metric, value in values.dropna().items():
            rows.append({"mode": "retrieval", "cutoff": cutoff, "seed": 0, "model": source,
                         "metric": metric, "value": float(value),
                         "groups": float(full["group_id"].nunique())})  # fmt: skip
    info = {"cutoff": cutoff, "test_queries": int(full["group_id"].nunique()),
            "train_groups": int(fit_train["group_id"].nunique()),
            "train_rows": len(fit_train), "valid_groups": int(fit_valid["group_id"].nunique()),
            "train_s": seconds, "best_iteration": best, "phase_s": phases,
            "xgboost_valid_ndcg": sum(valid_ndcg) / len(valid_ndcg)}  # fmt: skip
    return rows, queries, info


def per_query_rows(frame: pd.DataFrame, scores: dict[str, pd.Series], **keys) -> list[dict]:
    """NDCG@10 of every query under every scorer (long rows), for paired comparisons."""
    out = []
    for model, values in scores.items():
        scored = frame[["group_id", "label"]].assign(score=values.reindex(frame.index).to_numpy())
        per_query = metrics.ndcg_per_query(scored, "score", seed=keys.get("seed", 0))
        out += [keys | {"model": model, "query": int(g), "ndcg": float(v)}
                for g, v in per_query.items()]  # fmt: skip
    return out


def paired_against(queries: pd.DataFrame, model: str, others: list[str]) -> list[metrics.Paired]:
    """``model`` against each of ``others`` query by query (each query's NDCG@10 averaged
    over the seeds first): mean difference ± standard error, wins and losses."""
    per_query = queries.groupby(["model", "cutoff", "query"])["ndcg"].mean()
    return [metrics.paired(per_query.loc[model], per_query.loc[other], model, other)
            for other in others if other in per_query.index.get_level_values(0)]  # fmt: skip


def pooled(long: pd.DataFrame) -> pd.DataFrame:
    """Per seed, every query of every cut-off counted once (means weighted by queries);
    then mean and sd over seeds, and the sd of the per-cut-off means."""
    weighted = long.assign(w=long["value"] * long["groups"])
    keys = ["mode", "model", "metric"]
    per_seed = weighted.groupby([*keys, "seed"])[["w", "groups"]].sum()
    per_seed = (per_seed["w"] / per_seed["groups"]).rename("value").reset_index()
    out = per_seed.groupby(keys)["value"].agg(["mean", "std"]).rename(columns={"std": "sd"})
    per_cut = long.groupby([*keys, "cutoff"])["value"].mean().groupby(keys).std()
    return out.assign(sd_cutoffs=per_cut).fillna(0.0).reset_index()


def print_table(console: Console, summary: pd.DataFrame, mode: str, title: str) -> None:
    part = summary[summary["mode"] == mode]
    table = Table(title=title)
    table.add_column("model")
    shown = ("ndcg@10", "map@10", "recall@10", "recall@50", "mrr", "coverage@10", "novelty@10")
    for m in shown:
        table.add_column(m, justify="right")
    order = part[part["metric"] == HEADLINE_METRIC].sort_values("mean", ascending=False)["model"]
    for model in order:
        cells = part[part["model"] == model].set_index("metric")
        table.add_row(model, *[f"{cells.loc[m, 'mean']:.4f} ± {cells.loc[m, 'sd']:.4f}"
                               for m in shown])  # fmt: skip
    console.print(table)


def headline(summary: pd.DataFrame) -> dict:
    """XGBoost two stages against the best non-learned scorer and most popular."""
    ndcg = summary[(summary["mode"] == "full") & (summary["metric"] == HEADLINE_METRIC)]
    ndcg = ndcg.set_index("model")["mean"]
    learned = [m for m in ndcg.index if any(m.startswith(n) for n in LEARNED)]
    best = ndcg.drop(learned).idxmax()
    model = ndcg["xgboost_two_stage"]
    return {"xgboost_two_stage": model, "best_baseline": best, "best_baseline_ndcg": ndcg[best],
            "vs_best_baseline": model / ndcg[best], "most_popular": ndcg[MOST_POPULAR],
            "vs_most_popular": model / ndcg[MOST_POPULAR],
            "lightgbm_two_stage": ndcg.get("lightgbm_two_stage", float("nan"))}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=Path, default=DEFAULT_EVENTS,
                        help="Events file or folder (MovieLens folders too).")  # fmt: skip
    parser.add_argument("--items", type=Path, help="Items file, when separate.")
    parser.add_argument("--mapping", type=Path, help="Mapping YAML for other layouts.")
    parser.add_argument("--synth", type=int, help="Generate this many events instead.")
    parser.add_argument("--cutoffs", type=int, default=12)
    parser.add_argument("--eval-share", type=float, default=0.35,
                        help="Share of the events (the latest) the test windows tile.")  # fmt: skip
    parser.add_argument("--train-windows", type=int, default=None,
                        help="Training length in test windows (default: all the history "
                        "before each cut-off's validation window).")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="Processes for the training groups' retrieval (default: the "
                        "cores; the figures do not depend on it).")  # fmt: skip
    parser.add_argument("--json", type=Path)
    parser.add_argument("--home", type=Path, help="Home folder (default: a temporary one).")
    parser.add_argument("--cache", type=Path,
                        help="Folder keeping each cut-off's training set, holdout and "
                        "baselines; runs that change only the fits reuse them.")  # fmt: skip
    parser.add_argument("--models", nargs="+", choices=LEARNED, default=list(DEFAULT_LEARNED),
                        help="Learned rankers to fit (default: xgboost and lightgbm; "
                        "xgboost_dask: the same XGBoost fitted by xgboost.dask on a local "
                        "Dask cluster, to compare with the in-process fit).")  # fmt: skip
    parser.add_argument(
        "--dask-workers",
        type=int,
        default=2,
        help="Workers of the local Dask cluster for xgboost_dask.",
    )
    args = parser.parse_args(argv)
    quiet_libraries()
    if not args.synth and not args.events.exists():
        parser.error(f"{args.events}: no such file or folder (is ../shared beside the project?)")
    home = args.home or Path(tempfile.mkdtemp(prefix="ranking-quality-"))
    console = Console(width=max(Console().width, 160))
    t0 = time.perf_counter()
    try:
        base, name = load(args, home)
        protocol = derive_protocol(base.warehouse_path, args.cutoffs, args.eval_share,
                                   args.train_windows)  # fmt: skip
        settings = derived_settings(base, protocol, args.workers)
        cached = args.cache and all(cache_path(args.cache, settings, protocol.times(c)).exists()
                                    for c in protocol.cutoffs)  # fmt: skip
        if not cached:  # every cut-off kept: no feature snapshot or Feast join is needed
            build_features(settings, protocol)
        prep_s = time.perf_counter() - t0
        rows, queries, infos = [], [], []
        memo = store.FeatureMemo()  # one feature service, tables fixed from here on
        with contextlib.ExitStack() as stack:  # one Dask cluster for every cut-off's fits
            client = None
            if "xgboost_dask" in args.models:
                scaled = settings.updated(scale={"dask_workers": args.dask_workers})
                client = stack.enter_context(distributed.dask_client(scaled))
            for cutoff in protocol.cutoffs:
                times = protocol.times(cutoff)
                cut_rows, cut_queries, info = run_cutoff(settings, times, args.seeds, memo,
                                                         args.cache, tuple(args.models),
                                                         client)  # fmt: skip
                rows += cut_rows
                queries += cut_queries
                infos.append(info)
                phases = ", ".join(f"{k} {v:.0f} s" for k, v in info["phase_s"].items())
                console.print(f"cut-off {info['cutoff']}: {info['test_queries']} test queries, "
                              f"{info['train_groups']} training groups; XGBoost validation "
                              f"NDCG@10 {info['xgboost_valid_ndcg']:.4f}; {phases}")  # fmt: skip
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    total_s = time.perf_counter() - t0
    summary = pooled(pd.DataFrame(rows))
    described = protocol.describe()
    test_users = sum(i["test_queries"] for i in infos)
    trained = described["train_days"]
    trained = trained if protocol.train is None else f"{trained:g} days"
    console.print(
        f"{name}: {len(protocol.cutoffs)} cut-offs from {protocol.cutoffs[0]:%Y-%m-%d} to "
        f"{protocol.cutoffs[-1]:%Y-%m-%d}, test windows of {described['test_window_days']:g} "
        f"days, validation {described['valid_days']:g} days, training {trained}; "
        f"{test_users} test queries (a returning user at a cut-off); {args.seeds} seeds; "
        f"snapshots every {described['snapshot_every_days']:g} "
        f"days; preparation {prep_s:.0f} s, total {total_s:.0f} s"
    )
    print_table(console, summary, "full", "Full catalogue (headline), pooled over cut-offs")
    print_table(console, summary, "candidates", "Retrieved candidates (the gate's holdout)")
    recall = summary[summary["mode"] == "retrieval"].pivot(index="model", columns="metric",
                                                            values="mean")  # fmt: skip
    order = [f"recall@{k}" for k in RECALL_AT] + ["candidates_per_user"]
    console.print("Retrieval recall (share of the users' next relevant items proposed):")
    console.print(recall[[c for c in order if c in recall.columns]].round(4).to_string())
    head = headline(summary)
    console.print(
        f"XGBoost two stages NDCG@10 {head['xgboost_two_stage']:.4f} = "
        f"{head['vs_best_baseline']:.2f} x the best non-learned scorer "
        f"({head['best_baseline']} {head['best_baseline_ndcg']:.4f}; target >= 1.25) and "
        f"{head['vs_most_popular']:.2f} x most popular ({head['most_popular']:.4f}; target >= "
        f"2); LightGBM two stages {head['lightgbm_two_stage']:.4f}"
    )
    if "xgboost_dask" in args.models:  # the same model fitted by xgboost.dask
        full = summary[(summary["mode"] == "full") & (summary["metric"] == HEADLINE_METRIC)]
        cells = full.set_index("model").loc[["xgboost_two_stage", "xgboost_dask_two_stage"]]
        (local, local_sd), (dask, dask_sd) = cells[["mean", "sd"]].itertuples(index=False)
        head["xgboost_dask_two_stage"] = dask
        head["dask_within_one_sd"] = bool(abs(dask - local) <= max(local_sd, dask_sd))
        console.print(
            f"xgboost.dask ({args.dask_workers} workers) two stages NDCG@10 {dask:.4f} ± "
            f"{dask_sd:.4f} against {local:.4f} ± {local_sd:.4f} in process: difference "
            f"{dask - local:+.4f}, within one sd: {head['dask_within_one_sd']}"
        )
    others = [head["best_baseline"], MOST_POPULAR, "lightgbm_two_stage"]
    comparisons = paired_against(pd.DataFrame(queries), "xgboost_two_stage", others)
    console.print("Paired per query (NDCG@10, each query averaged over the seeds):")
    for comparison in comparisons:
        console.print(f"  {comparison.line()}")
    valid = [i["xgboost_valid_ndcg"] for i in infos]
    console.print(f"XGBoost validation NDCG@10 (before each cut-off, where hyper-parameters are "
                  f"chosen), mean over cut-offs: {sum(valid) / len(valid):.4f}")  # fmt: skip
    keys = dict.fromkeys(k for i in infos for k in i["phase_s"])  # cached or built
    phase_s = {k: round(sum(i["phase_s"].get(k, 0.0) for i in infos)) for k in keys}
    console.print(f"seconds by phase, all cut-offs: preparation {prep_s:.0f}, {phase_s}")
    train_s = {m: sum(i["train_s"][m] for i in infos) / max(1, args.seeds) for m in args.models}
    train_s["fit_data (once per cut-off)"] = sum(i["train_s"]["fit_data"] for i in infos)
    console.print(f"training seconds per seed, all cut-offs: {train_s}; machine: {machine_line()}")
    if args.json:

        def records(mode: str) -> list[dict]:
            part = summary[summary["mode"] == mode]
            return [{"model": r.model, "metric": r.metric, "mean": r.mean, "sd": r.sd,
                     "sd_cutoffs": r.sd_cutoffs} for r in part.itertuples()]  # fmt: skip

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "dataset": name, "machine": machine_line(), "seeds": args.seeds,
            "test_users": test_users, "protocol": described | {"eval_share": args.eval_share,
                                                                "catalogue": "full"},
            "results": records("full"), "candidates_results": records("candidates"),
            "retrieval_results": records("retrieval"), "headline": head, "cutoffs": infos,
            "paired": [c.as_dict() for c in comparisons],
            "seconds": {"total": total_s, "preparation": prep_s},
        }, indent=2, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
