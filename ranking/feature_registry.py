"""Registering new feature families without touching the training code.

A data engineer writes one YAML file in the definitions folder (``feature_repo/
definitions/<name>.yaml`` by default, ``RANKING_FEATURE_DEFINITIONS_DIR`` to move it):

.. code-block:: yaml

    name: user_skips                      # the family (becomes the Feast feature view)
    entity: user                          # user | item | user_category
    owner: data-eng@example.com
    description: How often a user skips what they start.
    ttl_days: 2
    cadence_days: 1                       # must match the platform's snapshot cadence
    features:
      - name: user_skip_rate_7d           # <entity>_<signal>_<window>
        dtype: Float64                    # Int64 or Float64
        description: Skips per play-or-skip over the 7 days before the snapshot.
    sql: |
      SELECT e.user_id, s.ts AS snapshot_ts,
             count(*) FILTER (WHERE e.event_type = 'skip')::DOUBLE
               / nullif(count(*) FILTER (WHERE e.event_type IN ('play', 'skip')), 0)
               AS user_skip_rate_7d
      FROM snapshots s
      JOIN events e ON e.event_timestamp < s.ts
                   AND e.event_timestamp >= s.ts - INTERVAL 7 DAY
      GROUP BY ALL

The SQL sees three relations only: ``events`` and ``items`` (read-only views of the
warehouse) and ``snapshots(ts)``, the snapshot times. It must return the entity key(s),
``snapshot_ts`` and one column per declared feature, using only events strictly before
``snapshot_ts``. It runs in a separate in-memory DuckDB with the warehouse attached
read-only and external access switched off, one SELECT statement, so a definition can
neither write nor drop anything, nor read files.

Registering a family adds it to a new version of the ranker's feature service
(``ranker_v1`` -> ``ranker_v2`` ...) in ``services.yaml`` beside the definitions. The
setting ``feature_service = "latest"`` (the default) trains on the newest version, while
each model keeps the exact service it was trained with (a version tag), so older models
go on serving with theirs.
"""

from __future__ import annotations

import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ranking.features import CONTEXT_FEATURES, FAMILIES, FeatureFamily, FeatureSpec

#: The built-in service and the families (Feast feature views) it serves.
BASE_SERVICE = "ranker_v1"
BASE_VIEWS = [f.name for f in FAMILIES] + ["request_time_context"]
SERVICE_PREFIX = "ranker_v"
LATEST = "latest"

ENTITY_KEYS: dict[str, tuple[str, ...]] = {
    "user": ("user_id",),
    "item": ("item_id",),
    "user_category": ("user_id", "category"),
}
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{1,62}")
#: What follows ``<entity>_``: a signal of one or more words, then the window.
_SIGNAL_WINDOW = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*_(?:\d+[hdw]|all)")


class DefinitionError(ValueError):
    """A feature definition is invalid; the message names the definition and the field."""


class FeatureField(BaseModel):
    """One declared feature."""

    model_config = ConfigDict(extra="forbid")
    name: str
    dtype: Literal["Int64", "Float64"]
    description: str = ""


class FeatureDefinition(BaseModel):
    """A feature family as a data engineer writes it (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    entity: Literal["user", "item", "user_category"]
    owner: str = ""
    description: str = ""
    ttl_days: float = Field(default=2.0, gt=0)
    cadence_days: float = Field(default=1.0, gt=0)
    features: list[FeatureField]
    sql: str

    @property
    def entity_keys(self) -> tuple[str, ...]:
        return ENTITY_KEYS[self.entity]

    def to_family(self) -> FeatureFamily:
        """The same shape as the built-in families (for Feast views and data checks)."""
        return FeatureFamily(
            name=self.name,
            entity_keys=self.entity_keys,
            description=self.description,
            features=tuple(FeatureSpec(f.name, f.dtype, f.description) for f in self.features),
            sql=self.sql,
            ttl=timedelta(days=self.ttl_days),
        )


# Files --------------------------------------------------------------------------------


def definition_path(definitions_dir: Path, name: str) -> Path:
    if not _IDENTIFIER.fullmatch(name):
        raise DefinitionError(f"{name!r}: a definition name is lower-case letters, digits, _")
    return Path(definitions_dir) / f"{name}.yaml"


def load_definition(definitions_dir: Path, name: str) -> FeatureDefinition:
    """Read and parse ``<definitions_dir>/<name>.yaml``; errors name the file and field."""
    path = definition_path(definitions_dir, name)
    if not path.exists():
        raise DefinitionError(f"{path}: no such definition")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        definition = FeatureDefinition.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise DefinitionError(f"{path}: {problems}") from None
    if definition.name != name:
        raise DefinitionError(f"{path}: name: {definition.name!r} differs from the file name")
    return definition


def services_path(definitions_dir: Path) -> Path:
    return Path(definitions_dir) / "services.yaml"


def load_services(definitions_dir: Path) -> dict[str, list[str]]:
    """Every ranker feature service version and the feature views it serves, oldest first."""
    path = services_path(definitions_dir)
    services = {BASE_SERVICE: list(BASE_VIEWS)}
    if path.exists():
        services |= {k: list(v) for k, v in (yaml.safe_load(path.read_text()) or {}).items()}
    return dict(sorted(services.items(), key=lambda kv: int(kv[0].removeprefix(SERVICE_PREFIX))))


def registered_definitions(definitions_dir: Path) -> list[FeatureDefinition]:
    """The definitions some service version uses (in registration order)."""
    names: list[str] = []
    for views in load_services(definitions_dir).values():
        names += [v for v in views if v not in BASE_VIEWS and v not in names]
    return [load_definition(definitions_dir, n) for n in names]


def latest_service(definitions_dir: Path) -> str:
    return list(load_services(definitions_dir))[-1]


def resolve_service(name: str, definitions_dir: Path) -> str:
    """``latest`` -> the newest service version; any other name is checked and returned."""
    services = load_services(definitions_dir)
    resolved = list(services)[-1] if name == LATEST else name
    if resolved not in services:
        raise DefinitionError(f"feature service {name!r} is not one of {list(services)}")
    return resolved


# Validation ---------------------------------------------------------------------------


def _builtin_names() -> set[str]:
    names = {f.name for fam in FAMILIES for f in fam.features}
    return names | {f.name for f in CONTEXT_FEATURES} | {fam.name for fam in FAMILIES}


def check_names(definition: FeatureDefinition, taken: set[str]) -> list[str]:
    """Naming convention, descriptions, owner, and no collision with ``taken`` names."""
    where = f"definition {definition.name!r}"
    problems = []
    if not _IDENTIFIER.fullmatch(definition.name):
        problems.append(f"{where}: name: use lower-case letters, digits and _")
    if definition.name in taken:
        problems.append(f"{where}: name: collides with an existing family or feature")
    if not definition.owner.strip():
        problems.append(f"{where}: owner: missing")
    if not definition.description.strip():
        problems.append(f"{where}: description: missing")
    if not definition.features:
        problems.append(f"{where}: features: none declared")
    seen: set[str] = set()
    prefix = definition.entity + "_"
    for i, f in enumerate(definition.features):
        field = f"features[{i}] {f.name!r}"
        if not _IDENTIFIER.fullmatch(f.name):
            problems.append(f"{where}: {field}: use lower-case letters, digits and _")
        elif not f.name.startswith(prefix) or not _SIGNAL_WINDOW.fullmatch(
            f.name.removeprefix(prefix)
        ):
            problems.append(
                f"{where}: {field}: name must follow <entity>_<signal>_<window>, e.g. "
                f"{prefix}skip_rate_7d (window like 1d, 7d, 24h, 4w or all)"
            )
        if f.name in taken or f.name in seen:
            problems.append(f"{where}: {field}: collides with an existing feature")
        seen.add(f.name)
        if not f.description.strip():
            problems.append(f"{where}: {field}: description missing")
    return problems


def _single_select(definition: FeatureDefinition) -> str:
    """The SQL as one SELECT statement, or a DefinitionError."""
    try:
        statements = duckdb.extract_statements(definition.sql)
    except duckdb.Error as exc:
        raise DefinitionError(
            f"definition {definition.name!r}: sql: does not parse: {str(exc).splitlines()[0]}"
        ) from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise DefinitionError(
            f"definition {definition.name!r}: sql: must be exactly one SELECT statement"
        )
    return definition.sql.strip().rstrip(";")


def _sandbox(warehouse_path: Path, as_of: datetime, snapshots: list[datetime]):
    """In-memory DuckDB: warehouse attached read-only, only events/items/snapshots visible."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{warehouse_path}' AS wh (READ_ONLY)")
    # Copies, then the warehouse is detached: the SQL sees events before ``as_of`` and
    # the items, and nothing else of the warehouse (no quarantine, no later events).
    con.execute(
        "CREATE TEMP TABLE events AS SELECT * FROM wh.events WHERE event_timestamp < ?::TIMESTAMP",
        [as_of],
    )
    con.execute("CREATE TEMP TABLE items AS SELECT * FROM wh.items")
    con.execute("DETACH wh")
    con.execute("CREATE TEMP TABLE snapshots (ts TIMESTAMP)")
    con.executemany("INSERT INTO snapshots VALUES (?)", [[s] for s in snapshots])
    # From here on the SQL can read nothing but the views, and cannot change that.
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def run_definition(
    definition: FeatureDefinition,
    warehouse_path: Path,
    as_of: datetime,
    snapshots: list[datetime],
) -> pd.DataFrame:
    """Run a definition's SQL in the sandbox; typed columns: keys, event_timestamp, features."""
    sql = _single_select(definition)
    where = f"definition {definition.name!r}"
    con = _sandbox(warehouse_path, as_of, snapshots)
    try:
        try:
            frame = con.execute(f"SELECT * FROM ({sql}) AS q").df()
        except duckdb.Error as exc:
            raise DefinitionError(f"{where}: sql: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()
    missing = [c for c in (*definition.entity_keys, "snapshot_ts") if c not in frame.columns]
    missing += [f.name for f in definition.features if f.name not in frame.columns]
    if missing:
        raise DefinitionError(f"{where}: sql: result lacks columns {missing}")
    for key in definition.entity_keys:
        if not (pd.api.types.is_string_dtype(frame[key]) or frame[key].isna().all()):
            raise DefinitionError(f"{where}: sql: key {key!r} must be a string (VARCHAR)")
    if not pd.api.types.is_datetime64_any_dtype(frame["snapshot_ts"]):
        raise DefinitionError(f"{where}: sql: snapshot_ts must be a TIMESTAMP")
    out = frame[list(definition.entity_keys)].copy()
    stamps = pd.to_datetime(frame["snapshot_ts"])
    stamps = stamps.dt.tz_convert("UTC") if stamps.dt.tz else stamps.dt.tz_localize("UTC")
    out["event_timestamp"] = stamps.astype("datetime64[us, UTC]")
    for f in definition.features:
        try:
            values = pd.to_numeric(frame[f.name])
            out[f.name] = values.astype("Int64" if f.dtype == "Int64" else "float64")
        except (TypeError, ValueError):
            kind = "integers" if f.dtype == "Int64" else "numbers"
            raise DefinitionError(f"{where}: {f.name}: values are not {kind}") from None
    if out.duplicated([*definition.entity_keys, "event_timestamp"]).any():
        raise DefinitionError(f"{where}: sql: more than one row per entity and snapshot_ts")
    return out.sort_values(["event_timestamp", *definition.entity_keys], ignore_index=True)


def check_point_in_time(definition: FeatureDefinition, scratch: Path) -> list[str]:
    """Prove on generated data that no value uses events at or after its snapshot time.

    For each of several snapshot times ``s``, the definition runs on a small generated
    warehouse for ``s`` alone, then again after copies of sampled events are placed
    exactly at ``s`` and one second after it. A point-in-time-correct definition gives
    identical values both times (later snapshots may of course see those events).
    """
    import shutil

    from ranking import synth  # generated data only for this check
    from ranking.config import DEFAULT_LABEL_WEIGHTS
    from ranking.events import ingest, warehouse

    end = datetime(2026, 1, 15)
    data = synth.generate(synth.SynthConfig(events=6_000, days=10, end=end, seed=3))
    paths = synth.write(data, scratch / "raw")
    clean = scratch / "pit.duckdb"
    ingest(clean, paths["events"], DEFAULT_LABEL_WEIGHTS, end, paths["items"])
    cadence = timedelta(days=definition.cadence_days)
    # At the snapshot, just after it, and across the whole next cadence.
    period = cadence.total_seconds()
    offsets = [0.0, 1.0, 60.0, 3600.0, period / 2, period - 1.0]
    problems: list[str] = []
    where = f"definition {definition.name!r}"
    for k in (1, 3, 5):
        snapshot = end - cadence * k
        before = run_definition(definition, clean, end, [snapshot])
        probe = scratch / f"pit-{k}.duckdb"
        shutil.copy(clean, probe)
        with warehouse(probe) as con:
            con.execute(
                """
                INSERT INTO events
                SELECT md5(e.event_id || o.offset_s::VARCHAR), e.user_id, e.item_id,
                       e.event_type, ?::TIMESTAMP + to_seconds(o.offset_s), e.value,
                       e.session_id, e.position, 'pit-check', e.loaded_at
                FROM (SELECT * FROM events USING SAMPLE reservoir(2000 ROWS) REPEATABLE (1)) e,
                     (SELECT unnest(?::DOUBLE[]) AS offset_s) o
                """,
                [snapshot, offsets],
            )
        after = run_definition(definition, probe, end, [snapshot])
        keys = [*definition.entity_keys, "event_timestamp"]
        merged = before.merge(after, on=keys, how="outer", suffixes=("", "_after"),
                              indicator=True)  # fmt: skip
        if (merged["_merge"] != "both").any():
            problems.append(
                f"{where}: point in time: rows appear or vanish at snapshot {snapshot} when "
                "events are added at or just after it"
            )
        for f in definition.features:
            a, b = merged[f.name].astype("float64"), merged[f"{f.name}_after"].astype("float64")
            changed = ~((a == b) | (a.isna() & b.isna()))
            if changed.any():
                problems.append(
                    f"{where}: {f.name}: point in time: {int(changed.sum())} values at snapshot "
                    f"{snapshot} change when events are added at or just after it (use only "
                    "events with event_timestamp < snapshot_ts)"
                )
        if problems:
            break
    return problems


@dataclass
class Validation:
    """What ``ranking features validate`` found."""

    definition: FeatureDefinition | None
    problems: list[str]
    sample_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(definitions_dir: Path, name: str) -> Validation:
    """Every check of a definition: parse, names, SQL shape and types, point in time."""
    try:
        definition = load_definition(definitions_dir, name)
    except DefinitionError as exc:
        return Validation(None, [str(exc)])
    try:
        others = [d for d in registered_definitions(definitions_dir) if d.name != name]
    except DefinitionError as exc:
        return Validation(definition, [f"a registered definition is broken: {exc}"])
    taken = _builtin_names() | {d.name for d in others}
    taken |= {f.name for d in others for f in d.features}
    problems = check_names(definition, taken)
    with tempfile.TemporaryDirectory(prefix="ranking-validate-") as tmp:
        try:
            problems += check_point_in_time(definition, Path(tmp))
            sample = Path(tmp) / "pit.duckdb"
            if not problems:
                rows = len(run_definition(definition, sample, datetime(2026, 1, 15),
                                          [datetime(2026, 1, 14)]))  # fmt: skip
            else:
                rows = 0
        except DefinitionError as exc:
            problems.append(str(exc))
            rows = 0
    return Validation(definition, problems, rows)


# Computing and registering ------------------------------------------------------------


def compute_definition(
    definition: FeatureDefinition,
    warehouse_path: Path,
    features_dir: Path,
    as_of: datetime,
    snapshots: list[datetime],
) -> int:
    """Backfill: the family's values at every snapshot, written atomically as Parquet."""
    frame = run_definition(definition, warehouse_path, as_of, snapshots)
    target = Path(features_dir) / f"{definition.name}.parquet"
    tmp = target.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
    tmp.replace(target)
    return len(frame)


def add_service_version(definitions_dir: Path, family: str) -> str:
    """Append a service version = the newest one plus ``family``; returns its name."""
    services = load_services(definitions_dir)
    newest = list(services)[-1]
    if family in services[newest]:
        return newest
    name = f"{SERVICE_PREFIX}{int(newest.removeprefix(SERVICE_PREFIX)) + 1}"
    services[name] = [*services[newest], family]
    extra = {k: v for k, v in services.items() if k != BASE_SERVICE}
    services_path(definitions_dir).write_text(yaml.safe_dump(extra, sort_keys=False))
    return name


@contextmanager
def restored_on_failure(definitions_dir: Path, features_dir: Path, family: str):
    """Put ``services.yaml`` back and drop ``family``'s backfill if the block raises."""
    services = services_path(definitions_dir)
    before = services.read_text() if services.exists() else None
    try:
        yield
    except BaseException:
        if before is None:
            services.unlink(missing_ok=True)
        else:
            services.write_text(before)
        (Path(features_dir) / f"{family}.parquet").unlink(missing_ok=True)
        raise


def catalogue(features_dir: Path, definitions_dir: Path) -> pd.DataFrame:
    """Every feature: name, family, entity, owner, type, description, newest snapshot, nulls."""
    entity_of = {keys: entity for entity, keys in ENTITY_KEYS.items()}
    families: list[tuple[FeatureFamily, str, str]] = [
        (fam, entity_of[fam.entity_keys], "built-in") for fam in FAMILIES
    ]
    for d in registered_definitions(definitions_dir):
        families.append((d.to_family(), d.entity, d.owner))
    rows = []
    for fam, entity, owner in families:
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
        rows.append({"feature": spec.name, "family": "request_time_context",
                     "entity": "request", "owner": "built-in", "type": spec.dtype,
                     "description": spec.description, "newest_snapshot": "on demand",
                     "null_rate": 0.0})  # fmt: skip
    return pd.DataFrame(rows)


def snapshot_grid(features_dir: Path) -> list[datetime]:
    """The snapshot times of the built-in families (what a new family is backfilled on)."""
    path = FAMILIES[0].parquet_path(Path(features_dir))
    if not path.exists():
        raise DefinitionError(f"{path}: no feature snapshots yet: run `ranking features` first")
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"SELECT DISTINCT (event_timestamp AT TIME ZONE 'UTC') FROM read_parquet('{path}') "
            "ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def compute_registered(
    definitions_dir: Path,
    warehouse_path: Path,
    features_dir: Path,
    as_of: datetime,
    snapshots: list[datetime],
) -> dict[str, int]:
    """Recompute every registered family on the given snapshots (the features flow)."""
    return {
        d.name: compute_definition(d, warehouse_path, features_dir, as_of, snapshots)
        for d in registered_definitions(definitions_dir)
    }
