"""Validating a feature family definition before anything is written.

``validate`` checks that the file parses, that names follow ``<entity>_<signal>_<window>``
and collide with nothing, that the SQL is one SELECT that runs in a sandbox and returns
the keys, a timestamp and every declared feature, and proves on generated data that no
value uses events at or after its snapshot time.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from ranking.errors import DefinitionError
from ranking.features.definitions import (
    IDENTIFIER,
    FeatureDefinition,
    load_definition,
    registered_definitions,
)
from ranking.features.families import FAMILIES
from ranking.features.specs import CONTEXT_FEATURES
from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.schema import DEFAULT_LABEL_WEIGHTS
from ranking.settings import Settings
from ranking.times import floor_to
from ranking.warehouse import event_time_range, warehouse

#: What follows ``<entity>_``: a signal of one or more words, then the window.
_SIGNAL_WINDOW = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)*_(?:\d+[hdw]|all)")


def _builtin_names() -> set[str]:
    names = {f.name for fam in FAMILIES for f in fam.features}
    return names | {f.name for f in CONTEXT_FEATURES} | {fam.name for fam in FAMILIES}


def check_names(definition: FeatureDefinition, taken: set[str]) -> list[str]:
    """Naming convention, descriptions, owner, and no collision with ``taken`` names."""
    where = f"definition {definition.name!r}"
    problems = []
    if not IDENTIFIER.fullmatch(definition.name):
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
        if not IDENTIFIER.fullmatch(f.name):
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


@dataclass(frozen=True)
class SqlLimits:
    """How long and how much memory a definition's SQL may take (``features.sql_*``)."""

    seconds: float = 120.0
    memory: str = "4GB"

    @classmethod
    def of(cls, settings: Settings) -> SqlLimits:
        return cls(settings.features.sql_time_limit_seconds, settings.features.sql_memory_limit)


def _sandbox(warehouse_path: Path, as_of: datetime, snapshots: list[datetime], limits: SqlLimits):
    """In-memory DuckDB: warehouse attached read-only, only events/items/snapshots visible."""
    con = duckdb.connect(config={"memory_limit": limits.memory})
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
    limits: SqlLimits = SqlLimits(),
) -> pd.DataFrame:
    """Run a definition's SQL in the sandbox, within ``limits``; typed columns: keys,
    event_timestamp, features."""
    sql = _single_select(definition)
    where = f"definition {definition.name!r}"
    con = _sandbox(warehouse_path, as_of, snapshots, limits)
    timer = threading.Timer(limits.seconds, con.interrupt)
    timer.start()
    try:
        try:
            frame = con.execute(f"SELECT * FROM ({sql}) AS q").df()
        except duckdb.InterruptException:
            raise DefinitionError(
                f"{where}: sql: stopped at the time limit of {limits.seconds:g} s "
                "(features.sql_time_limit_seconds)"
            ) from None
        except duckdb.OutOfMemoryException:
            raise DefinitionError(
                f"{where}: sql: needs more than the memory limit of {limits.memory} "
                "(features.sql_memory_limit)"
            ) from None
        except duckdb.Error as exc:
            raise DefinitionError(f"{where}: sql: {str(exc).splitlines()[0]}") from None
    finally:
        timer.cancel()
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
    real_rows: int | None = None  # on the home's newest snapshot, when it has events
    real_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(
    definitions_dir: Path,
    name: str,
    limits: SqlLimits = SqlLimits(),
    warehouse_path: Path | None = None,
) -> Validation:
    """Every check of a definition: parse, names, SQL shape and types, point in time, and,
    given a warehouse with events, one run on its newest snapshot within ``limits``, so a
    definition too slow or too big for the real data fails here, not in the hourly flow."""
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
    validation = Validation(definition, problems, rows)
    if not problems and warehouse_path is not None:
        validate_on_real_data(validation, warehouse_path, limits)
    return validation


def validate_on_real_data(validation: Validation, warehouse_path: Path, limits: SqlLimits):
    """Run a validated definition once on the warehouse's newest snapshot within
    ``limits``; a failure is added to ``validation.problems`` with the snapshot named."""
    span = event_time_range(warehouse_path) if warehouse_path.exists() else None
    if span is None:
        return
    newest = floor_to(span[1], validation.definition.cadence_days * 86400)  # a grid point
    started = time.perf_counter()  # a duration, not the time of day
    try:
        validation.real_rows = len(
            run_definition(validation.definition, warehouse_path, span[1], [newest], limits)
        )
    except DefinitionError as exc:
        validation.problems.append(f"{exc} (on this home's newest snapshot, {newest})")
    validation.real_seconds = time.perf_counter() - started
