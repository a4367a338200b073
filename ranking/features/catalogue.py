"""The feature catalogue: every feature with its family, owner, type and freshness."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from ranking.features.definitions import all_families
from ranking.features.specs import CONTEXT_FEATURES, CONTEXT_VIEW


def catalogue(features_dir: Path, definitions_dir: Path) -> pd.DataFrame:
    """Every feature: name, family, entity, owner, type, description, newest snapshot, nulls."""
    rows = []
    for fam in all_families(definitions_dir):
        entity, owner = fam.entity, fam.owner or "built-in"
        path = Path(features_dir) / f"{fam.name}.parquet"
        stats: dict[str, tuple[object, float]] = {}
        if path.exists():
            con = duckdb.connect()
            try:
                shares = ", ".join(f'avg(("{f.name}" IS NULL)::INT)' for f in fam.features)
                row = con.execute(
                    f"SELECT max(event_timestamp), {shares} FROM read_parquet('{path}') "
                    f"WHERE event_timestamp = (SELECT max(event_timestamp) "
                    f"FROM read_parquet('{path}'))"
                ).fetchall()[0]
                for spec, share in zip(fam.features, row[1:], strict=True):
                    stats[spec.name] = (row[0], float(share or 0.0))
            finally:
                con.close()
        for spec in fam.features:
            newest, nulls = stats.get(spec.name, (None, float("nan")))
            rows.append({"feature": spec.name, "family": fam.name, "entity": entity,
                         "owner": owner, "type": spec.dtype, "description": spec.description,
                         "newest_snapshot": newest, "null_rate": nulls})  # fmt: skip
    for spec in CONTEXT_FEATURES:
        rows.append({"feature": spec.name, "family": CONTEXT_VIEW,
                     "entity": "request", "owner": "built-in", "type": spec.dtype,
                     "description": spec.description, "newest_snapshot": "on demand",
                     "null_rate": 0.0})  # fmt: skip
    return pd.DataFrame(rows)
