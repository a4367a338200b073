"""The closed loop, short: two simulated rounds through Prefect, Feast, XGBoost and MLflow
(`ranking simulate`), each round served by the champion, reacted to, written, ingested
and learned from."""

from __future__ import annotations

import duckdb
import mlflow
import pandas as pd
import pytest
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from cli import app
from ranking.schema import IMPRESSION, PROPENSITY
from ranking.settings import get_settings
from ranking.simulation.closed_loop import SIMULATION_DIR, read_logged
from ranking.simulation.report import SIMULATION_EXPERIMENT
from ranking.training import tracking

pytestmark = [pytest.mark.e2e, pytest.mark.loops]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("simulate-home")
    with prefect_test_harness(server_startup_timeout=120):
        result = CliRunner().invoke(app, [
            "simulate", "--rounds", "2", "--users", "40", "--events", "6000", "--days", "21",
            "--seed", "3", "--exploration", "0.2", "--home", str(home),
        ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return get_settings(home=home), result.output


def test_each_round_is_served_written_and_ingested(simulated) -> None:
    settings, output = simulated
    assert "Simulated rounds" in output
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        loaded = dict(con.execute(
            "SELECT split_part(source_file, '/', 3), count(*) FILTER (event_type = 'impression') "
            "FROM events WHERE source_file LIKE 'raw/simulation/round-%' GROUP BY 1"
        ).fetchall())  # fmt: skip
    assert set(loaded) == {"round-01", "round-02"}
    for n in (1, 2):
        logged = read_logged(settings, n)
        assert logged["session_id"].nunique() == 40  # every active user got a list
        assert loaded[f"round-{n:02d}"] == len(logged)  # no served row quarantined
        assert set(logged["event_type"]) == {IMPRESSION}
        assert ((logged[PROPENSITY] > 0) & (logged[PROPENSITY] <= 1)).all()
        explored = (logged["rule"] == "explore").mean()
        assert 0.05 < explored < 0.4  # about a fifth of the places, as asked
        assert logged["model_version"].notna().all()  # the champion served every list


def test_the_rounds_figures_mlflow_run_and_plot(simulated) -> None:
    settings, _ = simulated
    table = pd.read_csv(settings.home / SIMULATION_EXPERIMENT / "rounds.csv")
    assert list(table["round"]) == [1, 2]
    assert table["ctr"].between(0.005, 0.5).all()
    assert table["true_ndcg@10"].between(0.05, 1.0).all()
    assert table["coverage"].between(0.0, 1.0, inclusive="right").all()
    assert table["champion"].notna().all()  # a champion after every round
    client = tracking.client_for(settings)
    experiment = client.get_experiment_by_name(SIMULATION_EXPERIMENT)
    (run,) = mlflow.search_runs([experiment.experiment_id], output_format="list")
    history = client.get_metric_history(run.info.run_id, "true_ndcg_at_10")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx(list(table["true_ndcg@10"]))
    # Each round's training judged the new version on the champion's logged traffic too.
    judged = table.dropna(subset=["ope_champion_snips"])
    assert len(judged) >= 1
    assert judged["ope_champion_snips"].between(0.0, 1.0).all()
    name = settings.publishing.model_name
    tagged = [mv for mv in client.search_model_versions(f"name = '{name}'")
              if client.get_model_version(name, mv.version).tags.get("off_policy")]  # fmt: skip
    assert tagged, "no version carries its off-policy estimate"
    png = settings.home / SIMULATION_EXPERIMENT / "rounds.png"
    assert png.stat().st_size > 10_000
    assert (settings.raw_dir / SIMULATION_DIR / "history" / "spec.json").exists()
