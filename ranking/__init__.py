"""Personalization ranking platform: a library of plain functions, one package per stage.

The data path, top to bottom (each layer imports only the ones above it; an
import-linter contract in ``pyproject.toml`` holds the order):

- core: ``schema`` (the words), ``errors``, ``times``, ``checks`` (severity and limits),
  ``settings``, ``home``, ``warehouse`` (DuckDB);
- ``ingest``: the data contract, MovieLens, column mappings, generated data;
- ``features``: families (SQL), snapshots, registered definitions, the Feast store;
- ``retrieval``: candidate sources (co-visitation, categories, popular, fresh, trending,
  repeat), merged per user, point-in-time;
- ``training`` (training sets, rankers, MLflow tracking) and ``quality`` (data checks);
- ``evaluation``: metrics, baselines, the holdout report;
- ``publishing``: the gate (a pure decision), aliases, the champion model;
- ``serving`` (candidates, ranking, HTTP) and ``monitoring`` (drift, its report, the monitor).

Nothing here imports Prefect, ``flows`` or ``cli``.
"""

__version__ = "0.1.0"


def _feast_without_import_time_type_instrumentation() -> None:
    """Give Feast's ``@typechecked`` classes typeguard's production behaviour.

    Feast decorates its core classes with typeguard's ``@typechecked``, which re-parses
    and recompiles their source on every import: 4.6 s of the 5.4 s ``import feast``
    measured here, paid by every command and service start. Typeguard documents the
    decorator as a no-op in production (``python -O``); this takes that behaviour without
    ``-O``'s other effect (assertions stripped everywhere). Feast is the only user of
    typeguard in the lock file.
    """
    import sys

    if "feast" in sys.modules:
        return
    try:
        import typeguard
    except ImportError:  # pragma: no cover - typeguard comes with Feast
        return

    def typechecked(target=None, **_options):
        return (lambda decorated: decorated) if target is None else target

    typeguard.typechecked = typechecked


_feast_without_import_time_type_instrumentation()
