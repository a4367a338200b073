"""What retrieval adds to one ranking call, in process: the published lookup that serving
uses, against retrieving live from the warehouse.

    python benchmarks/retrieval_latency.py --events 300000 [--users 500] [--json out.json]

On a fresh home of N generated events (or ``--warehouse`` an existing home's warehouse,
read only): publish retrieval at the newest whole hour (what the features flow does, timed
with its peak RSS), load the publication (timed), then time ``candidates_for`` for
``--users`` users drawn with a fixed seed (plus users never seen), and live retrieval for
a smaller sample. Latencies are wall-clock per call after one warm-up call each, on this
machine, printed with it. Target (issue 11): the lookup adds at most 5 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from machine_info import machine, machine_line  # beside this script
from pipeline import PeakRss  # beside this script
from rich.console import Console
from rich.table import Table


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1e3
    return {"calls": len(ms), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max())}  # fmt: skip


def timed(fn, args_list: list) -> list[float]:
    fn(*args_list[0])  # warm-up
    out = []
    for args in args_list:
        t0 = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=42)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--users", type=int, default=500, help="Users timed on the lookup.")
    parser.add_argument("--live-users", type=int, default=30, help="Users timed live.")
    parser.add_argument("--warehouse", type=Path, help="An existing warehouse (read only).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from cli.common import quiet_libraries

    quiet_libraries()
    from ranking import home as ranking_home
    from ranking.ingest import synth
    from ranking.ingest.contract import ingest
    from ranking.retrieval.published import load_published, publish_candidates
    from ranking.serving.candidates import candidates_for, retrieved_for_user
    from ranking.settings import get_settings
    from ranking.warehouse import warehouse

    home = Path(tempfile.mkdtemp(prefix="ranking-bench-"))
    try:
        settings = ranking_home.prepare(get_settings(home=home))
        source = args.warehouse
        if source is None:
            end = datetime(2026, 3, 1)
            data = synth.generate(synth.SynthConfig(events=args.events, days=args.days,
                                                    end=end, seed=args.seed))  # fmt: skip
            paths = synth.write(data, settings.raw_dir)
            ingest(settings.warehouse_path, paths["events"], settings.event_types,
                   end + timedelta(hours=12), paths["items"])  # fmt: skip
        else:
            shutil.copy(source, settings.warehouse_path)
        with warehouse(settings.warehouse_path, read_only=True) as con:
            newest = con.execute("SELECT max(event_timestamp), count(*) FROM events").fetchall()
            at = newest[0][0].replace(minute=0, second=0, microsecond=0)
            events = newest[0][1]
            users = [u for (u,) in con.execute(
                "SELECT DISTINCT user_id FROM events WHERE event_timestamp < ? ORDER BY 1",
                [at]).fetchall()]  # fmt: skip
            with PeakRss() as rss:
                t0 = time.perf_counter()
                publication = publish_candidates(con, settings, at)
                publish_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_published(settings, at)
        load_s = time.perf_counter() - t0
        rng = random.Random(args.seed)
        sample = rng.sample(users, min(args.users, len(users)))
        sample += [f"never-seen-{i}" for i in range(max(len(sample) // 20, 1))]
        request = at + timedelta(minutes=30)
        lookup = timed(candidates_for, [(settings, u, request) for u in sample])
        with warehouse(settings.warehouse_path, read_only=True) as con:
            pool = settings.serving.candidate_pool
            calls = [(con, settings, u, request, pool) for u in sample[: args.live_users]]
            live = timed(retrieved_for_user, calls)
    finally:
        shutil.rmtree(home, ignore_errors=True)

    results = {"published lookup (candidates_for)": percentiles(lookup),
               "live retrieval (warehouse)": percentiles(live)}  # fmt: skip
    console = Console()
    console.print(f"{events:,} events, {len(users):,} users; published {publication.rows:,} "
                  f"candidates in {publish_s:.1f} s (peak RSS {rss.peak / 2**20:,.0f} MB), "
                  f"loaded in {load_s * 1e3:.0f} ms")  # fmt: skip
    table = Table(title="Retrieval for one user, in process")
    for col in ("path", "calls", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for name, r in results.items():
        table.add_row(name, str(r["calls"]), f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}",
                      f"{r['p99_ms']:.2f}", f"{r['max_ms']:.2f}")  # fmt: skip
    console.print(table)
    console.print(f"machine: {machine_line()}")
    p95 = results["published lookup (candidates_for)"]["p95_ms"]
    console.print(f"{'PASS' if p95 <= 5 else 'MISS'}  lookup p95 <= 5 ms: {p95:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "events": events, "users": len(users), "publish_seconds": publish_s,
            "publish_peak_rss_mb": rss.peak / 2**20, "published_rows": publication.rows,
            "load_seconds": load_s, "results": results, "machine": machine(),
        }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
