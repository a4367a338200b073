"""Time and peak memory of each stage of the loop at N generated events.

    python benchmarks/pipeline.py --events 1000000 [--anchors] [--json out.json] [--home DIR]
        [--profile shared]   # Redis, PostgreSQL: infra/services.sh up first
        [--no-training]      # stop after materialize (the online store's figures)
        [--dask-workers 2 --feature-partitions 4]   # the feature build on Dask as well

Stages run through the library (the same functions the Prefect flows call) in one
process, on a fresh home folder, so each figure is the stage's own cost without the
orchestrator's. Peak RSS is sampled every 20 ms from /proc for this process plus its
children (``feast apply`` runs as a child), and the process-lifetime maximum from
getrusage is printed beside it. With ``--anchors`` each stage that has one is followed,
in the same process, by its hand-written anchor (``anchors.py``: the least work the
stage's engine needs for the same rows) and the table shows the ratio; anchors count in
neither the total nor the peak. Targets at 1M events on 2 cores: ingest + features <=
30 s, whole pipeline <= 3 min, peak RSS <= 3 GB; issue 14's ratios: features <= 10x,
point-in-time <= 2x, materialize >= 100k entity rows/s.

With ``--dask-workers W``, the feature build also runs in ``--feature-partitions P`` parts
per entity on a ``dask.distributed`` LocalCluster of W one-thread worker processes (what
the features flow does with ``scale.feature_partitions``), its files are checked row for
row against the single-process build's, and the workers' peak RSS is printed: the
memory one part needs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anchors  # beside this script
from machine_info import machine, machine_line
from rich.console import Console
from rich.table import Table

PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            kids = [int(p) for p in fh.read().split()]
    except FileNotFoundError:
        return []
    return kids + [g for k in kids for g in _children(k)]


class PeakRss:
    """Samples RSS of this process and its children while a stage runs."""

    def __init__(self, every_s: float = 0.02) -> None:
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()

    def _run(self) -> None:
        pid = os.getpid()
        while not self._stop.is_set():
            total = _rss_bytes(pid) + sum(_rss_bytes(c) for c in _children(pid))
            self.peak = max(self.peak, total)
            self._stop.wait(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _peak_rss_kb() -> int:
    """This process's peak RSS since it started (VmHWM; getrusage's maximum survives the
    exec that starts a Dask worker, so it would report the parent's peak)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


@dataclass
class StageResult:
    stage: str
    seconds: float
    rows: int
    rows_per_s: float
    peak_rss_mb: float
    anchor_seconds: float | None = None
    anchor_peak_rss_mb: float | None = None

    @property
    def anchor_ratio(self) -> float | None:
        return self.seconds / self.anchor_seconds if self.anchor_seconds else None


def _clear_redis_project(settings) -> int:
    """Delete the shared profile's Redis hashes of the repo's project (Feast's keys end
    with the project's name): rows left by an earlier run would be skipped as already
    there, and the materialize stage would write nothing."""
    import redis
    import yaml

    from ranking import backends

    project = yaml.safe_load(backends.feast_yaml(settings).read_text())["project"].encode()
    host, port = settings.services.redis_address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    removed = 0
    batch = []
    for key in client.scan_iter(match=b"*" + project, count=10_000):
        batch.append(key)
        if len(batch) == 10_000:
            removed += client.delete(*batch)
            batch = []
    return removed + (client.delete(*batch) if batch else 0)


def run(events: int, days: int, home: Path, seed: int, with_anchors: bool = False,
        profile: str = "embedded", training: bool = True, dask_workers: int = 0,
        feature_partitions: int = 4,
        pit_rows: tuple[int, ...] = ()) -> list[StageResult]:  # fmt: skip
    import numpy as np
    import pandas as pd

    from ranking import home as ranking_home
    from ranking.features import families, store
    from ranking.features import snapshots as features
    from ranking.ingest import synth
    from ranking.ingest.contract import ingest
    from ranking.settings import get_settings
    from ranking.training import dataset
    from ranking.training import rankers as train
    from ranking.warehouse import warehouse

    settings = ranking_home.prepare(get_settings(home=home, profile=profile))
    if profile == "shared":  # a fresh home starts with an empty online store, as embedded
        print(f"removed {_clear_redis_project(settings):,} hashes that earlier runs left in Redis")
    cadence = settings.features.snapshot_every
    end = datetime(2026, 3, 1)  # fixed: the benchmark never reads the clock for data
    results: list[StageResult] = []
    state: dict[str, object] = {}

    def measure(fn: Callable[[], int]) -> tuple[float, int, float]:
        with PeakRss() as rss:
            t0 = time.perf_counter()
            rows = fn()
            seconds = time.perf_counter() - t0
        return seconds, rows, rss.peak / 2**20

    def stage(name: str, fn: Callable[[], int], anchor: Callable[[], int] | None) -> None:
        seconds, rows, peak = measure(fn)
        result = StageResult(name, seconds, rows, rows / seconds if seconds else 0.0, peak)
        if anchor is not None and with_anchors:
            result.anchor_seconds, _, result.anchor_peak_rss_mb = measure(anchor)
        results.append(result)

    def generate() -> int:
        data = synth.generate(synth.SynthConfig(events=events, days=days, end=end, seed=seed))
        state["paths"] = synth.write(data, settings.raw_dir)
        return data.events.num_rows + len(data.dirty)

    def load() -> int:
        paths = state["paths"]
        reports = ingest(settings.warehouse_path, paths["events"], settings.event_types,
                         end + timedelta(hours=12), paths["items"])  # fmt: skip
        return next(r for r in reports if r.target == "events").read

    def compute() -> int:
        build = features.build_feature_tables(settings.warehouse_path, settings.features_dir,
                                              end, cadence,
                                              settings.features.decay_half_life_days)  # fmt: skip
        state["build"] = build
        return sum(build.rows.values())

    def compute_on_dask() -> int:  # the same build in parts on a local Dask cluster
        from distributed import Client, LocalCluster

        from ranking.features import partitions

        parted = settings.updated(home=home / "dask-home")  # the same fitted settings
        parted.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
        parted.warehouse_path.symlink_to(settings.warehouse_path)
        plan = partitions.plan_partitions(feature_partitions)
        cluster = LocalCluster(n_workers=dask_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)  # fmt: skip
        with cluster, Client(cluster) as client:
            first = partitions.first_event(settings.warehouse_path, end)
            futures = client.map(partitions.compute_partition, [parted] * len(plan), plan,
                                 [end] * len(plan), [first] * len(plan), pure=False)  # fmt: skip
            built = partitions.combine_partitions(parted.features_dir, plan, client.gather(futures))
            worker_kb = client.run(_peak_rss_kb)
        state["dask_worker_peak_mb"] = {w: kb / 1024 for w, kb in worker_kb.items()}
        state["dask_differences"] = sum(anchors.rows_differing(
            f.parquet_path(settings.features_dir), f.parquet_path(parted.features_dir),
            list(f.entity_keys), f.feature_names) for f in families.FAMILIES)  # fmt: skip
        return sum(built.rows.values())

    def apply() -> int:
        store.apply_repo(settings)
        # Feast's first use counts here: its imports and the registry's connection (an
        # SQLAlchemy engine on PostgreSQL with the shared profile, 0.25 s), so that the
        # materialize stages time writing.
        state["store"] = store.get_store(settings)
        state["store"].list_feature_views()
        return len(families.FAMILIES)

    def materialize() -> int:
        start, stop = store.materialize_window(state["build"].snapshots, cadence)
        report = store.materialize_latest(state["store"], start.replace(tzinfo=UTC),
                                          stop.replace(tzinfo=UTC))  # fmt: skip
        # Rows pushed online, as the writer counted them (every view's entities).
        state["materialized"] = sum(report.written.values())
        return state["materialized"]

    def materialize_unchanged() -> int:  # a warm run: the same snapshot again
        start, stop = store.materialize_window(state["build"].snapshots, cadence)
        report = store.materialize_latest(state["store"], start.replace(tzinfo=UTC),
                                          stop.replace(tzinfo=UTC))  # fmt: skip
        return sum(report.written.values())

    def materialize_stock() -> int:  # Feast's own path, same rows
        start, stop = store.materialize_window(state["build"].snapshots, cadence)
        with sqlite3.connect(settings.feast_dir / "online_store.db") as con:
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                con.execute(f'DELETE FROM "{table}"')  # digests too: the next run rewrites
        state["store"].materialize(start_date=start.replace(tzinfo=UTC),
                                   end_date=stop.replace(tzinfo=UTC))  # fmt: skip
        return state["materialized"]

    def materialize_anchor() -> int:
        start, stop = store.materialize_window(state["build"].snapshots, cadence)
        files = [f.parquet_path(settings.features_dir) for f in families.FAMILIES]
        return anchors.materialize_anchor(files, start.replace(tzinfo=UTC),
                                          stop.replace(tzinfo=UTC))  # fmt: skip

    def training_groups() -> int:
        first = min(state["build"].snapshots)
        times = dataset.split_times(first, end, settings.training.valid_window,
                                    settings.training.test_window)  # fmt: skip
        state["queries"] = dataset.build_query_frame(settings.warehouse_path, settings, times)
        return len(state["queries"])

    def point_in_time() -> int:
        frame, names = dataset.with_features(state["store"], state["queries"],
                                             store.service_name(settings))  # fmt: skip
        state["frame"], state["names"] = frame, names
        return len(frame)

    def point_in_time_anchor() -> int:  # the same join by hand: one ASOF JOIN per family
        asof = anchors.asof_features(settings.features_dir, state["queries"])
        state["pit_differences"] = anchors.pit_differences(state["frame"], asof)
        return len(asof)

    def fit() -> int:
        frame = state["frame"]
        trained = train.train_ranker(frame[frame["split"] == "train"],
                                     frame[frame["split"] == "valid"], state["names"],
                                     settings)  # fmt: skip
        state["trained"] = trained
        return int((frame["split"] == "train").sum())

    def fit_anchor() -> int:
        frame = state["frame"]
        return anchors.train_anchor(frame[frame["split"] == "train"], state["names"],
                                    state["trained"].model)  # fmt: skip

    def ingest_anchor() -> int:
        return anchors.ingest_anchor(state["paths"]["events"] / "events.parquet")

    def features_anchor() -> int:
        return anchors.features_anchor(settings.warehouse_path, end, cadence.total_seconds())

    def random_entities(n: int) -> pd.DataFrame:  # n queries, as many distinct as can be
        with warehouse(settings.warehouse_path, read_only=True) as con:
            users = con.execute("SELECT DISTINCT user_id FROM events ORDER BY 1").df()
            items = dataset.item_catalogue(con, end)
        snapshots = state["build"].snapshots
        low, high = (pd.Timestamp(t).timestamp() for t in (min(snapshots), max(snapshots)))
        rng = np.random.default_rng(seed)
        pick = rng.integers(0, len(items), n)
        seconds = rng.integers(int(low), int(high), n)
        ts = pd.to_datetime(seconds, unit="s", utc=True).astype("datetime64[us, UTC]")
        return pd.DataFrame({
            "group_id": np.arange(n), "user_id": users["user_id"].to_numpy()[
                rng.integers(0, len(users), n)],
            "item_id": items["item_id"].to_numpy()[pick],
            "category": items["category"].to_numpy()[pick],
            "event_timestamp": ts, "request_timestamp_s": seconds.astype("int64"),
        })  # fmt: skip

    def point_in_time_at(n: int) -> tuple[Callable[[], int], Callable[[], int]]:
        def join() -> int:
            state[f"pit_{n}"] = random_entities(n)  # drawing the rows counts: a few seconds
            frame, _ = dataset.with_features(state["store"], state[f"pit_{n}"],
                                             store.service_name(settings))  # fmt: skip
            state[f"pit_frame_{n}"] = frame
            return len(frame)

        def anchor() -> int:
            asof = anchors.asof_features(settings.features_dir, state[f"pit_{n}"])
            state[f"pit_differences_{n}"] = anchors.pit_differences(state.pop(f"pit_frame_{n}"),
                                                                    asof)  # fmt: skip
            state.pop(f"pit_{n}")
            return len(asof)

        return join, anchor

    embedded = profile == "embedded"  # Feast's own path rewrites SQLite's tables
    for name, fn, anchor in [
        ("generate", generate, None),
        ("ingest", load, ingest_anchor),
        ("features", compute, features_anchor),
        *([(f"features on Dask ({feature_partitions} parts per entity, {dask_workers} "
            f"workers)", compute_on_dask, None)] if dask_workers else []),
        ("feast apply", apply, None),
        ("materialize (entity rows, newest snapshot)", materialize, materialize_anchor),
        ("materialize, unchanged", materialize_unchanged, None),
        *([("materialize, Feast's own path", materialize_stock, None)] if embedded else []),
        *([("training groups (retrieval at each query time)", training_groups, None),
           ("point-in-time features (Feast)", point_in_time, point_in_time_anchor),
           ("train", fit, fit_anchor)] if training else []),
        *[(f"point-in-time, {n:,} random entity rows (Feast)", *point_in_time_at(n))
          for n in pit_rows],
    ]:  # fmt: skip
        stage(name, fn, anchor)
    if dask_workers:
        peaks = ", ".join(f"{mb:,.0f}" for mb in state["dask_worker_peak_mb"].values())
        print(f"Dask workers' peak RSS (MB): {peaks}; rows where the Dask build and the "
              f"single-process build differ: {state['dask_differences']}")  # fmt: skip
    if with_anchors and training:
        print(f"point-in-time values where the ASOF JOIN and Feast differ: "
              f"{state['pit_differences']}")  # fmt: skip
    for n in pit_rows if with_anchors else ():
        print(f"point-in-time values where the ASOF JOIN and Feast differ at {n:,} random "
              f"rows: {state[f'pit_differences_{n}']}")  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=42)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--home", type=Path, help="Home folder (default: a temporary one).")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--anchors", action="store_true",
                        help="Time each stage's hand-written anchor too (anchors.py).")  # fmt: skip
    parser.add_argument("--profile", choices=["embedded", "shared"], default="embedded",
                        help="shared: Feast online on Redis, registry in PostgreSQL "
                        "(RANKING_SERVICES__* ports, infra/services.sh up first).")  # fmt: skip
    parser.add_argument("--dask-workers", type=int, default=0,
                        help="Also build the features in parts on a local Dask cluster "
                        "of this many workers (0: not).")  # fmt: skip
    parser.add_argument("--feature-partitions", type=int, default=4,
                        help="Parts per entity for the Dask feature build.")  # fmt: skip
    parser.add_argument("--pit-rows", type=int, nargs="*", default=[],
                        help="Also join this many random entity rows (user, item, time "
                        "within the snapshots) through Feast, each count its own stage: "
                        "how the point-in-time join grows with rows.")  # fmt: skip
    parser.add_argument("--no-training", action="store_true",
                        help="Stop after materialize (the online store's figures).")  # fmt: skip
    args = parser.parse_args(argv)
    from cli.common import quiet_libraries

    quiet_libraries()
    home = args.home or Path(tempfile.mkdtemp(prefix="ranking-bench-"))
    if home.exists() and any(home.iterdir()):
        parser.error(f"--home {home} is not empty: the benchmark needs a fresh home")
    try:
        t0 = time.perf_counter()
        results = run(args.events, args.days, home, args.seed, args.anchors, args.profile,
                      not args.no_training, args.dask_workers,
                      args.feature_partitions, tuple(args.pit_rows))  # fmt: skip
        total = time.perf_counter() - t0 - sum(r.anchor_seconds or 0.0 for r in results)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    lifetime_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    by_stage = {r.stage: r for r in results}
    ingest_features = by_stage["ingest"].seconds + by_stage["features"].seconds
    peak_mb = max(r.peak_rss_mb for r in results)
    info = machine()

    console = Console(width=130)  # a table as wide as its columns when piped to a file
    table = Table(
        title=f"Pipeline at {args.events:,} events over {args.days} days, profile {args.profile}"
    )
    for col in ("stage", "seconds", "rows", "rows/s", "peak RSS MB", "anchor s", "x anchor"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for r in results:
        table.add_row(r.stage, f"{r.seconds:.1f}", f"{r.rows:,}", f"{r.rows_per_s:,.0f}",
                      f"{r.peak_rss_mb:,.0f}",
                      "" if r.anchor_seconds is None else f"{r.anchor_seconds:.1f}",
                      "" if r.anchor_ratio is None else f"{r.anchor_ratio:.1f}")  # fmt: skip
    table.add_row("total", f"{total:.1f}", "", "", f"{peak_mb:,.0f}")
    console.print(table)
    console.print(f"machine: {machine_line()}")
    checks = {
        "ingest + features <= 30 s": (ingest_features, ingest_features <= 30),
        "whole pipeline <= 180 s": (total, total <= 180),
        "peak RSS <= 3072 MB": (peak_mb, peak_mb <= 3072),
    }
    if args.anchors:
        ratio = {r.stage.split(" (")[0]: r.anchor_ratio for r in results}
        rate = by_stage["materialize (entity rows, newest snapshot)"].rows_per_s
        checks |= {
            "features <= 10x its anchor": (ratio["features"], ratio["features"] <= 10),
            "materialize >= 100k entity rows/s": (rate, rate >= 100_000),
            "materialize, unchanged: 0 rows": (by_stage["materialize, unchanged"].rows,
                                               by_stage["materialize, unchanged"].rows == 0),
        }  # fmt: skip
        if ratio.get("point-in-time features") is not None:
            pit = ratio["point-in-time features"]
            checks["point-in-time <= 2x its anchor"] = (pit, pit <= 2)
    for name, (value, ok) in checks.items():
        console.print(f"{'PASS' if ok else 'MISS'}  {name}: {value:,.1f}")
    console.print(f"process lifetime max RSS (getrusage): {lifetime_peak_mb:,.0f} MB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "events": args.events, "days": args.days, "profile": args.profile, "machine": info,
            "stages": [asdict(r) | {"anchor_ratio": r.anchor_ratio} for r in results],
            "total_seconds": total,
            "ingest_plus_features_seconds": ingest_features, "peak_rss_mb": peak_mb,
            "targets_met": {k: ok for k, (_, ok) in checks.items()},
        }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
