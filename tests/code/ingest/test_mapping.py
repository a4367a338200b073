"""Column mappings: another layout's log lands in the contract, bad rows and bad mappings don't."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from cli.common import console
from ranking.errors import IngestError
from ranking.ingest.contract import LoadReport, ingest
from ranking.ingest.sources import Source, resolve_source
from ranking.schema import DEFAULT_LABEL_WEIGHTS
from ranking.warehouse import warehouse
from tests.conftest import NOW

TYPES = sorted(DEFAULT_LABEL_WEIGHTS)

#: user,item,category,behaviour,timestamp; no header row; Unix seconds.
ECOMMERCE_LOG = """\
u1,i1,books,pv,1700000000
u1,i1,books,cart,1700000060
u2,i2,toys,fav,1700000120
u2,i2,toys,hover,1700000180
u3,i3,games|toys,buy,1700000240
u1,i1,books,pv,1700000000
u3,i3,games|toys,hover,1700000300
u2,i2,toys,PV,1700000400
"""

ECOMMERCE_MAPPING = """\
events:
  header: false
  columns: {user_id: 0, item_id: 1, category: 2, event_type: 3, event_timestamp: 4}
  event_types: {pv: view, cart: add_to_cart, fav: click, buy: purchase}
  timestamp_unit: s
"""

#: A minimal mapping by column name, for the error cases.
NAMED = "events:\n  columns: {user_id: u, item_id: i, event_type: t, event_timestamp: ts}\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _load(
    warehouse_path: Path, source: Source, now: datetime = NOW, **options
) -> dict[str, LoadReport]:
    reports = ingest(
        warehouse_path,
        source.events,
        TYPES,
        now,
        items_path=source.items,
        events_reader=source.events_reader,
        items_reader=source.items_reader,
        **options,
    )
    return {r.target: r for r in reports}


def _fetch(warehouse_path: Path, sql: str) -> list[tuple]:
    with warehouse(warehouse_path, read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture
def ecommerce(tmp_path: Path) -> tuple[Path, Path, dict[str, LoadReport]]:
    log = _write(tmp_path / "log.csv", ECOMMERCE_LOG)
    mapping = _write(tmp_path / "mapping.yaml", ECOMMERCE_MAPPING)
    db = tmp_path / "w.duckdb"
    source = resolve_source(log, mapping_path=mapping)
    assert source.kind == "mapped"
    return log, db, _load(db, source)


def test_mapped_event_types_land_and_counts_add_up(ecommerce) -> None:
    _, db, reports = ecommerce
    events = reports["events"]
    assert (events.read, events.accepted, events.quarantined, events.duplicates) == (8, 5, 2, 1)
    assert events.balanced
    assert events.reasons == {"unknown event_type hover": 2}
    stored = _fetch(
        db,
        "SELECT user_id, item_id, event_type, event_timestamp FROM events ORDER BY event_timestamp",
    )
    assert stored == [
        ("u1", "i1", "view", datetime(2023, 11, 14, 22, 13, 20)),
        ("u1", "i1", "add_to_cart", datetime(2023, 11, 14, 22, 14, 20)),
        ("u2", "i2", "click", datetime(2023, 11, 14, 22, 15, 20)),
        ("u3", "i3", "purchase", datetime(2023, 11, 14, 22, 17, 20)),
        ("u2", "i2", "view", datetime(2023, 11, 14, 22, 20)),  # 'PV': names ignore case
    ]


def test_unknown_source_event_is_quarantined_under_the_original_file_and_row(ecommerce) -> None:
    log, db, _ = ecommerce
    rows = _fetch(
        db,
        "SELECT target, source_file, source_row, reason, record FROM quarantine "
        "ORDER BY source_row",
    )
    # the log lies in the warehouse's folder (the home): named relative to it
    assert [r[:4] for r in rows] == [
        ("events", log.name, 4, "unknown event_type hover"),
        ("events", log.name, 7, "unknown event_type hover"),
    ]
    assert '"user_id":"u2"' in rows[0][4] and '"item_id":"i2"' in rows[0][4]


def test_items_are_derived_from_the_category_column(ecommerce) -> None:
    _, db, reports = ecommerce
    assert reports["items"].accepted == 3 and reports["items"].balanced
    items = _fetch(db, "SELECT item_id, category, primary_category FROM items ORDER BY 1")
    assert items == [
        ("i1", "books", "books"),
        ("i2", "toys", "toys"),
        ("i3", "games|toys", "games"),
    ]


def test_reloading_a_mapped_log_adds_nothing(ecommerce, tmp_path: Path) -> None:
    log, db, _ = ecommerce
    tables = (
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM quarantine), "
        "(SELECT count(*) FROM items)"
    )
    before = _fetch(db, tables)
    again = _load(db, resolve_source(log, mapping_path=tmp_path / "mapping.yaml"))["events"]
    assert _fetch(db, tables) == before == [(5, 2, 3)]
    assert (again.read, again.accepted, again.quarantined, again.duplicates) == (8, 0, 2, 6)
    assert again.balanced


def test_iso_and_millisecond_timestamps_parse_to_the_same_instant(tmp_path: Path) -> None:
    iso = _write(
        tmp_path / "iso.csv",
        "customer,product,action,when\n"
        "u1,i1,pv,2024-03-01T10:00:00Z\n"
        "u1,i2,pv,2024-03-01T11:00:00+01:00\n"
        "u1,i3,pv,2024-03-01 10:00:00\n",
    )
    ms = _write(
        tmp_path / "ms.csv",
        "customer,product,action,when\n"
        "u2,i1,pv,1709287200000\n"
        "u2,i2,pv,1709287200123\n"
        "u2,i3,pv,86400000\n",
    )
    mapping = (
        "events:\n  columns: {{user_id: customer, item_id: product, event_type: action, "
        "event_timestamp: when}}\n  event_types: {{pv: view}}\n  timestamp_unit: {}\n"
    )
    db = tmp_path / "w.duckdb"
    for log, unit in ((iso, "iso"), (ms, "ms")):
        m = _write(tmp_path / f"{unit}.yaml", mapping.format(unit))
        # 1970 is implausible by default: the earliest plausible time is lowered here
        report = _load(db, resolve_source(log, mapping_path=m),
                       earliest=datetime(1960, 1, 1))["events"]  # fmt: skip
        assert (report.read, report.accepted) == (3, 3), report
    stored = dict(
        ((u, i), t)
        for u, i, t in _fetch(db, "SELECT user_id, item_id, event_timestamp FROM events")
    )
    ten = datetime(2024, 3, 1, 10)
    assert stored[("u1", "i1")] == stored[("u1", "i2")] == stored[("u1", "i3")] == ten
    assert stored[("u2", "i1")] == ten
    assert stored[("u2", "i2")] == datetime(2024, 3, 1, 10, 0, 0, 123000)
    # Too small to pass for milliseconds by magnitude: the declared unit decides.
    assert stored[("u2", "i3")] == datetime(1970, 1, 2)


def test_quotes_in_mapped_values_are_data_not_sql(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", "u,i,t,ts\nu1,i1,pv,1700000000\n")
    mapping = _write(
        tmp_path / "m.yaml",
        NAMED + '  event_types: {pv: "view\'); DROP TABLE events; --"}\n  delimiter: ","\n',
    )
    db = tmp_path / "w.duckdb"
    report = _load(db, resolve_source(log, mapping_path=mapping))["events"]
    assert report.quarantined == 1
    assert list(report.reasons) == ["unknown event_type view'); DROP TABLE events; --"]
    assert _fetch(db, "SELECT count(*) FROM events") == [(0,)]  # the table is still there


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param(
            NAMED.replace("}", ", colour: c}"),
            "colour",
            id="unknown-contract-column",
        ),
        pytest.param(
            NAMED.replace("user_id: u, ", ""),
            "user_id",
            id="missing-user_id",
        ),
        pytest.param(
            NAMED.replace("user_id: u", 'user_id: "u\'; DROP TABLE events; --"'),
            "user_id",
            id="quote-in-source-name",
        ),
        pytest.param(
            NAMED.replace("item_id: i", "item_id: 'i; SELECT 1'"),
            "item_id",
            id="semicolon-in-source-name",
        ),
        pytest.param(NAMED + "  timestamp_unit: minutes\n", "timestamp_unit", id="bad-unit"),
    ],
)
def test_invalid_mapping_names_the_file_and_the_field(tmp_path: Path, text: str, field: str):
    mapping = _write(tmp_path / "bad_mapping.yaml", text)
    with pytest.raises(IngestError) as info:
        resolve_source(tmp_path / "log.csv", mapping_path=mapping)
    message = str(info.value)
    assert field in message
    assert str(mapping) in message
    assert "\n" not in message


def test_headerless_log_with_ten_or_more_columns(tmp_path: Path) -> None:
    extra = ",x" * 6  # 11 columns in all
    log = _write(tmp_path / "wide.csv", f"u1,i1,books,pv,1700000000{extra}\n")
    mapping = _write(tmp_path / "m.yaml", ECOMMERCE_MAPPING)
    report = _load(tmp_path / "w.duckdb", resolve_source(log, mapping_path=mapping))["events"]
    assert report.accepted == 1


@pytest.mark.parametrize("kind", ["mapped", "contract"])
def test_out_of_range_epoch_is_quarantined_not_fatal(tmp_path: Path, kind: str) -> None:
    log = _write(
        tmp_path / "log.csv",
        "user_id,item_id,event_type,event_timestamp\n"
        "u1,i1,view,1700000000000\nu1,i2,view,99999999999999999999\n",
    )
    mapping = None
    if kind == "mapped":
        mapping = _write(
            tmp_path / "m.yaml",
            "events:\n  columns: {user_id: user_id, item_id: "
            "item_id, event_type: event_type, event_timestamp: event_timestamp}\n"
            "  timestamp_unit: ms\n",
        )
    report = _load(tmp_path / "w.duckdb", resolve_source(log, mapping_path=mapping))["events"]
    assert (report.accepted, report.quarantined) == (1, 1)
    assert set(report.reasons) <= {"unparseable event_timestamp", "future event_timestamp"}


# The command line -------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI exports settings to the environment: undo that after the test."""
    for name in ("RANKING_HOME", "PREFECT_HOME"):
        monkeypatch.delenv(name, raising=False)
    # Rich wraps at 80 columns off a terminal; judge the message, not the wrapping.
    monkeypatch.setattr(console, "width", 1000)


def _cli_ingest(tmp_path: Path, mapping_text: str):
    log = _write(tmp_path / "log.csv", "u,i,t,ts\nu1,i1,view,1700000000\n")
    mapping = _write(tmp_path / "bad_mapping.yaml", mapping_text)
    home = tmp_path / "home"
    result = runner.invoke(
        app, ["ingest", str(log), "--mapping", str(mapping), "--home", str(home)]
    )
    return result, mapping, home


def test_cli_bad_mapping_exits_2_with_one_line(tmp_path: Path, cli_env) -> None:
    text = NAMED.replace("item_id: i", "item_id: 'i; DROP TABLE events'")
    result, mapping, home = _cli_ingest(tmp_path, text)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:") and str(mapping) in lines[0] and "item_id" in lines[0]
    assert "Traceback" not in result.output
    assert not (home / "warehouse.duckdb").exists()


def test_cli_unparseable_mapping_is_one_line(tmp_path: Path, cli_env) -> None:
    result, mapping, _ = _cli_ingest(tmp_path, "events: [\n")
    assert result.exit_code == 2, result.output
    assert str(mapping) in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
