"""What a feature family is: entity keys, typed and described features, and its SQL.

Built-in families (``ranking.features.families``) and families data engineers register
(``ranking.features.definitions``) share this shape, so Feast views, data checks and the
catalogue treat them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

#: Entities features hang off, and their join keys (Feast entities of the same names;
#: ``user_category`` joins on the user and the item's primary category).
ENTITY_KEYS: dict[str, tuple[str, ...]] = {
    "user": ("user_id",),
    "item": ("item_id",),
    "user_category": ("user_id", "category"),
}


@dataclass(frozen=True)
class Partition:
    """Part ``index`` of ``count`` of one entity's events, split by a hash of its first
    key (the user for user and user x category families, the item for item families):
    every row of a family depends on one key's events only, so the parts' rows together
    are the whole build's."""

    entity: str
    index: int
    count: int

    @property
    def key(self) -> str:
        return ENTITY_KEYS[self.entity][0]

    def condition(self, alias: str) -> str:
        """SQL that keeps ``alias``'s rows of this part (DuckDB's ``hash``: stable across
        processes of one DuckDB version)."""
        return f"hash({alias}.{self.key}) % {int(self.count)} = {int(self.index)}"


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: ``<entity>_<signal>_<window>`` name, Feast type name and meaning."""

    name: str
    dtype: str  # "Int64" or "Float64"
    description: str
    #: The signal of the log without which the feature is empty or constant (a CTR on a
    #: log without impressions): ``ranking.ingest.profile`` names them. Such a feature is
    #: still computed, but its null and constant checks are skipped on such a log.
    needs: str | None = None


@dataclass(frozen=True)
class FeatureFamily:
    """A feature view's worth of features and the SQL that computes them."""

    name: str
    entity_keys: tuple[str, ...]
    description: str
    features: tuple[FeatureSpec, ...]
    sql: str = field(repr=False)
    ttl: timedelta = timedelta(days=2)
    owner: str | None = None  # None: the platform's owner (settings.features.owner)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def entity(self) -> str:
        """The entity name (``user``, ``item`` or ``user_category``)."""
        return next(name for name, keys in ENTITY_KEYS.items() if keys == self.entity_keys)

    def parquet_path(self, features_dir: Path) -> Path:
        return Path(features_dir) / f"{self.name}.parquet"


#: Request-time context features (computed by a Feast on-demand feature view).
CONTEXT_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("context_hour_of_day", "Int64", "Hour (UTC, 0-23) of the ranking request."),
    FeatureSpec("context_day_of_week", "Int64", "Day of week of the request, Monday = 0."),
    FeatureSpec("context_is_weekend", "Int64", "1 on Saturday and Sunday, else 0."),
)
#: The on-demand view that computes them.
CONTEXT_VIEW = "request_time_context"
