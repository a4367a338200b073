"""Dense retrieval scores: popularity and the ALS inner product for every merged
candidate, equal to the sources' own scores where they proposed the item, and never
from events at or after the query time."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from ranking.retrieval.merge import rank_column, retrieve, score_column
from ranking.settings import Settings
from ranking.warehouse import warehouse
from tests.code.retrieval.test_embeddings import AT, _load, _tastes

POPULAR, EMBEDDING = score_column("popular"), score_column("embedding")


@pytest.fixture
def tastes(settings: Settings) -> Settings:
    # After AT, everyone clicks z1 (a new item): it must score nothing at AT.
    later = [(f"a{n:02d}", "z1", "click", AT + timedelta(minutes=n)) for n in range(30)]
    # Small budgets: most candidates come from the other sources.
    return _load(
        settings.updated(
            retrieval={"embedding_budget": 2, "popular_budget": 3, "dense_scores": True}
        ),
        _tastes() + later,
    )


def _merged(settings: Settings, at: datetime = AT):
    with warehouse(settings.warehouse_path, read_only=True) as con:
        return retrieve(con, settings, ["qa", "qb"], at)


def test_every_candidate_gets_popularity_and_embedding_scores(tastes: Settings) -> None:
    merged = _merged(tastes)
    assert merged[POPULAR].notna().all() and (merged[POPULAR] >= 0).all()
    assert merged[EMBEDDING].notna().all()  # the model knows every user and item here
    for source, column in (("popular", POPULAR), ("embedding", EMBEDDING)):
        own = merged[merged[rank_column(source)].notna()]
        assert 0 < len(own) < len(merged)
        # where the source proposed the item, the dense score is the source's own score
        alone = tastes.updated(retrieval={"dense_scores": False})
        base = _merged(alone).set_index(["user_id", "item_id"])
        got = own.set_index(["user_id", "item_id"])[column]
        np.testing.assert_allclose(got, base.loc[got.index, column], rtol=1e-5)
    # a user's own taste scores higher on the embedding than the other group's items
    qa = merged[merged["user_id"] == "qa"].set_index("item_id")[EMBEDDING]
    assert qa[["a3", "a4", "a5"]].min() > qa[["b3", "b4", "b5"]].max()


def test_dense_scores_never_see_the_query_time_or_after(tastes: Settings) -> None:
    assert "z1" not in set(_merged(tastes)["item_id"])  # unknown before AT
    later = _merged(tastes, AT + timedelta(hours=1)).set_index(["user_id", "item_id"])
    assert later.loc[("qa", "z1"), POPULAR] > 0  # once its clicks are in the past, they count
    assert np.isnan(later.loc[("qa", "z1"), EMBEDDING])  # not in the model before a refresh


def test_dense_scores_can_be_switched_off(tastes: Settings) -> None:
    merged = _merged(tastes.updated(retrieval={"dense_scores": False}))
    for source, column in (("popular", POPULAR), ("embedding", EMBEDDING)):
        proposed = merged[rank_column(source)].notna()
        assert (~proposed).any() and merged.loc[~proposed, column].isna().all()
