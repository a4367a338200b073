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


def build_all_families(settings: Settings, as_of: datetime, force: bool = False) -> FeatureBuild:
    """Snapshots of every family up to ``as_of``; row counts per family and the grid.

    When the inputs are those of the build that wrote the snapshots (:func:`build_inputs`)
    and its files are all there, that build is returned and nothing is written (unless
    ``force``)."""
    inputs = build_inputs(settings, as_of)
    stamp = settings.features_dir / STAMP
    if stamp.exists() and not force:
        kept = json.loads(stamp.read_text())
        if kept["inputs"] == inputs and all(
            (settings.features_dir / f"{name}.parquet").exists() for name in kept["rows"]
        ):
            snapshots = [datetime.fromisoformat(t) for t in kept["snapshots"]]
            return FeatureBuild(kept["rows"], snapshots, reused=True, inputs=inputs)
    stamp.unlink(missing_ok=True)  # a build stopped half-way leaves no stamp to trust
    build = build_feature_tables(
        settings.warehouse_path,
        settings.features_dir,
        as_of,
        settings.features.snapshot_every,
        settings.features.decay_half_life_days,
        first_snapshot=first_snapshot(as_of, settings.features.history_days),
    )
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
    stamp.write_text(json.dumps({"inputs": inputs, "rows": build.rows, "snapshots": snapshots}))
    return build
