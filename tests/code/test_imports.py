"""What the ranking path imports: nothing it does not use, so a cold ``ranking rank`` and
a service start stay short (measured: 5.7 s before, most of it in imports)."""

from __future__ import annotations

import subprocess
import sys

RANK_PATH = "import cli.serving, ranking.serving.ranker, ranking.publishing.serving_model"


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}; import sys; print('\\n'.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return set(out.split())


def test_the_rank_path_imports_neither_mlflow_nor_feast_nor_training_libraries() -> None:
    """A kept champion and the publication serve a ranking call: MLflow and Feast are
    imported only when they cannot (see ranking.publishing.champion)."""
    loaded = _modules_after(RANK_PATH)
    assert "ranking.serving.ranker" in loaded  # the probe really imported the path
    assert {"mlflow", "feast", "lightgbm", "matplotlib.pyplot", "prefect"} & loaded == set()


def test_feast_classes_are_not_recompiled_by_typeguard_at_import() -> None:
    loaded = _modules_after("import ranking, feast, typeguard; "
                            "f = lambda: 0; assert typeguard.typechecked(f) is f; "
                            "assert typeguard.typechecked()(f) is f")  # fmt: skip
    assert "feast" in loaded
