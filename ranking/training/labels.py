"""The one definition of a label: graded relevance from event types and rating values."""

from __future__ import annotations

from ranking.schema import RATING
from ranking.settings import Settings


def _weights_sql(weights: dict[str, float]) -> str:
    rows = ", ".join(f"('{t}', {float(w)})" for t, w in sorted(weights.items()))
    return f"(VALUES {rows}) AS w(event_type, weight)"


def labelled_events_sql(settings: Settings, key: str = "NULL") -> str:
    """Events in ``[?, ?)`` with their graded label (and a query-group ``key`` expression).

    The one definition of a label: ``label_weights`` per event type, ratings graded by
    value (``floor(stars) - rating_label_offset``, at least 0).
    """
    offset = float(settings.events.rating_label_offset)
    return f"""
        SELECT e.user_id, {key} AS group_key, e.item_id, e.event_timestamp,
            CASE WHEN e.event_type = '{RATING}'
                 THEN greatest(0.0, floor(coalesce(e.value, 0)) - {offset})
                 ELSE w.weight END AS label
        FROM events e JOIN {_weights_sql(settings.events.label_weights)} USING (event_type)
        WHERE e.event_timestamp >= ?::TIMESTAMP AND e.event_timestamp < ?::TIMESTAMP
    """
