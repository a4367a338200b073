"""The shared profile's services for this suite: ``infra/services.sh up`` on free ports in
a throwaway folder before the first test, ``down`` after the last."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from ranking.services import ServicesSettings

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "services.sh"


def missing_services() -> str | None:
    """Why the services cannot be started here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server; .ci/run does)"
    if not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl") and shutil.which("pg_ctl") is None:
        return "no PostgreSQL binaries (apt-get install postgresql)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Services:
    """Where the suite's services run, the environment that points at them, and how long
    ``up`` took (each service's line says its own seconds)."""

    folder: Path
    config: ServicesSettings
    env: dict[str, str]
    up_seconds: float
    up_lines: list[str]

    def query(self, database: str, sql: str, *args) -> list[tuple]:
        """Rows of ``sql`` on one of the services' PostgreSQL databases."""
        import psycopg

        c = self.config
        with closing(psycopg.connect(host=c.host, port=c.postgres_port, user=c.postgres_user,
                                     dbname=database)) as con:  # fmt: skip
            return con.execute(sql, args).fetchall()

    def script(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), command, str(self.folder)], env=os.environ | self.env,
                              capture_output=True, text=True, check=False)  # fmt: skip


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    reason = missing_services()
    if reason:
        pytest.skip(f"shared profile: {reason}")
    # Not under pytest's 0700 temporary folder: as root, PostgreSQL runs as `postgres`,
    # who must reach its data directory.
    folder = Path(tempfile.mkdtemp(prefix="ranking-shared-"))
    folder.chmod(0o755)
    config = ServicesSettings(redis_port=free_port(), postgres_port=free_port(),
                              prefect_port=free_port())  # fmt: skip
    env = {
        "RANKING_PROFILE": "shared",
        "RANKING_SERVICES__REDIS_PORT": str(config.redis_port),
        "RANKING_SERVICES__POSTGRES_PORT": str(config.postgres_port),
        "RANKING_SERVICES__PREFECT_PORT": str(config.prefect_port),
    }
    started = time.perf_counter()
    up = subprocess.run([str(SCRIPT), "up", str(folder)], env=os.environ | env,
                        capture_output=True, text=True, check=False)  # fmt: skip
    found = Services(folder, config, env, time.perf_counter() - started, up.stdout.splitlines())
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        print(f"\nservices up in {found.up_seconds:.1f} s: " + "; ".join(found.up_lines))
        yield found
    finally:
        down = found.script("down")
        shutil.rmtree(folder, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture(scope="module")
def shared_env(services: Services) -> Iterator[None]:
    """RANKING_PROFILE=shared and the services' ports, and Prefect on their server."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in services.env.items():
            patch.setenv(name, value)
        with temporary_settings({PREFECT_API_URL: services.config.prefect_api_url}):
            yield
