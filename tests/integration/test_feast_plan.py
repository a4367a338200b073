"""Real Feast: once applied and materialized, an unchanged repo plans no change."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ranking.features import repo, store
from ranking.ingest import synth
from ranking.settings import Settings
from ranking.warehouse import most_active_user
from tests.integration.homes import applied_home, newest_window

#: Feast's own plan (``FeatureStore.plan`` on the parsed repo), in a child process as
#: ``feast plan`` runs it: the repo's files are imported as top-level modules.
PLAN = """
import json, os, sys
from pathlib import Path
from feast import FeatureStore
from feast.project import Project
from feast.repo_operations import parse_repo
root = Path.cwd()
sys.path.insert(0, str(root))
contents = parse_repo(root)
fs = FeatureStore(repo_path=str(root))
contents.projects.append(Project(name=fs.project))
registry_diff, infra_diff, _ = fs.plan(contents)
print(json.dumps({
    "registry": [f"{d.transition_type.name} {d.feast_object_type.value} {d.name}: "
                 + ", ".join(p.property_name for p in d.feast_object_property_diffs)
                 for d in registry_diff.feast_object_diffs
                 if d.transition_type.name != "UNCHANGED"],
    "infra": [f"{d.transition_type.name} {d.name}" for d in infra_diff.infra_object_diffs
              if d.transition_type.name != "UNCHANGED"],
}))
"""


def plan(settings: Settings) -> dict[str, list[str]]:
    """What ``feast plan`` would change, with the inputs ``ranking`` hands the repo."""
    env = os.environ | {"RANKING_HOME": str(settings.home)} | repo.RepoInputs.of(settings).to_env()
    done = subprocess.run([sys.executable, "-c", PLAN], cwd=settings.feature_repo, env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory, small_data: synth.SynthData):
    """A home with features computed, `feast apply` run, and the newest snapshot online."""
    settings, build = applied_home(tmp_path_factory.mktemp("home"), small_data)
    fs = store.get_store(settings)
    store.materialize_latest(fs, *newest_window(settings, build))
    return settings, fs


def test_an_unchanged_repo_plans_no_change_after_materializing(materialized) -> None:
    settings, fs = materialized
    user = most_active_user(settings.warehouse_path)
    online = fs.get_online_features(features=["user_long_term:user_events_all"],
                                    entity_rows=[{"user_id": user}]).to_dict()  # fmt: skip
    assert online["user_events_all"] != [None]  # the materialization did write
    assert plan(settings) == {"registry": [], "infra": []}


def _view_specs(settings: Settings) -> dict[str, bytes]:
    """Each view as declared: its spec, without the source's bookkeeping times (Feast's
    object-by-object apply stamps them again)."""
    specs = {}
    for view in store.get_store(settings).list_feature_views():
        spec = view.to_proto().spec
        spec.batch_source.ClearField("meta")
        specs[view.name] = spec.SerializeToString(deterministic=True)
    return specs


def test_a_second_apply_changes_nothing_either(materialized) -> None:
    """Feast applies a repo whose online store is not its own SQLite one object by object
    (its plan-and-diff path is SQLite's only): nothing it declares may change, and the
    online rows stay."""
    settings, fs = materialized
    before, user = _view_specs(settings), most_active_user(settings.warehouse_path)
    out = store.apply_repo(settings)
    assert "Deploying infrastructure for user_long_term" in out
    assert not any(word in out for word in ("Updated", "Deleting", "Created")), out
    assert _view_specs(settings) == before
    assert plan(settings) == {"registry": [], "infra": []}
    online = (
        store.get_store(settings)
        .get_online_features(
            features=["user_long_term:user_events_all"], entity_rows=[{"user_id": user}]
        )
        .to_dict()
    )
    assert online["user_events_all"] != [None]
