"""The team's schedule on the shared services: ``prefect.yaml``'s deployments on the
Prefect server whose database is PostgreSQL, a process worker polling it, and one
deployment run that reaches COMPLETED with the platform on the shared profile (Feast
online on Redis, registry in PostgreSQL); the run is a row of Prefect's PostgreSQL."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ranking.ingest import synth
from ranking.services import FEAST_REGISTRY_DB, PREFECT_DB
from ranking.settings import PROJECT_ROOT
from tests.conftest import END
from tests.services.test_worker import Services as Processes
from tests.services.test_worker import _run, run_features_deployment
from tests.shared.conftest import Services

pytestmark = [pytest.mark.shared, pytest.mark.timeout(600)]

BIN = Path(sys.executable).parent


def test_a_worker_on_the_shared_server_runs_a_deployment(services: Services,
                                                         tmp_path: Path) -> None:  # fmt: skip
    api = services.config.prefect_api_url
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= services.env | {
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "RANKING_HOME": str(home),
        "PWD": str(PROJECT_ROOT),  # what a shell sets in the checkout: prefect.yaml's {{ $PWD }}
    }
    data = synth.generate(synth.SynthConfig(events=8_000, days=14, end=END, seed=5))
    raw = synth.write(data, tmp_path / "raw")
    _run([str(BIN / "ranking"), "ingest", str(raw["events"]), "--items", str(raw["items"])],
         env, tmp_path)  # fmt: skip
    processes = Processes(env, tmp_path)
    try:
        _run([str(BIN / "prefect"), "work-pool", "create", "ranking", "--type", "process",
              "--overwrite"], env, PROJECT_ROOT)  # fmt: skip
        _run([str(BIN / "prefect"), "deploy", "--all"], env, PROJECT_ROOT)
        _run([str(BIN / "prefect"), "deployment", "schedule", "pause", "--all"], env, tmp_path)
        flow_run, seconds = run_features_deployment(api, env, processes, tmp_path)
        run_id, state = flow_run["id"], flow_run["state"]["type"]
        print(f"\nworker run on the shared server: {seconds:.1f} s")
        assert state == "COMPLETED", processes.log("worker")
    finally:
        processes.stop_all()
    rows = services.query(PREFECT_DB, "SELECT state_type FROM flow_run WHERE id = %s", run_id)
    assert [str(r[0]).split(".")[-1] for r in rows] == ["COMPLETED"]
    assert list((home / "features").glob("*.parquet"))
    assert not (home / "feast" / "registry.db").exists()  # the registry is PostgreSQL's
    views = services.query(FEAST_REGISTRY_DB, "SELECT feature_view_name FROM feature_views")
    assert {"user_long_term", "item_stats"} <= {v for (v,) in views}
