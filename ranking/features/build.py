"""One feature refresh: every built-in family, then every registered family on the same
snapshot grid (what the scheduled features flow runs).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from ranking.features.registration import compute_registered
from ranking.features.snapshots import FeatureBuild, build_feature_tables, first_snapshot
from ranking.features.validation import SqlLimits
from ranking.fingerprint import code_digest, digest, warehouse_digest
from ranking.settings import Settings

STAMP = "build.json"  # beside the snapshots: the inputs digest of the build that wrote them


def build_inputs(settings: Settings, as_of: datetime) -> str:
    """The digest of everything a build reads: the warehouse's content, the registered
    definitions, the feature settings, the as-of time and the library's code."""
    definitions = (
        sorted(settings.definitions_dir.rglob("*")) if settings.definitions_dir.exists() else []
    )
    return digest(
        warehouse_digest(settings.warehouse_path),
        [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in definitions if p.is_file()],
        settings.features.model_dump(mode="json"),
        as_of,
        code_digest(),
    )


def reused_build(settings: Settings, inputs: str) -> FeatureBuild | None:
    """The build that wrote the snapshots, when its inputs were ``inputs`` (see
    :func:`build_inputs`) and its files are all there; else None (a build is due)."""
    stamp = settings.features_dir / STAMP
    if stamp.exists():
        kept = json.loads(stamp.read_text())
        if kept["inputs"] == inputs and all(
            (settings.features_dir / f"{name}.parquet").exists() for name in kept["rows"]
        ):
            snapshots = [datetime.fromisoformat(t) for t in kept["snapshots"]]
            return FeatureBuild(kept["rows"], snapshots, reused=True, inputs=inputs)
    return None


def build_builtin(settings: Settings, as_of: datetime) -> FeatureBuild:
    """The built-in families' snapshots up to ``as_of``, in this process."""
    (settings.features_dir / STAMP).unlink(missing_ok=True)  # a stopped build leaves none
    return build_feature_tables(
        settings.warehouse_path,
        settings.features_dir,
        as_of,
        settings.features.snapshot_every,
        settings.features.decay_half_life_days,
        first_snapshot=first_snapshot(as_of, settings.features.history_days),
    )


def finish_build(
    settings: Settings, as_of: datetime, build: FeatureBuild, inputs: str
) -> FeatureBuild:
    """Every registered family on the built-in families' grid, then the stamp that lets
    a rerun on the same ``inputs`` (read before the build began) reuse the whole build."""
    build.rows |= compute_registered(
        settings.definitions_dir,
        settings.warehouse_path,
        settings.features_dir,
        as_of,
        build.snapshots,
        SqlLimits.of(settings),
    )
    build.inputs = inputs
    snapshots = [t.isoformat() for t in build.snapshots]
    stamp = settings.features_dir / STAMP
    stamp.write_text(json.dumps({"inputs": build.inputs, "rows": build.rows,
                                 "snapshots": snapshots}))  # fmt: skip
    return build


def build_all_families(settings: Settings, as_of: datetime, force: bool = False) -> FeatureBuild:
    """Snapshots of every family up to ``as_of``; row counts per family and the grid.

    An unchanged rerun returns the build that wrote the snapshots and writes nothing
    (:func:`reused_build`), unless ``force``."""
    inputs = build_inputs(settings, as_of)
    kept = None if force else reused_build(settings, inputs)
    return kept or finish_build(settings, as_of, build_builtin(settings, as_of), inputs)
