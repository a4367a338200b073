"""Feature views over the Parquet snapshots that `ranking features` writes.

The feature names, types and descriptions come from the definitions in
``ranking/features.py`` (one place per feature family), so the Parquet columns and these
schemas cannot disagree. Sources point at the configured home (``RANKING_HOME``), never
at the working directory.
"""

from entities import category, item, user
from feast import FeatureView, Field, FileSource
from feast.types import Float64, Int64

from ranking.config import get_settings
from ranking.feature_registry import registered_definitions
from ranking.features import ITEM_STATS, USER_CATEGORY, USER_LONG_TERM, USER_SHORT_TERM

_settings = get_settings()
_TYPES = {"Int64": Int64, "Float64": Float64}


def _source(family) -> FileSource:
    return FileSource(
        name=f"{family.name}_source",
        path=str(family.parquet_path(_settings.features_dir)),
        timestamp_field="event_timestamp",
        description=f"Snapshots of {family.name}, written by `ranking features`.",
    )


def _schema(family, owner: str | None = None) -> list[Field]:
    return [
        Field(
            name=f.name,
            dtype=_TYPES[f.dtype],
            description=f.description,
            tags={"owner": owner or _settings.feature_owner},
        )
        for f in family.features
    ]


def _ttl(family):
    # A snapshot must stay valid until the next one, whatever the configured cadence.
    return max(family.ttl, 2 * _settings.snapshot_every)


def _tags(family, owner: str | None = None) -> dict[str, str]:
    return {"owner": owner or _settings.feature_owner, "family": family.name}


user_long_term = FeatureView(
    name=USER_LONG_TERM.name,
    description=USER_LONG_TERM.description,
    entities=[user],
    ttl=_ttl(USER_LONG_TERM),
    schema=_schema(USER_LONG_TERM),
    source=_source(USER_LONG_TERM),
    online=True,
    tags=_tags(USER_LONG_TERM),
    owner=_settings.feature_owner,
)

user_short_term = FeatureView(
    name=USER_SHORT_TERM.name,
    description=USER_SHORT_TERM.description,
    entities=[user],
    ttl=_ttl(USER_SHORT_TERM),
    schema=_schema(USER_SHORT_TERM),
    source=_source(USER_SHORT_TERM),
    online=True,
    tags=_tags(USER_SHORT_TERM),
    owner=_settings.feature_owner,
)

item_stats = FeatureView(
    name=ITEM_STATS.name,
    description=ITEM_STATS.description,
    entities=[item],
    ttl=_ttl(ITEM_STATS),
    schema=_schema(ITEM_STATS),
    source=_source(ITEM_STATS),
    online=True,
    tags=_tags(ITEM_STATS),
    owner=_settings.feature_owner,
)

user_category = FeatureView(
    name=USER_CATEGORY.name,
    description=USER_CATEGORY.description,
    entities=[user, category],
    ttl=_ttl(USER_CATEGORY),
    schema=_schema(USER_CATEGORY),
    source=_source(USER_CATEGORY),
    online=True,
    tags=_tags(USER_CATEGORY),
    owner=_settings.feature_owner,
)


# Families registered by data engineers (``ranking features register``): one view each,
# from the YAML definitions beside ``services.yaml``. Feast collects module-level views,
# so each is bound to a module global named after its family.
_ENTITIES = {"user": [user], "item": [item], "user_category": [user, category]}
REGISTERED_VIEWS: dict[str, FeatureView] = {}
for _definition in registered_definitions(_settings.feature_definitions_dir):
    _family = _definition.to_family()
    REGISTERED_VIEWS[_family.name] = globals()[_family.name] = FeatureView(
        name=_family.name,
        description=_family.description,
        entities=_ENTITIES[_definition.entity],
        ttl=_ttl(_family),
        schema=_schema(_family, _definition.owner),
        source=_source(_family),
        online=True,
        tags=_tags(_family, _definition.owner),
        owner=_definition.owner,
    )
