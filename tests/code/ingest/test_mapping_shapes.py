"""Mappings read logs in any shape: format and delimiter, encoding, date formats, one-hot
categories, constants; a bad optional field is nulled and counted, its row kept."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from ranking.errors import IngestError
from ranking.ingest.contract import LoadReport, check_readable, ingest
from ranking.ingest.sources import Source, resolve_source
from ranking.schema import DEFAULT_LABEL_WEIGHTS
from ranking.warehouse import warehouse
from tests.conftest import NOW

TYPES = sorted(DEFAULT_LABEL_WEIGHTS)

#: A MovieLens-100k-like ratings log: user, item, stars, Unix seconds; tab-separated.
RATINGS = "1\t10\t5\t881250949\n2\t10\t3\t891717742\n2\t20\t4\t891717800\n3\t30\t1\t891717900\n"

#: A MovieLens-100k-like catalogue in latin-1: id|title|date|video date|url|4 genre flags.
MOVIES = (
    "10|Café Noir (1995)|01-Jan-1995||http://x|0|1|0|1\n"
    "20|Naïve (1996)|not a date||http://x|0|0|1|0\n"
    "30|Zéro (1997)|||http://x|1|0|0|0\n"
    "40|Rien (1998)|15-Mar-1998||http://x|0|0|0|0\n"
).encode("latin-1")

ML100K_MAPPING = """\
events:
  format: csv
  delimiter: "\\t"
  header: false
  columns: {user_id: 0, item_id: 1, value: 2, event_timestamp: 3}
  constants: {event_type: rating}
  timestamp_unit: s
items:
  format: csv
  delimiter: "|"
  encoding: latin-1
  header: false
  columns: {item_id: 0, created_at: 2}
  timestamp_format: "%d-%b-%Y"
  category_flags: {5: unknown, 6: Action, 7: Comédie, 8: Drama}
"""


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _load(db: Path, source: Source) -> dict[str, LoadReport]:
    reports = ingest(db, source.events, TYPES, NOW, items_path=source.items,
                     events_reader=source.events_reader, items_reader=source.items_reader,
                     bad_optional=source.bad_optional)  # fmt: skip
    assert all(r.balanced for r in reports)
    return {r.target: r for r in reports}


def _fetch(db: Path, sql: str) -> list[tuple]:
    with warehouse(db, read_only=True) as con:
        return con.execute(sql).fetchall()


def _counts(report: LoadReport) -> tuple[int, int, int, int]:
    return report.read, report.accepted, report.quarantined, report.duplicates


def test_movielens_100k_shape_loads(tmp_path: Path) -> None:
    ratings = _write(tmp_path / "u.data", RATINGS)
    movies = _write(tmp_path / "u.item", MOVIES)
    mapping = _write(tmp_path / "ml.yaml", ML100K_MAPPING)
    db = tmp_path / "w.duckdb"
    reports = _load(db, resolve_source(ratings, movies, mapping))
    items, events = reports["items"], reports["events"]
    # the unparseable date is nulled and counted; its row is kept; an empty one is no fault
    assert _counts(items) == (4, 4, 0, 0) and items.nulled == {"created_at": 1}
    assert _fetch(db, "SELECT item_id, category, primary_category, created_at FROM items "
                      "ORDER BY 1") == [
        ("10", "Action|Drama", "Action", datetime(1995, 1, 1)),
        ("20", "Comédie", "Comédie", None),
        ("30", "unknown", "unknown", None),
        ("40", None, None, datetime(1998, 3, 15)),
    ]  # fmt: skip
    assert _counts(events) == (4, 4, 0, 0) and events.nulled == {}
    assert _fetch(db, "SELECT user_id, item_id, event_type, value, event_timestamp FROM events "
                      "ORDER BY event_timestamp LIMIT 1") == [
        ("1", "10", "rating", 5.0, datetime(1997, 12, 4, 15, 55, 49)),
    ]  # fmt: skip
    assert items.summary().endswith("+ duplicates 0 (1 bad optional field nulled)")
    assert items.details() == ["nulled, row kept: created_at: 1"]


def test_multi_character_delimiter(tmp_path: Path) -> None:
    log = _write(tmp_path / "ratings.dat", "1::10::5::978300760\n1::20::3::978302109\n")
    mapping = _write(
        tmp_path / "m.yaml",
        'events:\n  format: csv\n  delimiter: "::"\n  header: false\n'
        "  columns: {user_id: 0, item_id: 1, value: 2, event_timestamp: 3}\n"
        "  constants: {event_type: rating}\n  timestamp_unit: s\n",
    )
    db = tmp_path / "w.duckdb"
    assert _counts(_load(db, resolve_source(log, mapping_path=mapping))["events"]) == (2, 2, 0, 0)
    assert _fetch(db, "SELECT item_id, value FROM events ORDER BY 1") == [("10", 5.0), ("20", 3.0)]


def test_tsv_suffix_is_tab_separated_without_format(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.tsv", "u\ti\tt\tts\nu1\ti,1\tview\t1700000000\n")
    mapping = _write(
        tmp_path / "m.yaml",
        "events:\n  columns: {user_id: u, item_id: i, event_type: t, event_timestamp: ts}\n",
    )
    db = tmp_path / "w.duckdb"
    assert _load(db, resolve_source(log, mapping_path=mapping))["events"].accepted == 1
    assert _fetch(db, "SELECT user_id, item_id FROM events") == [("u1", "i,1")]


def test_a_folder_with_a_declared_format_loads_every_file(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    _write(folder / "a.log", "u1|i1|1700000000\n")
    _write(folder / "b.txt", "u2|i2|1700000100\n")
    _write(folder / ".hidden", "junk\n")
    mapping = _write(
        tmp_path / "m.yaml",
        'events:\n  format: csv\n  delimiter: "|"\n  header: false\n'
        "  columns: {user_id: 0, item_id: 1, event_timestamp: 2}\n"
        "  constants: {event_type: view}\n  timestamp_unit: s\n",
    )
    source = resolve_source(folder, mapping_path=mapping)
    assert [p.name for p in source.events] == ["a.log", "b.txt"]
    events = _load(tmp_path / "w.duckdb", source)["events"]
    assert _counts(events) == (2, 2, 0, 0)


def test_unknown_suffix_without_format_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    log = _write(tmp_path / "u.data", RATINGS)
    mapping = _write(tmp_path / "m.yaml", ML100K_MAPPING.replace("  format: csv\n", "", 1))
    source = resolve_source(log, mapping_path=mapping)
    with pytest.raises(IngestError) as info:
        check_readable(source.events, source.events_reader)
    message = str(info.value)
    assert message.startswith(f"{log}: unknown format '.data'") and "\n" not in message
    assert "`format:`" in message and "events section" in message


def test_latin1_categories_decode_and_utf8_default_sets_the_lines_aside(tmp_path: Path) -> None:
    catalogue = _write(tmp_path / "items.csv", "sku;cat\ni1;Comédie|Drame\ni2;Séries\n"
                       .encode("latin-1"))  # fmt: skip
    log = _write(tmp_path / "log.csv", "u,i,t,ts\nu1,i1,view,1700000000\n")
    text = (
        "events:\n  columns: {user_id: u, item_id: i, event_type: t, event_timestamp: ts}\n"
        'items:\n  delimiter: ";"\n  columns: {item_id: sku, category: cat}\n'
    )
    db = tmp_path / "w.duckdb"
    plain = _write(tmp_path / "utf8.yaml", text)
    items = _load(db, resolve_source(log, catalogue, plain))["items"]
    assert _counts(items) == (2, 0, 2, 0)
    assert items.reasons == {"malformed CSV line: invalid encoding": 2}
    latin = _write(tmp_path / "latin.yaml", text + "  encoding: iso-8859-1\n")
    items = _load(db, resolve_source(log, catalogue, latin))["items"]
    assert _counts(items) == (2, 2, 0, 0)
    assert _fetch(db, "SELECT item_id, category FROM items ORDER BY 1") == [
        ("i1", "Comédie|Drame"),
        ("i2", "Séries"),
    ]


def test_event_timestamp_format_parses_and_a_bad_one_quarantines(tmp_path: Path) -> None:
    log = _write(
        tmp_path / "log.csv",
        "u,i,t,ts\nu1,i1,view,01/03/2024 10:30\nu1,i2,view,2024-03-01\nu1,i3,view,\n",
    )
    zoned = _write(tmp_path / "zoned.csv", "u,i,t,ts\nu2,i1,view,01/03/2024 11:30 +0100\n")
    mapping = "events:\n  columns: {{user_id: u, item_id: i, event_type: t, event_timestamp: ts}}\n"
    db = tmp_path / "w.duckdb"
    for path, fmt in ((log, "%d/%m/%Y %H:%M"), (zoned, "%d/%m/%Y %H:%M %z")):
        m = _write(tmp_path / f"{path.stem}.yaml",
                   mapping.format() + f'  timestamp_format: "{fmt}"\n')  # fmt: skip
        events = _load(db, resolve_source(path, mapping_path=m))["events"]
    # the second file's report; the first is judged by what it stored
    assert _counts(events) == (1, 1, 0, 0)
    assert _fetch(db, "SELECT user_id, item_id, event_timestamp FROM events ORDER BY 1") == [
        ("u1", "i1", datetime(2024, 3, 1, 10, 30)),
        ("u2", "i1", datetime(2024, 3, 1, 10, 30)),  # +0100 read as such, stored in UTC
    ]
    assert _fetch(db, "SELECT reason, count(*) FROM quarantine GROUP BY 1 ORDER BY 1") == [
        ("missing event_timestamp", 1),
        ("unparseable event_timestamp", 1),  # required: the row goes, with the reason
    ]


BAD_FIELDS_LOG = """\
u,i,t,ts,v,pos,sess
u1,i1,view,1700000000,abc,1,s1
u1,i2,view,1700000001,-2,-1,s1
u1,i3,view,1700000002,inf,1.5,s1
u1,i4,view,1700000003,2.5,3,s1
,i5,view,1700000004,1,1,s1
"""

BAD_FIELDS_MAPPING = """\
events:
  columns: {user_id: u, item_id: i, event_type: t, event_timestamp: ts, value: v,
            position: pos, session_id: sess}
"""


def test_bad_optional_event_fields_are_nulled_and_counted(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", BAD_FIELDS_LOG)
    mapping = _write(tmp_path / "m.yaml", BAD_FIELDS_MAPPING)
    db = tmp_path / "w.duckdb"
    events = _load(db, resolve_source(log, mapping_path=mapping))["events"]
    assert _counts(events) == (5, 4, 1, 0)
    assert events.reasons == {"missing user_id": 1}  # a required field still quarantines
    assert events.nulled == {"value": 3, "position": 2}
    assert _fetch(db, "SELECT item_id, value, position, session_id FROM events ORDER BY 1") == [
        ("i1", None, 1, "s1"),
        ("i2", None, None, "s1"),
        ("i3", None, None, "s1"),
        ("i4", 2.5, 3, "s1"),
    ]
    assert events.details() == [
        "quarantined: missing user_id: 1",
        "nulled, row kept: position: 2",
        "nulled, row kept: value: 3",
    ]


def test_quarantine_row_keeps_the_contract_rule(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", BAD_FIELDS_LOG)
    mapping = _write(tmp_path / "m.yaml", BAD_FIELDS_MAPPING
                     + "bad_optional_fields: quarantine_row\n")  # fmt: skip
    events = _load(tmp_path / "w.duckdb", resolve_source(log, mapping_path=mapping))["events"]
    assert _counts(events) == (5, 1, 4, 0) and events.nulled == {}
    assert events.reasons == {
        "missing user_id": 1,
        "negative value": 1,
        "value is not a number": 1,
        "value is not finite": 1,
    }


def test_bad_optional_item_fields_are_nulled_and_counted(tmp_path: Path) -> None:
    catalogue = _write(
        tmp_path / "items.csv",
        "sku,price,stock,added\ni1,abc,maybe,2024-01-01\ni2,-3,no,later\ni3,9.5,yes,\n,1,1,\n",
    )
    log = _write(tmp_path / "log.csv", "u,i,t,ts\nu1,i1,view,1700000000\n")
    mapping = _write(
        tmp_path / "m.yaml",
        "events:\n  columns: {user_id: u, item_id: i, event_type: t, event_timestamp: ts}\n"
        "items:\n  columns: {item_id: sku, price: price, available: stock, created_at: added}\n",
    )
    db = tmp_path / "w.duckdb"
    items = _load(db, resolve_source(log, catalogue, mapping))["items"]
    assert _counts(items) == (4, 3, 1, 0) and items.reasons == {"missing item_id": 1}
    assert items.nulled == {"price": 2, "available": 1, "created_at": 1}
    assert _fetch(db, "SELECT item_id, price, available, created_at FROM items ORDER BY 1") == [
        ("i1", None, True, datetime(2024, 1, 1)),  # a nulled 'available' takes the default
        ("i2", None, False, None),
        ("i3", 9.5, True, None),
    ]


def test_category_flags_in_the_events_make_the_catalogue(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", "u,i,ts,toys,books\nu1,i1,1700000000,1,true\n"
                 "u1,i2,1700000001,0,0\n")  # fmt: skip
    mapping = _write(
        tmp_path / "m.yaml",
        "events:\n  columns: {user_id: u, item_id: i, event_timestamp: ts}\n"
        "  constants: {event_type: click}\n  category_flags: {toys: Toys, books: Books}\n",
    )
    db = tmp_path / "w.duckdb"
    reports = _load(db, resolve_source(log, mapping_path=mapping))
    assert reports["items"].accepted == 2 and reports["events"].accepted == 2
    assert _fetch(db, "SELECT item_id, category FROM items ORDER BY 1") == [
        ("i1", "Toys|Books"),
        ("i2", None),
    ]


NAMED = "events:\n  columns: {user_id: u, item_id: i, event_type: t, event_timestamp: ts}\n"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param(NAMED + "  encoding: cp1252\n", "encoding", id="unknown-encoding"),
        pytest.param(NAMED + '  delimiter: "abcde"\n', "delimiter", id="delimiter-over-4"),
        pytest.param(NAMED + "  delimiter: '\"'\n", "delimiter", id="quote-as-delimiter"),
        pytest.param(NAMED + "  format: xlsx\n", "format", id="unknown-format"),
        pytest.param(NAMED + '  timestamp_format: "%Q"\n', "timestamp_format", id="bad-strptime"),
        pytest.param(
            NAMED + '  timestamp_format: "%Y"\n  timestamp_unit: s\n',
            "timestamp_format",
            id="format-and-unit",
        ),
        pytest.param(
            NAMED + "  format: parquet\n  encoding: latin-1\n", "encoding", id="encoding-on-parquet"
        ),
        pytest.param(
            NAMED + "  category_flags: {5: 'a|b'}\n", "category_flags", id="pipe-in-flag-name"
        ),
        pytest.param(
            NAMED + "  category_flags: {-1: a}\n", "category_flags", id="negative-flag-position"
        ),
        pytest.param(
            NAMED + "items:\n  columns: {item_id: 0, category: 1}\n  category_flags: {2: a}\n",
            "category_flags",
            id="category-and-flags",
        ),
        pytest.param(NAMED + "bad_optional_fields: drop\n", "bad_optional_fields", id="bad-policy"),
    ],
)
def test_invalid_new_keys_name_the_file_and_the_field(tmp_path: Path, text: str, field: str):
    mapping = _write(tmp_path / "bad_mapping.yaml", text)
    with pytest.raises(IngestError) as info:
        resolve_source(tmp_path / "log.csv", mapping_path=mapping)
    message = str(info.value)
    assert field in message and str(mapping) in message and "\n" not in message


def test_items_section_without_items_file_reads_only_events(tmp_path: Path) -> None:
    log = _write(tmp_path / "u.data", RATINGS)
    mapping = _write(tmp_path / "ml.yaml", ML100K_MAPPING)
    source = resolve_source(log, mapping_path=mapping)
    assert source.items is None and source.bad_optional == "null_field"
    assert check_readable(source.events, source.events_reader) == [log]


def test_the_readme_example_mapping_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```")[0] for b in readme.split("```yaml\n")[1:]]
    example = next(b for b in blocks if "u.data" in b)
    mapping = _write(tmp_path / "ml100k.yaml", example)
    movies = MOVIES.replace(b"\n", b"|1\n")  # five genre flags, as in the example
    source = resolve_source(_write(tmp_path / "u.data", RATINGS),
                            _write(tmp_path / "u.item", movies), mapping)  # fmt: skip
    db = tmp_path / "w.duckdb"
    reports = _load(db, source)
    assert reports["items"].nulled == {"created_at": 1}
    assert (reports["items"].accepted, reports["events"].accepted) == (4, 4)
    assert _fetch(db, "SELECT category FROM items WHERE item_id = '10'") == [
        ("Action|Animation|Children",)
    ]
