"""Time and peak memory of each stage of the loop at N generated events.

    python benchmarks/pipeline.py --events 1000000 [--json out.json] [--home DIR]
        [--profile shared]   # Redis, PostgreSQL: infra/services.sh up first
        [--no-training]      # stop after materialize (the online store's figures)

Stages run through the library (the same functions the Prefect flows call) in one
process, on a fresh home folder, so each figure is the stage's own cost without the
orchestrator's. Peak RSS is sampled every 20 ms from /proc for this process plus its
children (``feast apply`` runs as a child), and the process-lifetime maximum from
getrusage is printed beside it. Targets from issue 2 at 1M events on 2 cores: ingest +
features <= 30 s, whole pipeline <= 3 min, peak RSS <= 3 GB.
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

from machine_info import machine, machine_line  # beside this script
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


@dataclass
class StageResult:
    stage: str
    seconds: float
    rows: int
    rows_per_s: float
    peak_rss_mb: float


def asof_features(features_dir: Path, queries) -> object:
    """Every family's features for each query row, the latest snapshot at or before the
    row's time within the family's ttl: what Feast's point-in-time join returns, as one
    DuckDB ASOF JOIN per family (the anchor Feast's retrieval is judged by)."""
    import duckdb

    from ranking.features import families

    con = duckdb.connect()
    keys = sorted({k for f in families.FAMILIES for k in f.entity_keys})
    con.register("queries_df", queries[["group_id", *keys, "event_timestamp"]])
    con.execute("CREATE TABLE q AS SELECT row_number() OVER () AS row_id, * FROM queries_df")
    selects, joins = [], []
    for n, family in enumerate(families.FAMILIES):
        on = " AND ".join(f"q.{k} = f{n}.{k}" for k in family.entity_keys)
        ttl = f"INTERVAL {int(family.ttl.total_seconds())} SECOND"
        joins.append(f"ASOF LEFT JOIN read_parquet('{family.parquet_path(features_dir)}') f{n} "
                     f"ON {on} AND q.event_timestamp >= f{n}.event_timestamp")  # fmt: skip
        selects += [f"CASE WHEN f{n}.event_timestamp >= q.event_timestamp - {ttl} "
                    f"THEN f{n}.{c} END AS {c}" for c in family.feature_names]  # fmt: skip
    sql = (f"SELECT q.group_id, q.item_id, {', '.join(selects)} FROM q {' '.join(joins)} "
           "ORDER BY q.row_id")  # fmt: skip
    return con.execute(sql).df()


def run(events: int, days: int, home: Path, seed: int, profile: str = "embedded",
        training: bool = True) -> list[StageResult]:  # fmt: skip
    import duckdb

    from ranking import home as ranking_home
    from ranking.features import families, store
    from ranking.features import snapshots as features
    from ranking.ingest import synth
    from ranking.ingest.contract import ingest
    from ranking.settings import get_settings
    from ranking.training import dataset
    from ranking.training import rankers as train

    settings = ranking_home.prepare(get_settings(home=home, profile=profile))
    cadence = settings.features.snapshot_every
    end = datetime(2026, 3, 1)  # fixed: the benchmark never reads the clock for data
    results: list[StageResult] = []
    state: dict[str, object] = {}

    def stage(name: str, fn: Callable[[], int]) -> None:
        with PeakRss() as rss:
            t0 = time.perf_counter()
            rows = fn()
            seconds = time.perf_counter() - t0
        results.append(StageResult(name, seconds, rows, rows / seconds if seconds else 0.0,
                                   rss.peak / 2**20))  # fmt: skip

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

    def apply() -> int:
        store.apply_repo(settings)
        state["store"] = store.get_store(settings)  # Feast's first use (imports) counts here
        return len(families.FAMILIES)

    def materialize() -> int:
        start, stop = store.materialize_window(state["build"].snapshots, cadence)
        store.materialize_latest(state["store"], start.replace(tzinfo=UTC),
                                 stop.replace(tzinfo=UTC))  # fmt: skip
        # Rows pushed online: every family's rows in the materialized window.
        files = [str(f.parquet_path(settings.features_dir)) for f in families.FAMILIES]
        state["materialized"] = int(duckdb.sql(
            "SELECT count(*) FROM read_parquet($files) WHERE event_timestamp >= $start "
            "AND event_timestamp < $stop",
            params={"files": files, "start": start.replace(tzinfo=UTC),
                    "stop": stop.replace(tzinfo=UTC)},
        ).fetchall()[0][0])  # fmt: skip
        return state["materialized"]

    def materialize_unchanged() -> int:  # a warm run: the same snapshot again
        start, stop = store.materialize_window(state["build"].snapshots, cadence)
        report = store.materialize_latest(state["store"], start.replace(tzinfo=UTC),
                                          stop.replace(tzinfo=UTC))  # fmt: skip
        return sum(report.written.values())

    def materialize_stock() -> int:  # the anchor: Feast's own path, same rows
        start, stop = store.materialize_window(state["build"].snapshots, cadence)
        with sqlite3.connect(settings.feast_dir / "online_store.db") as con:
            for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                con.execute(f'DELETE FROM "{table}"')  # digests too: the next run rewrites
        state["store"].materialize(start_date=start.replace(tzinfo=UTC),
                                   end_date=stop.replace(tzinfo=UTC))  # fmt: skip
        return state["materialized"]

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
        state["asof"] = asof_features(settings.features_dir, state["queries"])
        return len(state["asof"])

    def fit() -> int:
        frame = state["frame"]
        trained = train.train_ranker(frame[frame["split"] == "train"],
                                     frame[frame["split"] == "valid"], state["names"],
                                     settings)  # fmt: skip
        state["trained"] = trained
        return int((frame["split"] == "train").sum())

    # The anchor rewrites SQLite's tables; on Redis, "materialize" is Feast's own path.
    anchor = [("materialize, Feast's own (anchor)", materialize_stock)]
    for name, fn in [("generate", generate), ("ingest", load), ("features", compute),
                     ("feast apply", apply), ("materialize", materialize),
                     ("materialize, unchanged", materialize_unchanged),
                     *(anchor if profile == "embedded" else []),
                     *([("training groups (retrieval at each query time)", training_groups),
                        ("point-in-time features (Feast)", point_in_time),
                        ("point-in-time, DuckDB ASOF JOIN (anchor)", point_in_time_anchor),
                        ("train", fit)] if training else [])]:  # fmt: skip
        stage(name, fn)
    if training:
        print(f"point-in-time values where the ASOF JOIN and Feast differ: "
              f"{pit_differences(state['frame'], state['asof'])}")  # fmt: skip
    return results


def pit_differences(feast_frame, asof_frame) -> str:
    """How many feature values of the anchor differ from Feast's (float32, NaN = NaN)."""
    import numpy as np

    keys = ["group_id", "item_id"]
    a = feast_frame.sort_values(keys, ignore_index=True)
    b = asof_frame.sort_values(keys, ignore_index=True)
    columns = [c for c in b.columns if c not in keys]
    x = a[columns].to_numpy(dtype=np.float32)
    y = b[columns].to_numpy(dtype=np.float32)
    differ = ~((x == y) | (np.isnan(x) & np.isnan(y)))
    return f"{int(differ.sum()):,} of {differ.size:,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=42)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--home", type=Path, help="Home folder (default: a temporary one).")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--profile", choices=["embedded", "shared"], default="embedded",
                        help="shared: Feast online on Redis, registry in PostgreSQL "
                        "(RANKING_SERVICES__* ports, infra/services.sh up first).")  # fmt: skip
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
        results = run(args.events, args.days, home, args.seed, args.profile,
                      not args.no_training)  # fmt: skip
        total = time.perf_counter() - t0
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    lifetime_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    by_stage = {r.stage: r for r in results}
    ingest_features = by_stage["ingest"].seconds + by_stage["features"].seconds
    peak_mb = max(r.peak_rss_mb for r in results)
    info = machine()

    console = Console()
    table = Table(
        title=f"Pipeline at {args.events:,} events over {args.days} days, profile {args.profile}"
    )
    for col in ("stage", "seconds", "rows", "rows/s", "peak RSS MB"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for r in results:
        table.add_row(r.stage, f"{r.seconds:.1f}", f"{r.rows:,}", f"{r.rows_per_s:,.0f}",
                      f"{r.peak_rss_mb:,.0f}")  # fmt: skip
    table.add_row("total", f"{total:.1f}", "", "", f"{peak_mb:,.0f}")
    console.print(table)
    console.print(f"machine: {machine_line()}")
    checks = {
        "ingest + features <= 30 s": (ingest_features, ingest_features <= 30),
        "whole pipeline <= 180 s": (total, total <= 180),
        "peak RSS <= 3072 MB": (peak_mb, peak_mb <= 3072),
    }
    for name, (value, ok) in checks.items():
        console.print(f"{'PASS' if ok else 'MISS'}  {name}: {value:,.1f}")
    console.print(f"process lifetime max RSS (getrusage): {lifetime_peak_mb:,.0f} MB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "events": args.events, "days": args.days, "profile": args.profile, "machine": info,
            "stages": [asdict(r) for r in results], "total_seconds": total,
            "ingest_plus_features_seconds": ingest_features, "peak_rss_mb": peak_mb,
            "targets_met": {k: ok for k, (_, ok) in checks.items()},
        }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
