"""The platform's errors. Each message is one line that names the file, row or field at
fault, so the CLI can print it as it is (exit code 2) without a traceback.
"""

from __future__ import annotations


class RankingError(Exception):
    """Base of every error the CLI reports as one line."""


class IngestError(RankingError):
    """A file cannot be read at all (missing, unknown format, unparseable)."""


class DefinitionError(RankingError, ValueError):
    """A feature definition is invalid; the message names the definition and the field."""


class FeastError(RankingError, RuntimeError):
    """A Feast command failed; the message carries its output."""


class NoDataError(RankingError, ValueError):
    """A stage has nothing to work on (no events in a window, no returning users)."""


class RegistryError(RankingError, ValueError):
    """A model version cannot be used as asked (unknown, or not completely registered)."""


def interrupted_query(error: BaseException | None) -> bool:
    """Whether DuckDB stopped a query for a signal: it answers the KeyboardInterrupt that
    Ctrl-C raises (and SIGTERM, turned into one by the CLI) with this RuntimeError."""
    while error is not None:
        if isinstance(error, RuntimeError) and str(error) == "Query interrupted":
            return True
        error = error.__cause__ or error.__context__
    return False
