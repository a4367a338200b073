"""Feature definitions in YAML: validation messages, the SQL sandbox, point in time, service
versions, the Parquet backfill and the catalogue."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ranking.errors import DefinitionError
from ranking.features.catalogue import catalogue
from ranking.features.definitions import (
    BASE_SERVICE,
    BASE_VIEWS,
    FeatureDefinition,
    definition_path,
    load_definition,
    load_services,
    resolve_service,
    services_path,
)
from ranking.features.registration import add_service_version, compute_definition
from ranking.features.store import service_name
from ranking.features.validation import (
    SqlLimits,
    Validation,
    run_definition,
    validate,
    validate_on_real_data,
)
from ranking.ingest import synth
from ranking.ingest.contract import ingest
from ranking.schema import DEFAULT_LABEL_WEIGHTS
from ranking.settings import PROJECT_ROOT, get_settings
from ranking.warehouse import scalar, warehouse, warehouse_counts

EXAMPLE = PROJECT_ROOT / "feature_repo" / "examples" / "user_skips.yaml"
DAY = timedelta(days=1)
#: The small warehouse holds events from WH_END - 10 days to WH_END.
WH_END = datetime(2026, 2, 1)
SNAPSHOTS = [WH_END - DAY * k for k in (3, 2, 1)]

# The example's window, and leaky variants of it.
GOOD_WINDOW = "e.event_timestamp < s.ts"
assert GOOD_WINDOW in EXAMPLE.read_text()


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def _write(folder: Path, name: str, body: dict | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = body if isinstance(body, str) else yaml.safe_dump(body, sort_keys=False)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def _variant(name: str, change: Callable[[dict], None] | None = None) -> dict:
    """The example under another name, changed by ``change``."""
    body = _example()
    body["name"] = name
    if change is not None:
        change(body)
    return body


def _problem_with(validation: Validation, *parts: str) -> str:
    """The one problem line that contains every part (fails with all problems otherwise)."""
    assert not validation.ok
    for problem in validation.problems:
        if all(p in problem for p in parts):
            return problem
    raise AssertionError(f"no problem mentions all of {parts}: {validation.problems}")


def _definition(sql: str, dtype: str = "Int64", name: str = "probe") -> FeatureDefinition:
    return FeatureDefinition(
        name=name,
        entity="user",
        owner="data-eng@example.com",
        description="A probe.",
        features=[{"name": "user_probe_7d", "dtype": dtype, "description": "A probe value."}],
        sql=sql,
    )


def _fingerprint(path: Path) -> tuple[str, dict[str, int], str]:
    """The file's bytes, the row counts and a checksum of every events row."""
    file_digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with warehouse(path, read_only=True) as con:
        counts = warehouse_counts(con)
        rows = scalar(
            con,
            "SELECT md5(string_agg(concat_ws('|', event_id, user_id, item_id, event_type, "
            "event_timestamp, value, session_id, position), ',' ORDER BY event_id)) FROM events",
        )
    return file_digest, counts, rows


@pytest.fixture(scope="module")
def warehouse_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 4k generated events over ten days ending at WH_END (seeded)."""
    root = tmp_path_factory.mktemp("registry-warehouse")
    data = synth.generate(synth.SynthConfig(events=4_000, days=10, end=WH_END, seed=5))
    paths = synth.write(data, root / "raw")
    path = root / "warehouse.duckdb"
    ingest(path, paths["events"], DEFAULT_LABEL_WEIGHTS, WH_END, paths["items"])
    return path


@pytest.fixture(scope="module")
def warehouse_before(warehouse_path: Path) -> tuple[str, dict[str, int], str]:
    fingerprint = _fingerprint(warehouse_path)
    assert fingerprint[1]["events"] > 1000
    return fingerprint


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("definitions")
    _write(folder, "user_skips", EXAMPLE.read_text())
    return folder


@pytest.fixture(scope="module")
def example_validation(example_dir: Path) -> Validation:
    return validate(example_dir, "user_skips")


# 1. The example ---------------------------------------------------------------------------


def test_the_example_definition_validates(example_validation: Validation) -> None:
    assert example_validation.problems == []
    assert example_validation.ok
    assert example_validation.sample_rows > 0
    definition = example_validation.definition
    assert definition is not None and definition.name == "user_skips"
    assert definition.entity_keys == ("user_id",)
    assert [f.name for f in definition.features] == ["user_skip_rate_7d", "user_skips_7d"]


# 2. Bad definitions: one clear message naming the definition and the field ----------------


def _drop_owner(body: dict) -> None:
    del body["owner"]


def _drop_description(body: dict) -> None:
    body["description"] = "   "


def _drop_feature_description(body: dict) -> None:
    del body["features"][0]["description"]


def _rename_feature(new: str) -> Callable[[dict], None]:
    def change(body: dict) -> None:
        body["sql"] = body["sql"].replace("AS user_skips_7d", f"AS {new}")
        body["features"][1]["name"] = new

    return change


def _duplicate_feature(body: dict) -> None:
    body["features"][0]["name"] = "user_skips_7d"


def _unknown_key(body: dict) -> None:
    body["colour"] = "red"


def _unknown_feature_key(body: dict) -> None:
    body["features"][0]["unit"] = "ratio"


def _bad_dtype(body: dict) -> None:
    body["features"][0]["dtype"] = "Float32"


def _undeclared_column(body: dict) -> None:
    body["features"].append(
        {"name": "user_plays_7d", "dtype": "Int64", "description": "Plays over 7 days."}
    )


def _numeric_key(body: dict) -> None:
    body["sql"] = body["sql"].replace("SELECT e.user_id,", "SELECT hash(e.user_id) AS user_id,")


def _no_group_by(body: dict) -> None:
    body["sql"] = (
        "SELECT e.user_id, s.ts AS snapshot_ts, 0.5 AS user_skip_rate_7d, 1 AS user_skips_7d\n"
        "FROM snapshots s JOIN events e ON e.event_timestamp < s.ts\n"
    )


BAD = [
    # (case, definition name, change to the example, parts of one problem line)
    ("missing owner", "no_owner", _drop_owner, ["owner: missing"]),
    ("blank family description", "no_description", _drop_description, ["description: missing"]),
    (
        "missing feature description",
        "no_feature_description",
        _drop_feature_description,
        ["features[0]", "user_skip_rate_7d", "description missing"],
    ),
    (
        "feature name without a window",
        "no_window",
        _rename_feature("user_skiprate"),
        ["user_skiprate", "<entity>_<signal>_<window>"],
    ),
    (
        "feature name without entity or window",
        "bare_name",
        _rename_feature("skiprate"),
        ["skiprate", "<entity>_<signal>_<window>"],
    ),
    (
        "item feature in a user family",
        "wrong_entity",
        _rename_feature("item_skips_7d"),
        ["item_skips_7d", "<entity>_<signal>_<window>"],
    ),
    (
        "feature colliding with a built-in feature",
        "builtin_feature",
        _rename_feature("user_clicks_7d"),
        ["features[1]", "user_clicks_7d", "collides"],
    ),
    (
        "family named like a built-in family",
        "user_long_term",
        None,
        ["name", "collides"],
    ),
    (
        "two features with the same name",
        "twice",
        _duplicate_feature,
        ["features[1]", "user_skips_7d", "collides"],
    ),
    ("unknown key", "unknown_key", _unknown_key, ["colour", "Extra inputs are not permitted"]),
    (
        "unknown key in a feature",
        "unknown_feature_key",
        _unknown_feature_key,
        ["features.0.unit", "Extra inputs are not permitted"],
    ),
    ("bad dtype", "bad_dtype", _bad_dtype, ["features.0.dtype", "'Int64' or 'Float64'"]),
    (
        "a declared feature the SQL does not return",
        "undeclared",
        _undeclared_column,
        ["sql", "lacks columns", "user_plays_7d"],
    ),
    ("a non-string entity key", "numeric_key", _numeric_key, ["sql", "user_id", "string"]),
    (
        "several rows per entity and snapshot",
        "no_group_by",
        _no_group_by,
        ["sql", "more than one row per entity and snapshot_ts"],
    ),
]


@pytest.mark.parametrize(("name", "change", "parts"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_definition_is_named_with_its_field(
    tmp_path: Path, name: str, change: Callable[[dict], None] | None, parts: list[str]
) -> None:
    _write(tmp_path, name, _variant(name, change))
    validation = validate(tmp_path, name)
    _problem_with(validation, name, *parts)
    assert validation.sample_rows == 0


def test_a_file_named_differently_from_its_name_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "other_name", _example())  # says name: user_skips
    validation = validate(tmp_path, "other_name")
    _problem_with(validation, "other_name.yaml", "name:", "'user_skips'", "differs")
    assert validation.definition is None
    with pytest.raises(DefinitionError, match="differs from the file name"):
        load_definition(tmp_path, "other_name")


def test_a_yaml_syntax_error_is_named(tmp_path: Path) -> None:
    _write(tmp_path, "broken", "name: broken\nentity: [user\nowner: me\n")
    validation = validate(tmp_path, "broken")
    _problem_with(validation, "broken.yaml", "not valid YAML")
    with pytest.raises(DefinitionError, match="broken.yaml: not valid YAML"):
        load_definition(tmp_path, "broken")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    _problem_with(validate(tmp_path, "absent"), "absent.yaml", "no such definition")


def test_a_registered_family_can_be_revalidated_but_its_features_are_taken(
    tmp_path: Path,
) -> None:
    _write(tmp_path, "user_skips", EXAMPLE.read_text())
    add_service_version(tmp_path, "user_skips")
    assert validate(tmp_path, "user_skips").ok  # not a collision with itself
    _write(tmp_path, "user_skips_again", _variant("user_skips_again"))
    validation = validate(tmp_path, "user_skips_again")
    _problem_with(validation, "user_skips_again", "user_skip_rate_7d", "collides")
    _problem_with(validation, "user_skips_again", "user_skips_7d", "collides")


def test_a_feature_name_without_a_signal_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "no_signal", _variant("no_signal", _rename_feature("user_7d")))
    _problem_with(validate(tmp_path, "no_signal"), "no_signal", "user_7d", "<signal>")


# 3. Safety: one SELECT, in a sandbox that cannot write, drop or read files -------------------

_ROW = "e.user_id, s.ts AS snapshot_ts, count(*) AS user_probe_7d"
_FROM = "FROM snapshots s JOIN events e ON e.event_timestamp < s.ts GROUP BY ALL"

UNSAFE = {
    "two statements": f"SELECT {_ROW} {_FROM}; DROP TABLE events",
    "two statements on the warehouse": f"SELECT {_ROW} {_FROM}; DROP TABLE wh.events",
    "delete": "DELETE FROM events",
    "delete from the warehouse": "DELETE FROM wh.events",
    "update": "UPDATE wh.events SET value = 0",
    "drop": "DROP TABLE wh.events",
    "create table as": f"CREATE TABLE x AS SELECT {_ROW} {_FROM}",
    "copy to a file": "COPY (SELECT * FROM events) TO '{tmp}/copied.csv'",
    "attach": "ATTACH '{tmp}/other.duckdb' AS other",
    "detach": "DETACH wh",
    "install": "INSTALL httpfs",
    "read a csv file": "SELECT * FROM read_csv('/etc/passwd')",
    "read a file as text": (
        "SELECT content AS user_id, TIMESTAMP '2026-01-30' AS snapshot_ts, 1 AS user_probe_7d "
        "FROM read_text('/etc/hostname')"
    ),
    "read a csv file as features": (
        "SELECT user_id, TIMESTAMP '2026-01-30' AS snapshot_ts, 1 AS user_probe_7d "
        "FROM read_csv('{tmp}/secret.csv')"
    ),
    "read a file by its name": (
        "SELECT user_id, TIMESTAMP '2026-01-30' AS snapshot_ts, 1 AS user_probe_7d "
        "FROM '{tmp}/secret.csv'"
    ),
    "list files": (
        "SELECT file AS user_id, TIMESTAMP '2026-01-30' AS snapshot_ts, 1 AS user_probe_7d "
        "FROM glob('/etc/*')"
    ),
    "set external access": "SET enable_external_access = true",
    "reset external access": "RESET enable_external_access",
    "set then read": (
        "SELECT 1; SET enable_external_access = true; SELECT * FROM read_csv('/etc/passwd')"
    ),
    "set inside a cte": (
        "WITH t AS (SET enable_external_access = true) SELECT * FROM read_csv('/etc/passwd')"
    ),
    "set through query()": "SELECT * FROM query('SET enable_external_access = true')",
    "delete inside a cte": (
        "WITH d AS (DELETE FROM wh.events RETURNING *) "
        "SELECT user_id, TIMESTAMP '2026-01-30' AS snapshot_ts, count(*) AS user_probe_7d "
        "FROM d GROUP BY ALL"
    ),
    "copy inside a cte": (
        "WITH c AS (COPY (SELECT 1) TO '{tmp}/copied.csv') "
        "SELECT 'u1' AS user_id, TIMESTAMP '2026-01-30' AS snapshot_ts, 1 AS user_probe_7d"
    ),
    "a comment hiding a statement": f"SELECT {_ROW} {_FROM} -- ;\n; DROP TABLE events",
}


@pytest.mark.parametrize("sql", list(UNSAFE.values()), ids=list(UNSAFE))
def test_unsafe_sql_is_rejected_and_the_warehouse_is_unchanged(
    tmp_path: Path,
    warehouse_path: Path,
    warehouse_before: tuple[str, dict[str, int], str],
    sql: str,
) -> None:
    (tmp_path / "secret.csv").write_text("user_id\nsecret\n")
    definition = _definition(sql.replace("{tmp}", str(tmp_path)))
    with pytest.raises(DefinitionError, match=r"^definition 'probe': sql: "):
        run_definition(definition, warehouse_path, WH_END, SNAPSHOTS)
    assert _fingerprint(warehouse_path) == warehouse_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.csv"]  # nothing written


def test_the_safe_probe_itself_runs(warehouse_path: Path) -> None:
    # The unsafe cases differ from this one only by what they add.
    frame = run_definition(_definition(f"SELECT {_ROW} {_FROM}"), warehouse_path, WH_END, SNAPSHOTS)
    assert len(frame) > 0


def test_validation_reports_unsafe_sql_as_a_problem(tmp_path: Path) -> None:
    def drop(body: dict) -> None:
        body["sql"] = body["sql"] + ";\nDROP TABLE events\n"

    _write(tmp_path, "dropper", _variant("dropper", drop))
    _problem_with(validate(tmp_path, "dropper"), "dropper", "sql", "exactly one SELECT")


RUNAWAY = (
    "SELECT a.user_id, s.ts AS snapshot_ts, count(*) AS user_probe_7d "
    "FROM snapshots s, events a, events b, events c GROUP BY ALL"
)


def test_a_runaway_query_is_stopped_at_the_time_limit(warehouse_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(DefinitionError, match=r"stopped at the time limit of 0.5 s"):
        run_definition(_definition(RUNAWAY), warehouse_path, WH_END, SNAPSHOTS,
                       SqlLimits(seconds=0.5))  # fmt: skip
    assert time.perf_counter() - started < 20


def test_a_query_over_the_memory_limit_is_stopped(warehouse_path: Path) -> None:
    hungry = (
        "SELECT a.user_id, s.ts AS snapshot_ts, count(DISTINCT a.event_id || b.event_id) "
        "AS user_probe_7d FROM snapshots s, events a, events b GROUP BY ALL"
    )
    with pytest.raises(DefinitionError, match=r"needs more than the memory limit of 20MB"):
        run_definition(_definition(hungry), warehouse_path, WH_END, SNAPSHOTS,
                       SqlLimits(seconds=60, memory="20MB"))  # fmt: skip


def test_validation_runs_the_definition_on_the_homes_newest_events(
    example_dir: Path, warehouse_path: Path
) -> None:
    name = next(p.stem for p in sorted(example_dir.glob("*.yaml")) if p.stem != "services")
    fast = validate(example_dir, name, SqlLimits(), warehouse_path)
    assert fast.ok and fast.real_rows is not None and fast.real_rows > 0
    # A definition too slow for the home's data fails there, naming the snapshot.
    too_slow = Validation(_definition(RUNAWAY), [])
    validate_on_real_data(too_slow, warehouse_path, SqlLimits(seconds=0.5))
    assert not too_slow.ok and too_slow.real_rows is None
    assert "time limit" in too_slow.problems[-1] and "newest snapshot" in too_slow.problems[-1]


@pytest.mark.parametrize("table", ["wh.events", "wh.quarantine"])
def test_the_sql_sees_only_events_items_and_snapshots(warehouse_path: Path, table: str) -> None:
    sql = (
        "SELECT 'u1' AS user_id, s.ts AS snapshot_ts, count(*) AS user_probe_7d "
        f"FROM snapshots s, {table} GROUP BY ALL"
    )
    with pytest.raises(DefinitionError):
        run_definition(_definition(sql), warehouse_path, WH_END - 3 * DAY, [WH_END - 3 * DAY])


@pytest.mark.parametrize(
    "name", ["../evil", "Robert'); DROP", "/etc/passwd", "UserSkips", "user skips", "x", ""]
)
def test_an_invalid_definition_name_is_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(DefinitionError, match="lower-case letters, digits"):
        definition_path(tmp_path, name)
    validation = validate(tmp_path, name)
    assert not validation.ok and validation.definition is None


def test_a_valid_name_stays_in_the_folder(tmp_path: Path) -> None:
    assert definition_path(tmp_path, "user_skips") == tmp_path / "user_skips.yaml"


# 3b. Result types ---------------------------------------------------------------------------


def test_fractional_values_in_an_int64_feature_are_a_definition_error(
    warehouse_path: Path,
) -> None:
    sql = f"SELECT e.user_id, s.ts AS snapshot_ts, 0.5 AS user_probe_7d {_FROM}"
    with pytest.raises(DefinitionError, match="user_probe_7d"):
        run_definition(_definition(sql, dtype="Int64"), warehouse_path, WH_END, SNAPSHOTS)


def test_a_timestamptz_snapshot_is_converted_or_rejected(warehouse_path: Path) -> None:
    sql = f"SELECT e.user_id, s.ts::TIMESTAMPTZ AS snapshot_ts, count(*) AS user_probe_7d {_FROM}"
    try:
        frame = run_definition(_definition(sql), warehouse_path, WH_END, SNAPSHOTS)
    except DefinitionError as exc:
        assert "snapshot_ts" in str(exc)
    else:
        assert str(frame["event_timestamp"].dtype) == "datetime64[us, UTC]"


# 4. Point in time ---------------------------------------------------------------------------


def _window(condition: str) -> Callable[[dict], None]:
    def change(body: dict) -> None:
        assert GOOD_WINDOW in body["sql"]
        body["sql"] = body["sql"].replace(GOOD_WINDOW, condition)

    return change


LEAKS = {
    "at or before the snapshot": "e.event_timestamp <= s.ts",
    "a day past the snapshot": "e.event_timestamp < s.ts + INTERVAL 1 DAY",
}


@pytest.mark.parametrize("condition", list(LEAKS.values()), ids=list(LEAKS))
def test_a_leaky_window_fails_the_point_in_time_check(tmp_path: Path, condition: str) -> None:
    _write(tmp_path, "leaky", _variant("leaky", _window(condition)))
    validation = validate(tmp_path, "leaky")
    features = [p for p in validation.problems if "user_skips_7d" in p or "user_skip_rate_7d" in p]
    assert features, validation.problems
    _problem_with(validation, "leaky", "point in time")
    assert all("point in time" in p for p in features)
    assert validation.sample_rows == 0


def test_the_correct_window_passes_the_point_in_time_check(
    example_validation: Validation,
) -> None:
    assert not any("point in time" in p for p in example_validation.problems)
    assert example_validation.ok


def test_a_window_after_the_snapshot_fails_the_point_in_time_check(tmp_path: Path) -> None:
    # The day after the snapshot, from its second minute on.
    condition = (
        "e.event_timestamp >= s.ts + INTERVAL 1 MINUTE "
        "AND e.event_timestamp < s.ts + INTERVAL 1 DAY"
    )
    _write(tmp_path, "future_day", _variant("future_day", _window(condition)))
    _problem_with(validate(tmp_path, "future_day"), "future_day", "point in time")


# 5. Service versions ------------------------------------------------------------------------


def test_ranker_v1_is_built_in(tmp_path: Path) -> None:
    assert load_services(tmp_path) == {BASE_SERVICE: BASE_VIEWS}
    assert "user_long_term" in BASE_VIEWS and "request_time_context" in BASE_VIEWS
    assert resolve_service("latest", tmp_path) == BASE_SERVICE
    assert resolve_service(BASE_SERVICE, tmp_path) == BASE_SERVICE
    assert not services_path(tmp_path).exists()


def test_registering_adds_a_service_version(tmp_path: Path) -> None:
    assert add_service_version(tmp_path, "user_skips") == "ranker_v2"
    services = load_services(tmp_path)
    assert list(services) == ["ranker_v1", "ranker_v2"]
    assert services["ranker_v1"] == BASE_VIEWS
    assert services["ranker_v2"] == [*BASE_VIEWS, "user_skips"]
    on_disk = yaml.safe_load(services_path(tmp_path).read_text())
    assert list(on_disk) == ["ranker_v2"]  # the built-in version is never written

    text = services_path(tmp_path).read_text()
    assert add_service_version(tmp_path, "user_skips") == "ranker_v2"  # same family: same one
    assert services_path(tmp_path).read_text() == text

    assert add_service_version(tmp_path, "item_extra") == "ranker_v3"
    services = load_services(tmp_path)
    assert services["ranker_v3"] == [*BASE_VIEWS, "user_skips", "item_extra"]
    assert services["ranker_v2"] == [*BASE_VIEWS, "user_skips"]  # older versions kept
    assert resolve_service("latest", tmp_path) == "ranker_v3"
    assert resolve_service("ranker_v2", tmp_path) == "ranker_v2"
    assert add_service_version(tmp_path, "user_skips") == "ranker_v3"  # already served


@pytest.mark.parametrize("name", ["ranker_v9", "ranker", "Latest", ""])
def test_an_unknown_service_is_an_error(tmp_path: Path, name: str) -> None:
    add_service_version(tmp_path, "user_skips")
    with pytest.raises(DefinitionError, match="is not one of"):
        resolve_service(name, tmp_path)


def test_settings_resolve_latest_to_the_newest_version(tmp_path: Path) -> None:
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    home = tmp_path / "home"

    def service(name: str) -> str:
        features = {"definitions_dir": definitions, "service": name}
        return service_name(get_settings(home=home, features=features))

    assert service("latest") == BASE_SERVICE
    add_service_version(definitions, "user_skips")
    add_service_version(definitions, "item_extra")
    assert service("latest") == "ranker_v3"
    assert service("ranker_v2") == "ranker_v2"
    with pytest.raises(ValueError, match="ranker_v9"):
        service("ranker_v9")


# 6. Backfill to Parquet ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def computed(
    tmp_path_factory: pytest.TempPathFactory, example_dir: Path, warehouse_path: Path
) -> tuple[Path, int]:
    features_dir = tmp_path_factory.mktemp("features")
    definition = load_definition(example_dir, "user_skips")
    rows = compute_definition(definition, warehouse_path, features_dir, WH_END, SNAPSHOTS)
    return features_dir, rows


def test_compute_definition_writes_typed_parquet(computed: tuple[Path, int]) -> None:
    features_dir, rows = computed
    path = features_dir / "user_skips.parquet"
    assert sorted(p.name for p in features_dir.iterdir()) == ["user_skips.parquet"]  # no .tmp
    schema = pq.read_schema(path)
    assert schema.field("user_id").type == pa.string()
    assert schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("user_skip_rate_7d").type == pa.float64()
    assert schema.field("user_skips_7d").type == pa.int64()
    assert schema.names == ["user_id", "event_timestamp", "user_skip_rate_7d", "user_skips_7d"]
    assert rows > 0 and pq.read_metadata(path).num_rows == rows

    frame = pd.read_parquet(path)
    assert str(frame["event_timestamp"].dt.tz) == "UTC"
    times = set(frame["event_timestamp"].dt.tz_convert(None))
    assert times == set(SNAPSHOTS)
    assert not frame.duplicated(["user_id", "event_timestamp"]).any()
    assert frame["user_id"].notna().all()


def test_computed_values_match_the_warehouse(
    computed: tuple[Path, int], warehouse_path: Path
) -> None:
    features_dir, _ = computed
    frame = pd.read_parquet(features_dir / "user_skips.parquet")
    snapshot = SNAPSHOTS[-1]
    with warehouse(warehouse_path, read_only=True) as con:
        expected = dict(
            con.execute(
                "SELECT user_id, count(*) FILTER (WHERE event_type = 'skip') FROM events "
                "WHERE event_timestamp < ? AND event_timestamp >= ? GROUP BY 1",
                [snapshot, snapshot - 7 * DAY],
            ).fetchall()
        )
    at = frame[frame["event_timestamp"].dt.tz_convert(None) == snapshot]
    assert dict(zip(at["user_id"], at["user_skips_7d"], strict=True)) == expected
    assert sum(expected.values()) > 0


def test_compute_definition_respects_as_of(example_dir: Path, warehouse_path: Path) -> None:
    definition = load_definition(example_dir, "user_skips")
    snapshot = [WH_END - DAY]
    full = run_definition(definition, warehouse_path, WH_END, snapshot)
    cut = run_definition(definition, warehouse_path, WH_END - 3 * DAY, snapshot)
    # Cut three days before the snapshot, the 7-day window loses its last three days.
    assert cut["user_skips_7d"].sum() < full["user_skips_7d"].sum()


def test_compute_definition_overwrites_the_previous_backfill(
    tmp_path: Path, example_dir: Path, warehouse_path: Path
) -> None:
    definition = load_definition(example_dir, "user_skips")
    first = compute_definition(definition, warehouse_path, tmp_path, WH_END, SNAPSHOTS)
    again = compute_definition(definition, warehouse_path, tmp_path, WH_END, SNAPSHOTS[-1:])
    assert 0 < again < first
    assert pq.read_metadata(tmp_path / "user_skips.parquet").num_rows == again


# 7. Catalogue -------------------------------------------------------------------------------


def test_the_catalogue_lists_builtin_and_registered_features(
    tmp_path: Path, computed: tuple[Path, int]
) -> None:
    definitions = tmp_path / "definitions"
    _write(definitions, "user_skips", EXAMPLE.read_text())
    _write(definitions, "unregistered", _variant("unregistered", _rename_feature("user_x_7d")))
    add_service_version(definitions, "user_skips")

    empty = tmp_path / "no_features"
    empty.mkdir()
    table = catalogue(empty, definitions).set_index("feature")
    assert table.index.is_unique
    builtin = table.loc["user_clicks_7d"]
    assert (builtin["family"], builtin["owner"], builtin["type"]) == (
        "user_short_term",
        "built-in",
        "Int64",
    )
    skip_rate = table.loc["user_skip_rate_7d"]
    assert skip_rate["family"] == "user_skips" and skip_rate["entity"] == "user"
    assert skip_rate["owner"] == "data-eng@example.com"
    assert skip_rate["type"] == "Float64"
    assert skip_rate["description"].startswith("Skips per play-or-skip")
    assert table.loc["user_skips_7d", "type"] == "Int64"
    assert math.isnan(skip_rate["null_rate"]) and math.isnan(builtin["null_rate"])
    assert "context_hour_of_day" in table.index
    assert "user_x_7d" not in table.index  # only registered families are listed

    features_dir, _ = computed
    filled = catalogue(features_dir, definitions).set_index("feature")
    for name in ("user_skip_rate_7d", "user_skips_7d"):
        assert 0.0 <= filled.loc[name, "null_rate"] <= 1.0
        newest = pd.Timestamp(filled.loc[name, "newest_snapshot"])
        assert newest.tz_convert(None) == SNAPSHOTS[-1]
    assert filled.loc["user_skips_7d", "null_rate"] == 0.0  # a count is never null
    assert math.isnan(filled.loc["user_clicks_7d", "null_rate"])  # no built-in file here


def test_the_catalogue_of_a_fresh_folder_has_only_builtins(tmp_path: Path) -> None:
    table = catalogue(tmp_path, tmp_path)
    assert set(table["owner"]) == {"built-in"}
    assert len(table) > 30
    assert table["feature"].is_unique
