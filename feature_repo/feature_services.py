"""Feature services: the set of features one ranker version is trained and served with.

Versioned by name: ``ranker_v1`` is the built-in set; each ``ranking features register``
adds a version with one more family (listed in ``services.yaml`` beside the feature
definitions). Models record the service they were trained on, so older models keep
serving with exactly the features they learned from.
"""

from context import request_time_context
from feast import FeatureService
from feature_views import INPUTS, VIEWS

from ranking.features.definitions import BASE_SERVICE, BASE_VIEWS
from ranking.features.repo import service_views
from ranking.features.specs import CONTEXT_VIEW

_VIEWS = VIEWS | {CONTEXT_VIEW: request_time_context}


def feature_service(name: str, views: list[str]) -> FeatureService:
    registered = [v for v in views if v not in BASE_VIEWS]
    return FeatureService(
        name=name,
        features=[_VIEWS[v] for v in views],
        description="Behavioural user, item, user x category and request-context features."
        if name == BASE_SERVICE
        else f"{BASE_SERVICE} plus registered families: " + ", ".join(registered),
        tags={"owner": INPUTS.owner, "model": "ranker"},
    )


SERVICES = {name: feature_service(name, views) for name, views in service_views(INPUTS).items()}
# `feast apply` collects the services it finds as module attributes, one per name.
globals().update(SERVICES)
