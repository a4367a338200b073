"""Prefect flows: thin wiring over the ``ranking`` library.

Each task calls one ``ranking`` function; retries, schedules and artifacts live here.
"""
