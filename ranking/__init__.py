"""Personalization ranking platform: a library of plain functions.

Stages, in the order data flows through them:
``synth`` -> ``events`` -> ``features`` -> ``store`` -> ``dataset`` -> ``train``
-> ``evaluate`` -> ``registry`` -> ``serve``. ``config`` holds the one settings object
and ``cli`` is a thin Typer layer over the rest. Nothing here imports Prefect.
"""

__version__ = "0.1.0"
