"""Feature services: the set of features one ranker version is trained and served with.

Versioned by name: a new feature set is a new service (``ranker_v2``), so models trained
on ``ranker_v1`` keep serving with exactly the features they learned from.
"""

from context import request_time_context
from feast import FeatureService
from feature_views import item_stats, user_category, user_long_term, user_short_term

ranker_v1 = FeatureService(
    name="ranker_v1",
    features=[user_long_term, user_short_term, item_stats, user_category, request_time_context],
    description="Behavioural user, item, user x category and request-context features.",
    tags={"owner": "ranking-platform", "model": "ranker"},
)
