"""infra/services.sh: one line per service, and `up` on running services changes nothing."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psycopg
import pytest
import redis

from ranking.services import FEAST_REGISTRY_DB, MLFLOW_DB, PREFECT_DB
from tests.shared.conftest import SCRIPT, Services

pytestmark = pytest.mark.shared


def test_up_started_each_service_on_its_port_with_the_platforms_databases(
    services: Services,
) -> None:
    config = services.config
    assert [line.split(":")[0] for line in services.up_lines] == ["redis", "postgres", "prefect"]
    assert redis.Redis(host=config.host, port=config.redis_port).ping()
    with psycopg.connect(host=config.host, port=config.postgres_port, user=config.postgres_user,
                         dbname="postgres") as con:  # fmt: skip
        names = {n for (n,) in con.execute("SELECT datname FROM pg_database").fetchall()}
    assert {FEAST_REGISTRY_DB, MLFLOW_DB, PREFECT_DB} <= names
    status = services.script("status")
    assert status.returncode == 0
    assert status.stdout.splitlines() == [
        f"redis: running on 127.0.0.1:{config.redis_port} (pid {_pid(services, 'redis')})",
        f"postgres: running on 127.0.0.1:{config.postgres_port} (pid {_pid(services, 'postgres')})",
        f"prefect: running on {config.prefect_api_url} (pid {_pid(services, 'prefect')})",
    ]


def _pid(services: Services, name: str) -> str:
    files = {"redis": "redis/redis.pid", "postgres": "postgres/data/postmaster.pid",
             "prefect": "prefect/prefect.pid"}  # fmt: skip
    return (services.folder / files[name]).read_text().splitlines()[0].strip()


def test_up_again_leaves_running_services_alone(services: Services) -> None:
    before = {name: _pid(services, name) for name in ("redis", "postgres", "prefect")}
    started = time.perf_counter()
    again = services.script("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert time.perf_counter() - started < 5
    lines = again.stdout.splitlines()
    assert len(lines) == 3 and all("already running" in line for line in lines), lines
    assert {name: _pid(services, name) for name in before} == before


def test_down_and_status_on_a_folder_with_nothing_running(tmp_path: Path) -> None:
    # `down` stops the Prefect server before its database, and the database before Redis.
    for command, order in (("down", ["prefect", "postgres", "redis"]),
                           ("status", ["redis", "postgres", "prefect"])):  # fmt: skip
        done = subprocess.run([str(SCRIPT), command, str(tmp_path)], capture_output=True,
                              text=True, check=False)  # fmt: skip
        assert done.returncode == 0
        assert done.stdout.splitlines() == [f"{name}: not running" for name in order]
