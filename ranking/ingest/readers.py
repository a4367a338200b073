"""Reading input files as SQL relations: formats, explicit text types, malformed lines.

Every reader turns a file into a relation of text columns (types are the contract's job,
in :mod:`ranking.ingest.contract`): CSV with standard quoting and its malformed lines set
aside, JSON read with explicit types, Parquet as it is with timestamps normalised to UTC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ranking.errors import IngestError
from ranking.schema import EVENT_COLUMNS, ITEM_COLUMNS
from ranking.warehouse import quote

SUPPORTED_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".jsonl": "json", ".ndjson": "json",
                      ".json": "json"}  # fmt: skip

#: Turns a file into a SQL relation with contract columns (the plain reader, or a mapping's).
Reader = Callable[[Path], str]


def list_input_files(
    path: Path, suffixes: Iterable[str] | None = tuple(SUPPORTED_SUFFIXES)
) -> list[Path]:
    """The readable files at ``path``: the file itself (whatever its suffix: the reader
    judges its format), or a folder's files with one of ``suffixes`` (with None, every file
    not hidden, for a mapping that declares its format), sorted."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    known = None if suffixes is None else {s.lower() for s in suffixes}
    files = sorted(
        p for p in path.iterdir()
        if p.is_file() and (p.suffix.lower() in known if known is not None
                            else not p.name.startswith("."))
    )  # fmt: skip
    if not files:
        kinds = "files" if known is None else f"{', '.join(sorted(known))} files"
        raise IngestError(f"{path}: folder holds no {kinds}")
    return files


def file_format(path: Path) -> str:
    """A contract file's format from its suffix; one line naming the file if unknown."""
    kind = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise IngestError(
            f"{path}: unsupported format {path.suffix!r}; use one of "
            f"{', '.join(sorted(SUPPORTED_SUFFIXES))}, or a mapping (--mapping) with `format:`"
        )
    return kind


def read_json_sql(path: Path, columns: Iterable[str]) -> str:
    """JSON Lines (or one JSON array of records) with every named key read as text.

    Typed explicitly: left to infer, DuckDB types a key holding numbers in some rows and
    strings in others as JSON, and its text keeps the quotes (``"u2"``)."""
    typed = ", ".join(f"{quote(c)}: 'VARCHAR'" for c in dict.fromkeys(columns))
    return f"read_json({quote(str(path))}, format = 'auto', columns = {{{typed}}})"


#: What is trimmed from both ends of every field (SQL): spaces, tabs and line breaks, and
#: nothing else (DuckDB's plain ``trim`` also drops Unicode spaces such as U+00A0, which
#: would change an id without a word).
PADDING = "' ' || chr(9) || chr(10) || chr(13)"

#: Where DuckDB puts the lines of a CSV file it could not parse (see :func:`read_csv_sql`).
CSV_REJECTS = "csv_rejects"


def read_csv_sql(
    path: Path, header: bool = True, delimiter: str = ",", encoding: str = "utf-8"
) -> str:
    """A CSV file (comma-separated, or ``delimiter``: up to 4 bytes, ``::`` included; in
    ``encoding``: utf-8, utf-16 or latin-1) as text columns, with standard
    quoting (``"``, doubled to escape, so a quoted field may hold the delimiter or a
    newline) whatever the sniffer guesses from its first rows; a line that does not parse
    (too many or too few fields, not valid in the encoding) goes to :data:`CSV_REJECTS` instead of
    failing the whole file."""
    return (
        f"read_csv({quote(str(path))}, all_varchar = true, header = {str(header).lower()}"
        f", delim = {quote(delimiter)}, encoding = {quote(encoding)}, quote = '\"'"
        ", escape = '\"', store_rejects = true, "
        f"rejects_table = '{CSV_REJECTS}', rejects_scan = '{CSV_REJECTS}_scans')"
    )


def plain_reader(path: Path) -> str:
    kind = file_format(path)
    p = quote(str(path))
    if kind == "csv":
        return read_csv_sql(path)
    if kind == "parquet":
        return f"read_parquet({p})"
    return read_json_sql(path, [*EVENT_COLUMNS, *ITEM_COLUMNS])


def source_types(
    con: duckdb.DuckDBPyConnection, path: Path, reader: Reader = plain_reader
) -> dict[str, str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {reader(path)}").fetchall()
    except duckdb.Error as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise IngestError(f"{path}: cannot be read: {first_line}") from None
    return {name.lower(): str(dtype).upper() for name, dtype, *_ in rows}


def _timestamp_expr(col: str, dtype: str) -> str:
    """Parse a timestamp to naive UTC, whatever form the file holds it in."""
    if "WITH TIME ZONE" in dtype or dtype.startswith("TIMESTAMPTZ"):  # any precision
        return f"({col}::TIMESTAMPTZ AT TIME ZONE 'UTC')::TIMESTAMP"
    if dtype.startswith("TIMESTAMP") or dtype == "DATE":
        return f"{col}::TIMESTAMP"
    text = f"trim({col}::VARCHAR, {PADDING})"
    # Unix seconds, or milliseconds when the number is too large to be seconds.
    epoch = (
        f"CASE WHEN regexp_full_match({text}, '[0-9]+(\\.[0-9]+)?') THEN "
        f"(try(to_timestamp(CASE WHEN {text}::DOUBLE > 1e11 THEN {text}::DOUBLE / 1000 "
        f"ELSE {text}::DOUBLE END)) AT TIME ZONE 'UTC')::TIMESTAMP END"
    )
    return f"coalesce(({epoch}), (try_cast({text} AS TIMESTAMPTZ) AT TIME ZONE 'UTC')::TIMESTAMP)"


def staged_select(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    columns: Iterable[str],
    reader: Reader = plain_reader,
) -> str:
    """The ``SELECT`` that stages a file: raw text of each contract column, its parsed
    timestamp where it has one, and the row number."""
    types = source_types(con, path, reader)
    selects = ["row_number() OVER () AS _row", "NULL::VARCHAR AS _malformed",
               "NULL::VARCHAR AS _raw_line"]  # fmt: skip
    for col in columns:
        if col in types:
            raw = f'"{col}"' if types[col] == "VARCHAR" else f'"{col}"::VARCHAR'
            selects.append(f"nullif(trim({raw}, {PADDING}), '') AS {col}")
            selects.append(
                f"{_timestamp_expr(chr(34) + col + chr(34), types[col])} AS _{col}_parsed"
                if col in ("event_timestamp", "created_at")
                else f"NULL AS _{col}_parsed"
            )
        else:
            selects.append(f"NULL::VARCHAR AS {col}")
            selects.append(f"NULL::TIMESTAMP AS _{col}_parsed")
    return f"SELECT {', '.join(selects)} FROM {reader(path)}"


def read_through(path: Path, columns: Iterable[str], reader: Reader = plain_reader) -> int:
    """Read a file exactly as a load will (same reader, same staging expressions) without
    keeping it; returns its rows. One line naming the file if it cannot be read."""
    columns = list(columns)
    con = duckdb.connect()
    try:
        select = staged_select(con, path, columns, reader)
        every_field = ", ".join([*columns, *(f"_{c}_parsed::VARCHAR" for c in columns)])
        return con.execute(
            f"SELECT count(*), sum(length(concat_ws('|', {every_field}))) FROM ({select})"
        ).fetchall()[0][0]
    except duckdb.Error as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise IngestError(f"{path}: cannot be read: {first_line}") from None
    finally:
        con.close()


def stage(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    columns: Iterable[str],
    reader: Reader = plain_reader,
) -> None:
    """Copy a file into temp table ``staged`` (:func:`staged_select`), its malformed CSV
    lines as rows with the reason."""
    select = staged_select(con, path, columns, reader)
    con.execute(f"DROP TABLE IF EXISTS {CSV_REJECTS}; DROP TABLE IF EXISTS {CSV_REJECTS}_scans")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE staged AS {select}")
    except duckdb.Error as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise IngestError(f"{path}: cannot be read: {first_line}") from None
    rejected = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?", [CSV_REJECTS]
    ).fetchall()[0][0]
    if rejected:  # one row per malformed line (DuckDB may report a line once per field)
        con.execute(
            f"""
            INSERT INTO staged (_row, _malformed, _raw_line)
            SELECT line, 'malformed CSV line: ' || lower(replace(min(error_type), '_', ' ')),
                   any_value(csv_line)
            FROM {CSV_REJECTS} GROUP BY line
            """
        )


@dataclass(frozen=True)
class FileSource:
    """An input file as the warehouse records it: ``name`` relative to the home when the
    file lies inside it (so a copied home names its own files), and a content digest."""

    path: Path
    name: str
    digest: str

    @classmethod
    def of(cls, path: Path, home: Path | None) -> FileSource:
        resolved = path.resolve()
        inside = home is not None and resolved.is_relative_to(home.resolve())
        name = str(resolved.relative_to(home.resolve())) if inside else str(resolved)
        with resolved.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        return cls(path=path, name=name, digest=digest)
