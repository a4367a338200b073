"""Where the shared profile finds its services: Redis, PostgreSQL and a Prefect server.

``infra/services.sh`` starts them from the same environment variables
(``RANKING_SERVICES__REDIS_PORT``, ``RANKING_SERVICES__POSTGRES_PORT``,
``RANKING_SERVICES__PREFECT_PORT``), so a shell that started them and a process that
uses them agree on where they are. Pure declarations, like ``ranking.settings``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: ``embedded``: SQLite online store, file registry, MLflow on SQLite, Prefect's own
#: temporary server. ``shared``: the services below.
Profile = Literal["embedded", "shared"]

#: PostgreSQL databases ``infra/services.sh`` creates, by what uses them.
FEAST_REGISTRY_DB = "feast_registry"
MLFLOW_DB = "mlflow"
PREFECT_DB = "prefect"


class ServicesSettings(BaseModel):
    """The shared setup's services (``infra/services.sh up`` starts them)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Host of the shared services.")
    redis_port: int = Field(default=6390, description="Redis: Feast's online store.")
    postgres_port: int = Field(
        default=5442,
        description="PostgreSQL: Feast's SQL registry, MLflow's store, Prefect's database.",
    )
    postgres_user: str = Field(default="ranking", description="PostgreSQL user (trusted).")
    prefect_port: int = Field(default=4290, description="Prefect server (on PostgreSQL).")
    # Read by infra/services.sh only; declared so that one exported environment serves
    # the script and the platform (an unknown RANKING_SERVICES__ variable is an error).
    only: str = Field(default="redis postgres prefect",
                      description="infra/services.sh: the services a command acts on.")  # fmt: skip
    dir: str | None = Field(default=None, description="infra/services.sh: the folder of the "
                            "services' data, logs and pids (unset: <home>/services).")  # fmt: skip
    run_as: str = Field(default="postgres", description="infra/services.sh, as root: the user "
                        "PostgreSQL runs as (initdb refuses root).")  # fmt: skip
    prefect_bin: str | None = Field(default=None, description="infra/services.sh: the prefect "
                                    "executable (unset: the checkout's .venv).")  # fmt: skip

    def postgres_url(self, database: str, driver: str = "psycopg") -> str:
        """SQLAlchemy URL of one database (psycopg 3; Prefect's server wants asyncpg)."""
        where = f"{self.postgres_user}@{self.host}:{self.postgres_port}"
        return f"postgresql+{driver}://{where}/{database}"

    @property
    def redis_address(self) -> str:
        """Feast's Redis ``connection_string``: host:port."""
        return f"{self.host}:{self.redis_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://{self.host}:{self.prefect_port}/api"
