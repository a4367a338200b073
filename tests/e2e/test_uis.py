"""Every documented UI starts: the commands ``ranking ui`` prints are run as they are (on
free ports of 127.0.0.1) on a home with a Feast registry and an MLflow experiment, and
each serves its first page and this home's data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cli.loop import UI_PORTS, UiCommand, ui_commands
from ranking.features import store
from ranking.home import ensure_dirs
from ranking.settings import Settings, get_settings
from ranking.training import tracking

pytestmark = [pytest.mark.e2e, pytest.mark.services]

#: How long a UI may take to answer on a loaded 2-core machine (Prefect's server: ~11 s).
STARTUP_SECONDS = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _serving(command: UiCommand, paths: list[str], log: Path) -> dict[str, str]:
    """Start ``command``, wait for its page, fetch ``paths`` from it, stop it."""
    env = os.environ | command.env
    with open(log, "w") as out:
        server = subprocess.Popen(command.argv, env=env, cwd=command.cwd, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert server.poll() is None, f"{command.argv[0]} exited: {log.read_text()[-2000:]}"
            try:
                status, _ = _get(command.url)
            except OSError:
                status = 0
            if status == 200:
                break
            assert time.monotonic() < deadline, f"no page after {STARTUP_SECONDS} s"
            time.sleep(0.5)
        return {path: _get(command.url.rstrip("/") + path)[1] for path in paths}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home whose Feast registry is applied and whose MLflow store has its experiment."""
    settings = get_settings(home=tmp_path_factory.mktemp("ui-home"))
    ensure_dirs(settings)
    store.apply_repo(settings)
    tracking.client_for(settings)
    return settings


def _command(settings: Settings, name: str) -> UiCommand:
    return ui_commands(settings, {name: _free_port()})[name]


def test_the_feast_ui_serves_this_homes_registry(home: Settings, tmp_path: Path) -> None:
    pages = _serving(_command(home, "Feast"), ["/", "/api/v1/projects"], tmp_path / "feast.log")
    assert pages["/"].lower().startswith("<!doctype html>")
    assert '"name":"ranking"' in pages["/api/v1/projects"].replace(" ", "")


def test_the_mlflow_ui_serves_this_homes_experiment(home: Settings, tmp_path: Path) -> None:
    search = "/ajax-api/2.0/mlflow/experiments/search?max_results=10"
    pages = _serving(_command(home, "MLflow"), ["/", search], tmp_path / "mlflow.log")
    assert "<html" in pages["/"].lower()
    assert f'"{home.publishing.experiment_name}"' in pages[search]


def test_the_prefect_ui_and_api_answer(home: Settings, tmp_path: Path) -> None:
    pages = _serving(_command(home, "Prefect"), ["/", "/api/health"], tmp_path / "prefect.log")
    assert "<html" in pages["/"].lower()
    assert pages["/api/health"].strip() == "true"


def test_ranking_ui_prints_the_commands_these_tests_run(home: Settings) -> None:
    printed = {name: command.shell() for name, command in ui_commands(home).items()}
    assert set(printed) == set(UI_PORTS)
    assert f"--port {UI_PORTS['Feast']}" in printed["Feast"]
    assert f"RANKING_HOME={home.home}" in printed["Feast"]
