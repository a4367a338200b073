"""``prefect.yaml`` (``prefect deploy --all`` and a worker) declares the deployments that
``ranking schedule`` serves: the same names, flows, crons, time zones and tags."""

from __future__ import annotations

import inspect

import yaml

from cli.loop import schedule
from flows import deployments as served
from ranking.settings import PROJECT_ROOT

PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"


def _what(name: str, entrypoint: str, crons: list[tuple[str, str]], tags: list[str]) -> dict:
    return {"name": name, "entrypoint": entrypoint, "crons": crons, "tags": sorted(tags)}


def test_prefect_yaml_declares_the_served_deployments():
    declared = yaml.safe_load(PREFECT_YAML.read_text())
    in_yaml = [
        _what(d["name"], d["entrypoint"],
              [(s["cron"], s["timezone"]) for s in d["schedules"]], d["tags"])
        for d in declared["deployments"]
    ]  # fmt: skip
    in_code = [
        _what(d.name, d.entrypoint,
              [(s.schedule.cron, s.schedule.timezone) for s in d.schedules], d.tags)
        for d in served.deployments()
    ]  # fmt: skip
    assert in_yaml == in_code
    assert [c for d in in_code for c, _ in d["crons"]] == [
        served.FEATURES_CRON, served.TRAINING_CRON, served.MONITOR_CRON]  # fmt: skip


def test_prefect_yaml_runs_every_deployment_on_the_process_pool_from_this_checkout():
    declared = yaml.safe_load(PREFECT_YAML.read_text())
    assert {d["work_pool"]["name"] for d in declared["deployments"]} == {"ranking"}
    # No machine's path stored: the flows run in the folder `prefect deploy` ran in.
    assert declared["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}
    ]


def test_schedule_command_defaults_are_the_deployments_crons():
    options = inspect.signature(schedule).parameters
    assert [options[f"{n}_cron"].default.default for n in ("features", "training", "monitor")] == [
        served.FEATURES_CRON, served.TRAINING_CRON, served.MONITOR_CRON]  # fmt: skip
