"""One real ranker per test module: generated data -> DuckDB -> features -> Feast -> XGBoost.

Nothing is mocked: ``small_data`` is ingested into a fresh warehouse, point-in-time
snapshots are computed up to ``END``, ``feast apply`` and materialization run against the
home's feature repository, the training set comes from Feast's historical retrieval, and
the ranker is fitted with a small budget so the whole fixture stays within seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

import pandas as pd
import pytest

from ranking.features import snapshots as features
from ranking.features import store
from ranking.home import ensure_dirs
from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.schema import TEST, TRAIN, VALID
from ranking.settings import Settings, get_settings
from ranking.training import dataset, rankers
from tests.conftest import END, NOW

#: A small budget: enough for the ranker to learn the generated tastes, quick on 2 cores.
#: Sampled groups: these tests perturb the stored (Feast) features and join them by hand;
#: the retrieval features and retrieval-built groups are tested in
#: tests/code/training/test_retrieved.py and measured by benchmarks/quality.py.
TRAINING = {"n_estimators": 60, "valid_window": "P5D", "test_window": "P5D",
            "candidates": "sampled", "max_depth": 6, "min_child_weight": 1.0}  # fmt: skip


@dataclass(frozen=True)
class TrainedHome:
    """A home with features, the training set built from it and the ranker fitted on it."""

    settings: Settings
    frame: pd.DataFrame
    features: list[str]
    times: dataset.SplitTimes
    ranker: rankers.TrainedRanker

    @property
    def test(self) -> pd.DataFrame:
        """The holdout rows (one query group per returning user at the cut-off)."""
        return dataset.split_rows(self.frame, TEST).copy()

    def score(self, rows: pd.DataFrame) -> pd.Series:
        """The model's scores for ``rows`` (index kept)."""
        return rankers.score(self.ranker.model, rows, self.features)


def fit_home(settings: Settings, data: synth.SynthData) -> TrainedHome:
    """Ingest ``data`` into ``settings``' home, build features up to ``END``, apply and
    materialize the Feast repo, build the training set through Feast and fit the ranker."""
    ensure_dirs(settings)
    paths = synth.write(data, settings.raw_dir)
    ingest(settings.warehouse_path, paths["events"], settings.event_types, NOW, paths["items"])
    build = features.build_feature_tables(
        settings.warehouse_path,
        settings.features_dir,
        END,
        settings.features.snapshot_every,
        settings.features.decay_half_life_days,
    )
    store.apply_repo(settings)
    fs = store.get_store(settings)
    start, end = store.materialize_window(build.snapshots, settings.features.snapshot_every)
    store.materialize_latest(fs, start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))
    training = settings.training
    times = dataset.split_times(
        min(build.snapshots), END, training.valid_window, training.test_window
    )
    frame, names = dataset.build_training_set(settings.warehouse_path, fs, settings, times)
    ranker = rankers.train_ranker(
        dataset.split_rows(frame, TRAIN), dataset.split_rows(frame, VALID), names, settings
    )
    return TrainedHome(settings=settings, frame=frame, features=names, times=times, ranker=ranker)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small_data: synth.SynthData) -> TrainedHome:
    settings = get_settings(home=tmp_path_factory.mktemp("model_home"), training=TRAINING)
    return fit_home(settings, small_data)
