"""Settings: nested sections from the environment, strict keys, and the README's table."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from cli.config import markdown_table, settings_reference
from ranking.settings import PROJECT_ROOT, Settings, get_settings


def test_nested_environment_variables_set_each_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKING_TRAINING__N_ESTIMATORS", "77")
    monkeypatch.setenv("RANKING_FEATURES__SNAPSHOT_EVERY", "PT6H")
    monkeypatch.setenv("RANKING_QUALITY__FRESHNESS_HOURS", '{"warn": 48, "fail": 96}')
    monkeypatch.setenv("RANKING_MONITORING__DRIFT__PSI_FAIL", "0.3")
    monkeypatch.setenv("RANKING_EVENTS__LABEL_WEIGHTS", '{"click": 1, "buy": 4}')
    s = Settings()
    assert s.training.n_estimators == 77
    assert s.training.learning_rate == 0.08  # the rest of the section keeps its defaults
    assert s.features.snapshot_every == timedelta(hours=6)
    assert (s.quality.freshness_hours.warn, s.quality.freshness_hours.fail) == (48, 96)
    assert s.monitoring.drift.psi_fail == 0.3 and s.monitoring.drift.psi_warn == 0.1
    assert s.event_types == ["buy", "click"]


def test_a_misspelt_setting_in_a_section_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKING_TRAINING__N_ESTIMATOR", "10")
    with pytest.raises(ValidationError, match="n_estimator"):
        Settings()


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="group_by"):
        get_settings(training={"group_by": "week"})
    monkeypatch.setenv("RANKING_QUALITY__FRESHNESS_HOURS", '{"warn": 96, "fail": 48}')
    with pytest.raises(ValidationError, match="must not be above fail"):
        Settings()


def test_paths_are_absolute_and_derived_from_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = get_settings(home="relative/home")
    assert s.home == (tmp_path / "relative" / "home").resolve()
    assert s.warehouse_path == s.home / "warehouse.duckdb"
    assert s.mlflow_tracking_uri == f"sqlite:///{s.home / 'mlflow' / 'mlflow.db'}"
    remote = get_settings(home=tmp_path, publishing={"mlflow_uri": "http://127.0.0.1:5000"})
    assert remote.mlflow_tracking_uri == "http://127.0.0.1:5000"
    assert remote.mlflow_artifact_location is None


def test_updated_changes_part_of_a_section_and_leaves_the_original(settings: Settings) -> None:
    changed = settings.updated(training={"n_estimators": 5}, seed=1)
    assert changed.training.n_estimators == 5 and changed.seed == 1
    assert changed.training.valid_window == settings.training.valid_window
    assert settings.training.n_estimators != 5


def test_loading_settings_loads_no_stage_and_no_heavy_library() -> None:
    code = (
        "import sys, ranking.settings; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'scipy', 'pandera', 'matplotlib', 'feast', 'mlflow', 'prefect', 'duckdb'} "
        "or m.startswith(('ranking.features', 'ranking.quality', 'ranking.monitoring'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_setting_has_a_description() -> None:
    missing = [env for env, _, meaning in settings_reference() if not meaning.strip()]
    assert not missing


def test_readme_configuration_table_is_the_generated_one() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    found = re.search(r"<!-- settings:start -->\n(.*?)\n<!-- settings:end -->", readme, re.S)
    assert found, "README lacks the settings table markers"
    assert found.group(1).strip() == markdown_table(), (
        "README settings table is stale: regenerate it with `ranking config --markdown`"
    )


def test_every_variable_the_services_script_reads_is_a_setting() -> None:
    """One exported environment serves ``infra/services.sh`` and the platform: a
    ``RANKING_SERVICES__`` variable the settings did not declare would fail every command."""
    from ranking.services import ServicesSettings

    script = (PROJECT_ROOT / "infra" / "services.sh").read_text()
    read = {name.lower() for name in re.findall(r"RANKING_SERVICES__([A-Z_]+)", script)}
    assert read and read <= set(ServicesSettings.model_fields), read - set(
        ServicesSettings.model_fields
    )
