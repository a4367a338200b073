"""Digests of what a step reads, so that a rerun over unchanged inputs does no work.

A warm ``ranking demo`` used to rebuild every feature snapshot and the whole training set
(retrieval at each query time, then Feast's point-in-time join: about 25 s of its 38)
only to find the training set unchanged. The features and training steps now digest
their inputs first: the warehouse's content (not its file, which every load touches),
the files they read (by state: a file rewritten is an input changed), the settings and
the code. A step whose digest matches its last run's reuses that run's output.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ranking.warehouse import warehouse

_PACKAGE = Path(__file__).resolve().parent


def warehouse_digest(warehouse_path: Path) -> str:
    """The content of the events and items tables: their row counts and an
    order-independent hash of every row (DuckDB's ``hash`` of the row, xor-folded).

    Kept per state of the warehouse's files (the loop's features and training steps both
    ask, and a scan reads every event): a load or a write changes the file or its log."""
    path = Path(warehouse_path)
    key = (str(path.resolve()), *files_state([path, path.with_name(path.name + ".wal")]))
    if _digests.get("key") == key:
        return _digests["value"]
    with warehouse(path, read_only=True) as con:
        parts = [
            con.execute(f"SELECT count(*), bit_xor(hash(t)) FROM {table} t").fetchall()[0]
            for table in ("events", "items")
        ]
    _digests.update(key=key, value=digest(parts))
    return _digests["value"]


_digests: dict[str, object] = {}  # the last warehouse measured: one is all a process needs


def files_state(paths: list[Path]) -> list[tuple]:
    """(name, size, mtime in ns) of each file that exists, sorted: what rewriting changes."""
    states = []
    for path in sorted(Path(p) for p in paths):
        if path.is_file():
            stat = path.stat()
            states.append((path.name, stat.st_size, stat.st_mtime_ns))
    return states


def code_digest() -> str:
    """A digest of the library's source: any edit to ``ranking`` is new code."""
    sha = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        sha.update(str(path.relative_to(_PACKAGE)).encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()


def digest(*parts: object) -> str:
    """A sha256 of ``parts`` in JSON (anything else by its ``str``)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
