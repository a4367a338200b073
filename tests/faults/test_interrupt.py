"""SIGTERM and SIGINT to a running ``ranking features``: it stops within seconds with one
line and the shell's exit code (143, 130), takes its children (Prefect's temporary
server, ``feast apply``) with it, leaves no temporary file, and a rerun completes.

Run by ``make test-faults`` (marker ``faults``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from ranking.home import ensure_dirs
from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.settings import Settings, get_settings
from tests.conftest import END, NOW

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parents[2]
#: How long a command may take to stop once signalled.
STOP_WITHIN_S = 20
#: Names that only exist while something is written aside (then renamed or removed).
TEMPORARY = (".tmp", ".staging", ".writing")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home with about 200k events loaded: `ranking features` works for several seconds."""
    settings = get_settings(home=tmp_path_factory.mktemp("interrupted-home"))
    ensure_dirs(settings)
    data = synth.generate(synth.SynthConfig(events=200_000, days=28, end=END, seed=3))
    paths = synth.write(data, settings.raw_dir)
    ingest(settings.warehouse_path, paths["events"], settings.event_types, NOW, paths["items"])
    return settings


def _env() -> dict[str, str]:
    """No Prefect API: the command starts its own temporary server (a child to stop)."""
    env = os.environ | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    for name in ("PREFECT_API_URL", "PREFECT_HOME"):
        env.pop(name, None)
    return env


def _features(settings: Settings, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", "from cli import main; main()", "features",
               "--as-of", END.isoformat(), "--force", "--home", str(settings.home)]  # fmt: skip
    with open(log, "w") as out:
        return subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=out,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip


def _wait_for(process: subprocess.Popen, log: Path, text: str, timeout_s: float = 240) -> None:
    start = time.monotonic()
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() - start < timeout_s, log.read_text()[-3000:]
        time.sleep(0.1)


def _temporary_files(settings: Settings) -> list[str]:
    return [str(p) for p in settings.home.rglob("*") if any(t in p.name for t in TEMPORARY)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_features_stops_cleanly_on_a_signal_and_a_rerun_completes(
    home: Settings, tmp_path: Path, signum: signal.Signals
) -> None:
    log = tmp_path / "interrupted.log"
    process = _features(home, log)
    try:
        _wait_for(process, log, "Beginning flow run")  # the server is up, the flow working
        time.sleep(1.0)
        children = psutil.Process(process.pid).children(recursive=True)
        assert any("uvicorn" in " ".join(c.cmdline()) for c in children)  # Prefect's server
        signalled = time.monotonic()
        process.send_signal(signum)
        code = process.wait(timeout=STOP_WITHIN_S + 30)
        stopped_s = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text()
    assert code == 128 + signum, output[-3000:]
    assert stopped_s < STOP_WITHIN_S, output[-3000:]
    assert f"interrupted by {signum.name}: ranking features" in output, output[-3000:]
    assert "rerun to continue" in output and "Traceback" not in output, output[-3000:]
    _, alive = psutil.wait_procs(children, timeout=2)
    for child in alive:
        child.kill()
    assert alive == [], [" ".join(c.cmdline()) for c in alive]
    assert _temporary_files(home) == []

    rerun_log = tmp_path / "rerun.log"
    rerun = _features(home, rerun_log)
    assert rerun.wait(timeout=600) == 0, rerun_log.read_text()[-3000:]
    assert "user_long_term:" in rerun_log.read_text()
    assert _temporary_files(home) == []
    for parquet in home.features_dir.glob("*.parquet"):
        assert pq.read_metadata(parquet).num_rows > 0  # whole files, readable
