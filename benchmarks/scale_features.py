"""The feature build at a size one process should not hold: N generated events, built in
parts on a local Dask cluster, with each part's time and peak memory.

    python benchmarks/scale_features.py --events 100000000 [--chunk 10000000] \
        [--partitions 80] [--dask-workers 2] [--json out.json] [--home DIR]

The generator holds its events in memory (10M events: 3.9 GB), so the data is made in
chunks of ``--chunk`` events, each with its own seed, users, sessions and event ids
(``c<k>-`` before each; the catalogue is the first chunk's), and each chunk is ingested
before the next is made. The build is :mod:`ranking.features.partitions` as the features flow runs
it with ``scale.feature_partitions``: ``--partitions`` parts per entity, each computed by
DuckDB on a worker (one thread each), then combined. Each part reports its seconds and
its worker's peak RSS while it ran (VmHWM, reset before each part); the process tree's
peak is sampled as in ``pipeline.py``. Identity with the single-process build is tested
(``tests/code/features/test_partitions.py``) and checked by ``pipeline.py`` at 10M; it
is not repeated here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from machine_info import machine, machine_line  # beside this script
from pipeline import PeakRss

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

END = datetime(2026, 3, 1)  # fixed: the benchmark never reads the clock for data


def timed_part(settings, part, as_of: datetime, first_event) -> dict:
    """One part on the worker that runs it: rows, seconds and the worker's peak RSS
    while it ran (the high-water mark is reset first: Linux's clear_refs 5)."""
    from ranking.features.partitions import compute_partition

    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    t0 = time.perf_counter()
    build = compute_partition(settings, part, as_of, first_event)
    seconds = time.perf_counter() - t0
    with open("/proc/self/status") as fh:
        peak_kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    return {"entity": part.entity, "index": part.index, "rows": sum(build.rows.values()),
            "seconds": seconds, "peak_rss_mb": peak_kb / 1024, "build": build}  # fmt: skip


def generate_and_load(settings, events: int, chunk: int, days: int) -> tuple[int, float, float]:
    """Make and ingest the events chunk by chunk; (events loaded, seconds generating,
    seconds ingesting)."""
    from ranking.ingest import synth
    from ranking.ingest.contract import ingest

    loaded, gen_s, load_s = 0, 0.0, 0.0
    for k, start in enumerate(range(0, events, chunk)):
        t0 = time.perf_counter()
        size = min(chunk, events - start)
        data = synth.generate(synth.SynthConfig(events=size, days=days, end=END, seed=7 + k,
                                                dirty_rows=0))  # fmt: skip
        table = data.events
        for column in ("user_id", "event_id", "session_id"):  # this chunk's own ids
            if column in table.column_names:
                own = pc.binary_join_element_wise(f"c{k}-", table[column].cast(pa.string()), "")
                table = table.set_column(table.schema.get_field_index(column), column, own)
        path = settings.raw_dir / f"events-{k:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, row_group_size=1_000_000)
        items = None
        if k == 0:
            items = synth.write(data, settings.raw_dir / "first")["items"]
        del data, table
        gen_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        reports = ingest(settings.warehouse_path, path, settings.event_types,
                         END + timedelta(hours=12), items)  # fmt: skip
        load_s += time.perf_counter() - t0
        loaded += next(r for r in reports if r.target == "events").accepted
        path.unlink()  # the warehouse holds it now
        print(f"chunk {k}: {loaded:,} events loaded ({gen_s:.0f} s generating, "
              f"{load_s:.0f} s ingesting)", flush=True)  # fmt: skip
    return loaded, gen_s, load_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000_000)
    parser.add_argument("--chunk", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=42)
    parser.add_argument("--partitions", type=int, default=80, help="Parts per entity.")
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument("--home", type=Path, help="Home folder (default: a temporary one).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from distributed import Client, LocalCluster, as_completed

    from cli.common import quiet_libraries
    from ranking import home as ranking_home
    from ranking.features import partitions
    from ranking.settings import get_settings

    quiet_libraries()
    home = args.home or Path(tempfile.mkdtemp(prefix="ranking-scale-"))
    settings = ranking_home.prepare(get_settings(home=home))
    try:
        t_all = time.perf_counter()
        with PeakRss() as load_rss:
            loaded, gen_s, load_s = generate_and_load(settings, args.events, args.chunk,
                                                      args.days)  # fmt: skip
        plan = partitions.plan_partitions(args.partitions)
        parts = []
        with PeakRss() as build_rss:
            t0 = time.perf_counter()
            cluster = LocalCluster(n_workers=args.dask_workers, threads_per_worker=1,
                                   processes=True, dashboard_address=None)  # fmt: skip
            with cluster, Client(cluster) as client:
                first = partitions.first_event(settings.warehouse_path, END)
                n = len(plan)
                futures = client.map(timed_part, [settings] * n, plan, [END] * n, [first] * n,
                                     pure=False)  # fmt: skip
                for done, future in enumerate(as_completed(futures), 1):
                    parts.append(future.result())
                    if done % max(1, len(plan) // 10) == 0:
                        print(f"{done}/{len(plan)} parts, {time.perf_counter() - t0:.0f} s",
                              flush=True)  # fmt: skip
            parts_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            order = {(p.entity, p.index): i for i, p in enumerate(plan)}
            parts.sort(key=lambda r: order[(r["entity"], r["index"])])
            built = partitions.combine_partitions(settings.features_dir, plan,
                                                  [r["build"] for r in parts])  # fmt: skip
            combine_s = time.perf_counter() - t0
        total_s = time.perf_counter() - t_all
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    by_entity = {}
    for r in parts:
        e = by_entity.setdefault(r["entity"], {"parts": 0, "rows": 0, "max_seconds": 0.0,
                                               "max_peak_rss_mb": 0.0, "seconds": 0.0})  # fmt: skip
        e["parts"] += 1
        e["rows"] += r["rows"]
        e["seconds"] += r["seconds"]
        e["max_seconds"] = max(e["max_seconds"], r["seconds"])
        e["max_peak_rss_mb"] = max(e["max_peak_rss_mb"], r["peak_rss_mb"])
    print(f"{loaded:,} events: generated in {gen_s:.0f} s, ingested in {load_s:.0f} s "
          f"(peak RSS {load_rss.peak / 2**20:,.0f} MB)")  # fmt: skip
    print(f"feature build: {len(plan)} parts on {args.dask_workers} workers in {parts_s:.0f} s, "
          f"combined in {combine_s:.0f} s; {sum(built.rows.values()):,} feature rows; process "
          f"tree peak RSS {build_rss.peak / 2**20:,.0f} MB")  # fmt: skip
    for entity, e in by_entity.items():
        print(f"  {entity}: {e['parts']} parts, {e['rows']:,} rows, part seconds total "
              f"{e['seconds']:.0f} (longest {e['max_seconds']:.1f}), largest part peak RSS "
              f"{e['max_peak_rss_mb']:,.0f} MB")  # fmt: skip
    print(f"total {total_s:.0f} s; machine: {machine_line()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "events": loaded, "partitions_per_entity": args.partitions,
            "dask_workers": args.dask_workers, "machine": machine(),
            "seconds": {"generate": gen_s, "ingest": load_s, "parts": parts_s,
                        "combine": combine_s, "total": total_s},
            "peak_rss_mb": {"load": load_rss.peak / 2**20, "build": build_rss.peak / 2**20},
            "feature_rows": built.rows, "by_entity": by_entity,
            "parts": [{k: v for k, v in r.items() if k != "build"} for r in parts],
        }, indent=2, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
