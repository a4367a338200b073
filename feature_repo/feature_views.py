"""Feature views over the Parquet snapshots that `ranking features` writes.

One view per feature family, built-in or registered, all generated from the same list
(``ranking.features.repo.view_families``): names, types and descriptions come from the
family definitions, so the Parquet columns and these schemas cannot disagree. The inputs
(where the snapshots are, the owner, the cadence) come in once, as ``INPUTS``.
"""

from entities import FAMILY_ENTITIES
from feast import FeatureView, Field, FileSource
from feast.types import Float64, Int64

from ranking.features.repo import RepoInputs, view_families
from ranking.features.specs import FeatureFamily

INPUTS = RepoInputs.from_env()
_TYPES = {"Int64": Int64, "Float64": Float64}


def feature_view(family: FeatureFamily) -> FeatureView:
    """The Feast view of one family: its snapshots file, entities, typed schema, owner."""
    owner = INPUTS.view_owner(family)
    return FeatureView(
        name=family.name,
        description=family.description,
        entities=FAMILY_ENTITIES[family.entity],
        ttl=INPUTS.view_ttl(family),
        schema=[
            Field(
                name=f.name, dtype=_TYPES[f.dtype], description=f.description, tags={"owner": owner}
            )  # fmt: skip
            for f in family.features
        ],
        source=FileSource(
            name=f"{family.name}_source",
            path=str(family.parquet_path(INPUTS.features_dir)),
            timestamp_field="event_timestamp",
            description=f"Snapshots of {family.name}, written by `ranking features`.",
        ),
        online=True,
        tags={"owner": owner, "family": family.name},
        owner=owner,
    )


VIEWS: dict[str, FeatureView] = {f.name: feature_view(f) for f in view_families(INPUTS)}
# `feast apply` collects the views it finds as module attributes, one per name.
globals().update(VIEWS)
