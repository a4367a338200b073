"""Entities: the keys features hang off."""

from feast import Entity, ValueType

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A person who sees ranked lists and leaves behavioural events.",
)

item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.STRING,
    description="Something that can be ranked: a title, a track, a product.",
)

category = Entity(
    name="category",
    join_keys=["category"],
    value_type=ValueType.STRING,
    description="An item's primary category (the first of its '|'-separated categories).",
)

#: The entities of each feature family's entity name (see ``ranking.features.specs``).
FAMILY_ENTITIES = {"user": [user], "item": [item], "user_category": [user, category]}
