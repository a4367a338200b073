"""The team way to schedule, as the README shows it, against real services on 127.0.0.1:
``prefect server start``, ``prefect work-pool create ranking --type process``,
``prefect deploy --all`` (``prefect.yaml``), ``prefect worker start --pool ranking``; one
deployment run on a small home reaches COMPLETED, with the home taken from the worker's
``RANKING_HOME``. ``make test-services``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from flows import deployments as served
from ranking.ingest import synth
from ranking.settings import PROJECT_ROOT
from tests.conftest import END

pytestmark = [pytest.mark.services, pytest.mark.timeout(480)]

BIN = Path(sys.executable).parent
#: How long the server may take to answer on a loaded 2-core machine (~12 s measured).
STARTUP_SECONDS = 120
#: How long one features run may take, from `prefect deployment run` (~15 s measured).
RUN_SECONDS = 240
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):  # refused, reset, HTTP error, not JSON yet
        return None


def _post_json(url: str, body: dict) -> list | dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


class Services:
    """Long-running commands in their own process groups, stopped in reverse order."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], cwd: Path) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "w") as out:
            process = subprocess.Popen(
                argv,
                env=self.env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(process)
        return process

    def log(self, name: str) -> str:
        return _tail(self.logs / f"{name}.log")

    def stop_all(self) -> None:
        for process in reversed(self.started):
            _stop_group(process)


def _stop_group(process: subprocess.Popen, grace: float = 20) -> None:
    """Ctrl-C to the process group; SIGKILL to whatever is left of it after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):  # a stuck leader, children it left
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def run_features_deployment(api: str, env: dict[str, str], services: Services,
                            cwd: Path) -> tuple[dict, float]:  # fmt: skip
    """Start a process worker on the ``ranking`` pool, trigger the features deployment and
    wait for the run's final state: the run as the API shows it, and the seconds from the
    trigger."""
    services.start("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "ranking"],
                   cwd)  # fmt: skip
    started = time.monotonic()
    out = _run([str(BIN / "prefect"), "deployment", "run", "build-features/features-hourly"],
               env, cwd)  # fmt: skip
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
    flow_run: dict = {"id": run_id}
    state = None
    while state not in FINAL_STATES:
        assert time.monotonic() - started < RUN_SECONDS, (
            f"flow run {run_id} still {state} after {RUN_SECONDS} s:\n{services.log('worker')}"
        )
        time.sleep(1)
        flow_run = _get_json(f"{api}/flow_runs/{run_id}") or flow_run
        state = (flow_run.get("state") or {}).get("type")
    return flow_run, time.monotonic() - started


def test_a_worker_runs_the_deployments_of_prefect_yaml(tmp_path: Path) -> None:
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect"),  # a throwaway server database
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "RANKING_HOME": str(home),
        "PWD": str(PROJECT_ROOT),  # what a shell sets in the checkout: prefect.yaml's {{ $PWD }}
    }
    services = Services(env, tmp_path)
    timings: dict[str, float] = {}
    try:
        started = time.monotonic()
        server = services.start("server", [str(BIN / "prefect"), "server", "start",
                                           "--host", "127.0.0.1", "--port", str(port)],
                                tmp_path)  # fmt: skip
        while _get_json(f"{api}/health") is not True:
            assert server.poll() is None, f"the server exited:\n{services.log('server')}"
            assert time.monotonic() - started < STARTUP_SECONDS, services.log("server")
            time.sleep(0.5)
        timings["server ready"] = time.monotonic() - started

        # A small historic log, loaded through the ingest flow (on this server).
        data = synth.generate(synth.SynthConfig(events=20_000, days=21, end=END, seed=11))
        raw = synth.write(data, tmp_path / "raw")
        _run([str(BIN / "ranking"), "ingest", str(raw["events"]), "--items", str(raw["items"])],
             env, tmp_path)  # fmt: skip

        started = time.monotonic()
        _run([str(BIN / "prefect"), "work-pool", "create", "ranking", "--type", "process"],
             env, PROJECT_ROOT)  # fmt: skip
        _run([str(BIN / "prefect"), "deploy", "--all"], env, PROJECT_ROOT)
        timings["pool and deploy"] = time.monotonic() - started

        found = _post_json(f"{api}/deployments/filter", {})
        assert sorted((d["name"], d["schedules"][0]["schedule"]["cron"]) for d in found) == sorted(
            (d.name, d.schedules[0].schedule.cron) for d in served.deployments()
        )
        # No cron run may start beside the one this test triggers (at :00 or :30).
        _run([str(BIN / "prefect"), "deployment", "schedule", "pause", "--all"], env, tmp_path)

        # The worker runs elsewhere: the pull step brings its runs back to the checkout.
        flow_run, timings["run completed"] = run_features_deployment(api, env, services, tmp_path)
        state = flow_run["state"]["type"]
        timings["of which the flow ran"] = flow_run["total_run_time"]
        assert state == "COMPLETED", services.log("worker")
    finally:
        services.stop_all()

    assert flow_run["parameters"] == {}  # the home came from the worker's environment
    assert list((home / "features").glob("*.parquet"))
    assert (home / "feast" / "registry.db").exists()
    assert (home / "retrieval" / "CURRENT").exists()
    print("services: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
