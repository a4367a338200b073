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
