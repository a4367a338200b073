"""Run the ``ranking`` command line and SIGKILL this process at a named point, the way a
crashing machine would stop it: no ``finally``, no ``atexit``, no flushing.

    python -m tests.faults.killer POINT ranking-arguments...

The points are stage boundaries: patched here, in the child only, never in the library.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after_calls(owner, name: str, calls: int, when=lambda *a, **k: True) -> None:
    """Kill once ``owner.name`` was called ``calls`` times where ``when`` holds (0: before
    the first such call runs)."""
    real = getattr(owner, name)
    seen = {"n": 0}

    def patched(*args, **kwargs):
        if when(*args, **kwargs):
            if seen["n"] >= calls:
                _die()
            seen["n"] += 1
        return real(*args, **kwargs)

    setattr(owner, name, patched)


def arm(point: str) -> None:
    if point == "ingest-before-swap":  # the copy is loaded, the swap not yet done
        _after_calls(os, "replace", 0, lambda src, dst, *a, **k: str(dst).endswith(".duckdb"))
    elif point == "features-mid-build":  # one family's file replaced, the others not
        _after_calls(Path, "replace", 1, lambda self, target: str(target).endswith(".parquet"))
    elif point == "materialize-mid-write":  # one view's online rows written, not all
        from ranking.features import materialize

        _after_calls(materialize, "pack_matrices_flat", 1)  # packing the second view's rows
    elif point == "register-before-ready":  # the version exists, its last tag does not
        from mlflow.tracking import MlflowClient

        from ranking.schema import READY_TAG

        _after_calls(MlflowClient, "set_model_version_tag", 0,
                     lambda self, name, version, key, value: key == READY_TAG)  # fmt: skip
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    arm(sys.argv[1])
    from cli import main

    sys.argv = ["ranking", *sys.argv[2:]]
    main()
