"""kill -9 at each stage boundary, then the same command again: the rerun completes, no
half-written state is visible, and the champion is the one from before.

And readers during writers: ``ranking rank`` and warehouse reads while two ingests and a
training run go on in other processes. Run by ``make test-faults`` (marker ``faults``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from cli.serving import rank_with_champion
from ranking.ingest import synth
from ranking.publishing import aliases
from ranking.settings import Settings, get_settings
from ranking.warehouse import event_time_range, most_active_user, warehouse
from tests.conftest import END, NOW, fitted

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def api_env():
    """One throwaway Prefect server for every child process of this module."""
    with prefect_test_harness(server_startup_timeout=120):
        yield os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value(),
                            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # fmt: skip


def _ranking(env: dict, home: Path, *args: str, kill_at: str | None = None):
    """Run ``ranking ARGS`` in a child process (killed at ``kill_at`` when given)."""
    command = [sys.executable, "-m", "tests.faults.killer", kill_at] if kill_at else [
        sys.executable, "-c", "from cli import main; main()"]  # fmt: skip
    return subprocess.run([*command, *args, "--home", str(home)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip


def _ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def _killed(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == -signal.SIGKILL, done.stdout[-2000:] + done.stderr[-3000:]


def _counts(settings: Settings) -> tuple[int, int]:
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return tuple(
            con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            for t in ("events", "quarantine")
        )


def _extra_events(folder: Path, small_data: synth.SynthData, n: int, tag: str) -> Path:
    """``n`` new events of known users and items in the half day before END, each at its
    own second (the same content under another id would fail the duplicate check)."""
    events = small_data.events.to_pandas().head(n).copy()
    events["event_id"] = [f"{tag}-{i}" for i in range(n)]
    start = END - timedelta(hours=12) + timedelta(seconds=sum(map(ord, tag)) % 7 * 4000)
    events["event_timestamp"] = [(start + timedelta(seconds=i)).isoformat() for i in range(n)]
    path = folder / f"{tag}.csv"
    events.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def home(api_env, tmp_path_factory: pytest.TempPathFactory,
         small_data: synth.SynthData) -> tuple[Settings, str]:  # fmt: skip
    """A home through ingest, features and train; returns it and its champion version."""
    settings = get_settings(home=tmp_path_factory.mktemp("faults-home"))
    paths = synth.write(small_data, settings.home / "input")
    # The clean events only: the command's clock is today, so the generator's dirty
    # "future" row (future for the generated END) would be accepted.
    _ok(_ranking(api_env, settings.home, "ingest", str(paths["events"] / "events.parquet"),
                 "--items", str(paths["items"])))  # fmt: skip
    _ok(_ranking(api_env, settings.home, "features", "--as-of", END.isoformat()))
    _ok(_ranking(api_env, settings.home, "train", "--as-of", END.isoformat()))
    champion = aliases.champion_version(settings)
    assert champion is not None
    return settings, champion


def _serves(settings: Settings) -> None:
    # As the commands see the home (the publication was made with its fitted settings).
    ranked = rank_with_champion(fitted(settings.home), most_active_user(settings.warehouse_path),
                                5, NOW)  # fmt: skip
    assert len(ranked.items) == 5


def test_ingest_killed_before_its_swap_leaves_the_warehouse_as_it_was(
    api_env, home, small_data, tmp_path: Path
) -> None:
    settings, champion = home
    before = _counts(settings)
    extra = _extra_events(tmp_path, small_data, 500, "late")
    _killed(_ranking(api_env, settings.home, "ingest", str(extra), kill_at="ingest-before-swap"))
    assert _counts(settings) == before
    _serves(settings)
    done = _ok(_ranking(api_env, settings.home, "ingest", str(extra)))
    assert "accepted 500" in done.stdout
    assert _counts(settings) == (before[0] + 500, before[1])
    assert aliases.champion_version(settings) == champion


@pytest.mark.parametrize("point", ["features-mid-build", "materialize-mid-write"])
def test_features_killed_midway_then_rerun(api_env, home, point: str) -> None:
    settings, champion = home
    _killed(_ranking(api_env, settings.home, "features", "--as-of", END.isoformat(), "--force",
                     kill_at=point))  # fmt: skip
    _serves(settings)  # what was published before still serves
    _ok(_ranking(api_env, settings.home, "features", "--as-of", END.isoformat()))
    assert not list(settings.features_dir.glob("*.parquet.tmp"))
    _serves(settings)
    assert aliases.champion_version(settings) == champion


def test_training_killed_while_registering_leaves_no_visible_version(api_env, home) -> None:
    settings, champion = home
    listed = list(aliases.list_versions(settings)["version"])
    _killed(_ranking(api_env, settings.home, "train", "--as-of", END.isoformat(),
                     kill_at="register-before-ready"))  # fmt: skip
    assert list(aliases.list_versions(settings)["version"]) == listed  # the orphan is hidden
    assert aliases.champion_version(settings) == champion
    orphan = str(max(listed) + 1)
    refused = _ranking(api_env, settings.home, "models", "promote", orphan, "--reason", "oops")
    assert refused.returncode == 2 and "not completely registered" in refused.stdout
    assert "Traceback" not in refused.stdout + refused.stderr
    _ok(_ranking(api_env, settings.home, "train", "--as-of", END.isoformat()))
    relisted = list(aliases.list_versions(settings)["version"])
    assert int(orphan) not in relisted and len(relisted) == len(listed) + 1
    assert aliases.champion_version(settings) == champion  # the same data: no clear win
    _serves(settings)


def test_readers_never_fail_while_ingests_and_training_run(
    api_env, home, small_data, tmp_path
) -> None:
    """Two ingests and a training run at once, each in its own process; meanwhile this
    process ranks and reads the warehouse."""
    settings, _ = home
    before = _counts(settings)
    files = [_extra_events(tmp_path, small_data, 3000, f"burst{k}") for k in range(2)]
    command = [sys.executable, "-c", "from cli import main; main()"]
    runs = [[*command, "ingest", str(f)] for f in files]
    runs.append([*command, "train", "--as-of", END.isoformat()])
    others = [subprocess.Popen([*run, "--home", str(settings.home)], cwd=ROOT, env=api_env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for run in runs]  # fmt: skip
    reads, failures = 0, []
    while any(p.poll() is None for p in others):
        try:
            _serves(settings)
            assert event_time_range(settings.warehouse_path) is not None
            reads += 1
        except Exception as exc:  # noqa: BLE001 - counted and reported, not hidden
            failures.append(repr(exc))
        time.sleep(0.05)
    outputs = [p.communicate()[0] for p in others]
    assert [p.returncode for p in others] == [0, 0, 0], [o[-3000:] for o in outputs]
    assert failures == [] and reads > 0
    assert _counts(settings) == (before[0] + 6000, before[1])  # neither load lost
    assert aliases.champion_version(settings) is not None
