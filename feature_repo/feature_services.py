"""Feature services: the set of features one ranker version is trained and served with.

Versioned by name: ``ranker_v1`` is the built-in set; each ``ranking features register``
adds a version with one more family (listed in ``services.yaml`` beside the feature
definitions). Models record the service they were trained on, so older models keep
serving with exactly the features they learned from.
"""

from context import request_time_context
from feast import FeatureService
from feature_views import (
    REGISTERED_VIEWS,
    item_stats,
    user_category,
    user_long_term,
    user_short_term,
)

from ranking.config import get_settings
from ranking.feature_registry import BASE_SERVICE, load_services

_settings = get_settings()
_VIEWS = {
    "user_long_term": user_long_term,
    "user_short_term": user_short_term,
    "item_stats": item_stats,
    "user_category": user_category,
    "request_time_context": request_time_context,
} | REGISTERED_VIEWS

SERVICES: dict[str, FeatureService] = {}
for _name, _views in load_services(_settings.feature_definitions_dir).items():
    SERVICES[_name] = globals()[_name] = FeatureService(
        name=_name,
        features=[_VIEWS[v] for v in _views],
        description="Behavioural user, item, user x category and request-context features."
        if _name == BASE_SERVICE
        else f"{BASE_SERVICE} plus registered families: "
        + ", ".join(v for v in _views if v in REGISTERED_VIEWS),
        tags={"owner": _settings.feature_owner, "model": "ranker"},
    )
