"""The platform's vocabulary: the one place for column, event-type, split, scorer and
metric names. Every stage imports these words from here instead of spelling them again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

# Columns of the data contract ----------------------------------------------------------

#: Events, as the warehouse stores them (``event_id`` is derived when a file lacks it).
EVENT_COLUMNS = [
    "event_id", "user_id", "item_id", "event_type", "event_timestamp",
    "value", "session_id", "position",
]  # fmt: skip
#: Items: ``category`` holds one or several ``|``-separated categories, the first primary.
ITEM_COLUMNS = ["item_id", "category", "created_at", "price", "available"]

#: Plausibility rules of the contract (each broken one is a quarantine reason).
#: Events before this are implausible (epoch 0, year 1900): the default of
#: ``events.earliest_timestamp``.
EARLIEST_EVENT_TIMESTAMP = datetime(1990, 1, 1)
#: Ids longer than this are not ids (a 1 MB "id" once reached the warehouse).
MAX_ID_LENGTH = 256
#: Characters no id holds: C0/C1 controls (NUL included), zero-width and bidi controls
#: (they make two different ids print the same). A DuckDB (RE2) character class.
ID_FORBIDDEN_CHARACTERS = (
    r"[\x{0}-\x{1f}\x{7f}-\x{9f}\x{200b}-\x{200f}\x{202a}-\x{202e}\x{2066}-\x{2069}\x{feff}]"
)
#: Optional events columns whose null rate the data checks measure.
OPTIONAL_EVENT_COLUMNS = ("value", "session_id", "position")
#: Columns that make an event's content (everything but its id and load bookkeeping).
EVENT_CONTENT_COLUMNS = (
    "user_id", "item_id", "event_type", "event_timestamp", "value", "session_id", "position",
)  # fmt: skip
#: The category given to items without one.
UNKNOWN_CATEGORY = "unknown"
#: How the service names its served logs (``served-<day>.jsonl``); ingest checks such a
#: file's rows against what the service can produce.
SERVED_LOG_PREFIX, SERVED_LOG_SUFFIX = "served-", ".jsonl"


def is_served_log(name: str) -> bool:
    """Whether a file name is one of the service's served logs."""
    return name.startswith(SERVED_LOG_PREFIX) and name.endswith(SERVED_LOG_SUFFIX)


# Event types and labels ----------------------------------------------------------------

IMPRESSION, VIEW, SKIP, CLICK, PLAY = "impression", "view", "skip", "click", "play"
RATING, TAG, ADD_TO_CART, PURCHASE = "rating", "tag", "add_to_cart", "purchase"

#: Event types the platform understands, and the graded relevance each implies.
DEFAULT_LABEL_WEIGHTS: dict[str, float] = {
    IMPRESSION: 0.0,
    VIEW: 0.0,
    SKIP: 0.0,
    CLICK: 1.0,
    PLAY: 1.0,
    RATING: 0.0,  # ratings are graded by value, see ``rating_label_offset``
    TAG: 0.0,  # a free-text tag (MovieLens): engagement, not relevance
    ADD_TO_CART: 2.0,
    PURCHASE: 3.0,
}

#: Event types that count as a positive interaction with an item (popularity, affinity).
POSITIVE_TYPES = (CLICK, PLAY, ADD_TO_CART, PURCHASE, RATING)


def sql_list(values: Iterable[str]) -> str:
    """A SQL ``IN`` list of string literals: ``('a', 'b')`` (NULL for none)."""
    quoted = ["'" + str(v).replace("'", "''") + "'" for v in values]
    return "(" + (", ".join(quoted) or "NULL") + ")"


#: Event types whose ``value`` is seconds of attention (dwell, watch or listen time).
DWELL_TYPES = (VIEW, PLAY)

#: ``('click', 'play', ...)``: the positive types as a SQL list.
POSITIVE_SQL_LIST = sql_list(POSITIVE_TYPES)

# Training-set splits -------------------------------------------------------------------

TRAIN, VALID, TEST = "train", "valid", "test"
SPLITS = (TRAIN, VALID, TEST)

# Scorers and metrics -------------------------------------------------------------------

#: The learned ranker's name in evaluation tables.
MODEL_SCORER = "xgboost"
#: Baselines scored on the same candidates, from raw history.
RANDOM, MOST_POPULAR, RECENTLY_POPULAR = "random", "most_popular", "recently_popular"
FAVOURITE_CATEGORIES, COOCCURRENCE = "favourite_categories", "cooccurrence"
BASELINES = (RANDOM, MOST_POPULAR, RECENTLY_POPULAR, FAVOURITE_CATEGORIES, COOCCURRENCE)
#: Retrieval alone: candidates in the order of the sources' reciprocal-rank fusion.
RETRIEVAL_FUSION = "retrieval_fusion"

#: The metric the gate and the summaries judge by.
HEADLINE_METRIC = "ndcg@10"
#: Metrics of every evaluation table, in column order.
REPORT_METRICS = ("ndcg@5", "ndcg@10", "ndcg@20", "map@10", "recall@10", "recall@50", "mrr",
                  "coverage@10", "novelty@10")  # fmt: skip


def test_metric(metric: str) -> str:
    """The run metric of the model on the test holdout: ``test_ndcg@10``."""
    return f"test_{metric}"


def baseline_metric(baseline: str, metric: str) -> str:
    """The run metric of a baseline on the test holdout: ``baseline_most_popular_ndcg@10``."""
    return f"baseline_{baseline}_{metric}"


def mlflow_key(name: str) -> str:
    """MLflow metric and tag names cannot hold '@': ``ndcg@10`` becomes ``ndcg_at_10``."""
    return name.replace("@", "_at_")


# Model registry ------------------------------------------------------------------------

#: The alias every ranking call resolves; nothing names a version.
CHAMPION = "champion"
#: The alias of the newest version that did not pass the gate.
CHALLENGER = "challenger"
#: Version tag written last, once every other tag and artifact is in place: a version
#: without it (a run killed while registering) is invisible and cannot be promoted.
READY_TAG = "ready"

# Logged traffic and off-policy evaluation ----------------------------------------------

#: What each served item carries for off-policy evaluation: the probability the serving
#: policy showed that item at that position (``propensity``), the policy that served it
#: and the score it gave.
PROPENSITY, POLICY, SCORE = "propensity", "policy", "score"
#: The logged row's outcome (1 for a click) and the target policy's probability of
#: showing the same item at the same position.
REWARD, TARGET_PROBABILITY = "reward", "target_probability"
#: The off-policy estimators of a target policy's click rate.
CLIPPED_IPS, SNIPS = "clipped_ips", "snips"
