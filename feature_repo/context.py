"""Request-time context: hour of day and day of week of the ranking request.

Computed on demand from the request's Unix time (``request_timestamp_s``), both when
Feast builds a training set (the entity frame carries the column) and when it serves.
"""

import pandas as pd
from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Int64
from feature_views import INPUTS

from ranking.features.specs import CONTEXT_FEATURES

request_context = RequestSource(
    name="request_context",
    schema=[Field(name="request_timestamp_s", dtype=Int64, description="Unix seconds, UTC.")],
    description="What the caller knows at request time.",
)


@on_demand_feature_view(
    sources=[request_context],
    # Feast compares these fields with ones it infers (no description), so the
    # descriptions go in the view's description instead of on each field.
    schema=[Field(name=f.name, dtype=Int64) for f in CONTEXT_FEATURES],
    description="Request-time context. "
    + " ".join(f"{f.name}: {f.description}" for f in CONTEXT_FEATURES),
    tags={"owner": INPUTS.owner, "family": "request_context"},
    owner=INPUTS.owner,
)
def request_time_context(inputs: pd.DataFrame) -> pd.DataFrame:
    when = pd.to_datetime(inputs["request_timestamp_s"], unit="s", utc=True)
    out = pd.DataFrame(index=inputs.index)
    out["context_hour_of_day"] = when.dt.hour.astype("int64")
    out["context_day_of_week"] = when.dt.dayofweek.astype("int64")
    out["context_is_weekend"] = (when.dt.dayofweek >= 5).astype("int64")
    return out
