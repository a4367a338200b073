"""What every flow shares: settings and the run's clock."""

from __future__ import annotations

from datetime import UTC, datetime

from ranking import home as ranking_home
from ranking.errors import RankingError, interrupted_query
from ranking.ingest.profile import default_as_of, fit_settings, profile_of
from ranking.settings import Settings
from ranking.times import floor_to, parse_time

__all__ = [
    "dask_task_runner",
    "floor_to",
    "flow_settings",
    "parse_time",
    "retrying",
    "run_as_of",
    "utc_now",
]


def retry_unless_bad_input(task, task_run, state) -> bool:
    """Prefect's retry condition: retry a transient failure, never a :class:`RankingError`
    (bad input, a missing stage): rerunning it fails the same way, three times as slow;
    nor an interrupted query (the command is being stopped)."""
    error = state.result(raise_on_failure=False)
    return not isinstance(error, RankingError) and not interrupted_query(error)


def flow_settings(home: str | None = None) -> Settings:
    """Settings from the environment, optionally for another home folder, with every
    setting left unset derived from the loaded data (cadence, windows, look-backs)."""
    settings = ranking_home.load(home)
    return fit_settings(settings, profile_of(settings.warehouse_path))


def run_as_of(settings: Settings, as_of: str | None, now: datetime | None = None) -> datetime:
    """The run's as-of time, floored to the snapshot cadence: ``as_of`` when given; else
    the clock for a live feed and just after the last event for a historic log."""
    if as_of is not None:
        return floor_to(parse_time(as_of, now), settings.features.snapshot_every.total_seconds())
    return default_as_of(settings, now or utc_now())


def utc_now() -> datetime:
    """The flow's clock, read once per run and passed down as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def retrying(times: int) -> dict:
    """Task options: retry ``times`` times, 5 s apart, unless the input is at fault."""
    return {
        "retries": times,
        "retry_delay_seconds": 5,
        "retry_condition_fn": retry_unless_bad_input,
    }


def dask_task_runner(settings: Settings):
    """Prefect's Dask task runner: on the cluster at ``scale.dask_address``, else on a local
    cluster of ``scale.dask_workers`` processes started for the flow run and stopped after."""
    from prefect_dask import DaskTaskRunner  # imported only by the runs that fan out

    if settings.scale.dask_address:
        return DaskTaskRunner(address=settings.scale.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": settings.scale.dask_workers,
                                          "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})  # fmt: skip
