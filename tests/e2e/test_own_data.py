"""A team's own log, of any of four shapes, goes from ingest to a champion with default
settings: the profile of what was loaded picks the cadence, the windows and the checks.

The logs are made here from one generated audience (so a model has tastes to learn),
cut and re-timed into what real logs look like: ratings only over years, a shop's
view / cart / purchase log over nine days, a music log of plays and skips, and a log of
three hours. Nothing is set but the home.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from prefect.testing.utilities import prefect_test_harness

from flows.loop import ranking_loop
from ranking.ingest import synth
from ranking.ingest.profile import profile_of
from ranking.settings import get_settings
from tests.conftest import END, NOW

pytestmark = [pytest.mark.e2e, pytest.mark.loops]

#: The generated audience's span; each shape re-times it onto its own.
SPAN = timedelta(days=28)
RATING_OF = {"skip": 1.5, "play": 4.0, "purchase": 5.0}


@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def audience() -> synth.SynthData:
    return synth.generate(synth.SynthConfig(events=24_000, days=28, end=END, seed=5, dirty_rows=0))


def _retimed(events: pd.DataFrame, end: datetime, span: timedelta) -> pd.Series:
    """The events' times squeezed or stretched from the audience's 28 days onto ``span``
    ending at ``end`` (order kept)."""
    before_end = END - events["event_timestamp"].dt.tz_localize(None)
    return end - before_end * (span / SPAN)


def _shape(audience: synth.SynthData, shape: str) -> tuple[pd.DataFrame, pd.DataFrame, datetime]:
    """(events, items, the clock when loaded) of one shape."""
    events = audience.events.to_pandas()
    for column in ("user_id", "item_id", "event_type"):
        events[column] = events[column].astype(str)
    items = audience.items[["item_id", "category", "price"]]
    if shape == "ratings":  # a rating per play, skip or purchase; no session, no position
        rated = events[events["event_type"].isin(list(RATING_OF))].copy()
        rated["value"] = rated["event_type"].map(RATING_OF)
        rated["event_type"] = "rating"
        rated["event_timestamp"] = _retimed(rated, datetime(2019, 1, 1), timedelta(days=1100))
        cols = ["user_id", "item_id", "event_type", "event_timestamp", "value"]
        return rated[cols], items.drop(columns="price"), NOW
    if shape == "shop":  # views, carts and purchases in sessions over nine days
        shop = events[events["event_type"].isin(["view", "add_to_cart", "purchase"])].copy()
        shop["event_timestamp"] = _retimed(shop, NOW - timedelta(hours=1), timedelta(days=9))
        return shop.drop(columns=["event_id", "position"]), items, NOW
    if shape == "music":  # plays and skips with seconds listened, queue positions
        music = events[events["event_type"].isin(["play", "skip"])].copy()
        music["event_timestamp"] = _retimed(music, NOW - timedelta(hours=2), SPAN)
        return music.drop(columns="event_id"), items.drop(columns="price"), NOW
    # three hours of a shop's traffic, loaded as it ends
    hours = events[events["event_type"].isin(["view", "click", "purchase"])].copy()
    hours["event_timestamp"] = _retimed(hours, NOW - timedelta(minutes=5), timedelta(hours=3))
    return hours.drop(columns="event_id"), items, NOW


@pytest.mark.parametrize("shape", ["ratings", "shop", "music", "hours"])
def test_a_log_of_each_shape_reaches_a_champion_with_default_settings(
    shape: str, audience: synth.SynthData, prefect_server, tmp_path: Path
) -> None:
    events, items, now = _shape(audience, shape)
    raw = tmp_path / "raw"
    raw.mkdir()
    events.to_csv(raw / "events.csv", index=False)
    items.to_csv(raw / "items.csv", index=False)
    home = tmp_path / "home"

    result = ranking_loop(str(raw / "events.csv"), str(raw / "items.csv"),
                          now=now.isoformat(), home=str(home))  # fmt: skip

    loads = {r.target: r for r in result.loads}
    assert loads["events"].quarantined == 0  # every shape is valid data
    assert loads["events"].accepted + loads["events"].duplicates == len(events)
    assert result.training.promoted, result.training.reason
    assert result.training.champion_version == "1"
    settings = get_settings(home=home)
    profile = profile_of(settings.warehouse_path)
    assert profile.historic == (shape == "ratings")
    assert len(result.features.snapshots) <= 200  # never thousands by accident
