"""Feature families data engineers register: the YAML definition and the service versions.

A data engineer writes one YAML file in the definitions folder (``feature_repo/
definitions/<name>.yaml`` by default, ``RANKING_FEATURES__DEFINITIONS_DIR`` to move it):

.. code-block:: yaml

    name: user_skips                      # the family (becomes the Feast feature view)
    entity: user                          # user | item | user_category
    owner: data-eng@example.com
    description: How often a user skips what they start.
    ttl_days: 2
    cadence_days: 1                       # must match the platform's snapshot cadence
    features:
      - name: user_skip_rate_7d           # <entity>_<signal>_<window>
        dtype: Float64                    # Int64 or Float64
        description: Skips per play-or-skip over the 7 days before the snapshot.
    sql: |
      SELECT e.user_id, s.ts AS snapshot_ts,
             count(*) FILTER (WHERE e.event_type = 'skip')::DOUBLE
               / nullif(count(*) FILTER (WHERE e.event_type IN ('play', 'skip')), 0)
               AS user_skip_rate_7d
      FROM snapshots s
      JOIN events e ON e.event_timestamp < s.ts
                   AND e.event_timestamp >= s.ts - INTERVAL 7 DAY
      GROUP BY ALL

The SQL sees three relations only: ``events`` and ``items`` (read-only views of the
warehouse) and ``snapshots(ts)``, the snapshot times. It must return the entity key(s),
``snapshot_ts`` and one column per declared feature, using only events strictly before
``snapshot_ts``. It runs in a separate in-memory DuckDB with the warehouse attached
read-only and external access switched off, one SELECT statement, so a definition can
neither write nor drop anything, nor read files.

Registering a family adds it to a new version of the ranker's feature service
(``ranker_v1`` -> ``ranker_v2`` ...) in ``services.yaml`` beside the definitions. The
setting ``features.service = "latest"`` (the default) trains on the newest version, while
each model keeps the exact service it was trained with (a version tag), so older models
go on serving with theirs.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ranking.errors import DefinitionError
from ranking.features.families import FAMILIES
from ranking.features.specs import CONTEXT_VIEW, ENTITY_KEYS, FeatureFamily, FeatureSpec

#: The built-in service and the families (Feast feature views) it serves.
BASE_SERVICE = "ranker_v1"
BASE_VIEWS = [f.name for f in FAMILIES] + [CONTEXT_VIEW]
SERVICE_PREFIX = "ranker_v"
LATEST = "latest"

#: Definition and feature names: they reach SQL and paths, so nothing but these.
IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{1,62}")


class FeatureField(BaseModel):
    """One declared feature."""

    model_config = ConfigDict(extra="forbid")
    name: str
    dtype: Literal["Int64", "Float64"]
    description: str = ""


class FeatureDefinition(BaseModel):
    """A feature family as a data engineer writes it (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    entity: Literal["user", "item", "user_category"]
    owner: str = ""
    description: str = ""
    ttl_days: float = Field(default=2.0, gt=0)
    cadence_days: float = Field(default=1.0, gt=0)
    features: list[FeatureField]
    sql: str

    @property
    def entity_keys(self) -> tuple[str, ...]:
        return ENTITY_KEYS[self.entity]

    def to_family(self) -> FeatureFamily:
        """The same shape as the built-in families (for Feast views and data checks)."""
        return FeatureFamily(
            name=self.name,
            entity_keys=self.entity_keys,
            description=self.description,
            features=tuple(FeatureSpec(f.name, f.dtype, f.description) for f in self.features),
            sql=self.sql,
            ttl=timedelta(days=self.ttl_days),
            owner=self.owner,
        )


def definition_path(definitions_dir: Path, name: str) -> Path:
    if not IDENTIFIER.fullmatch(name):
        raise DefinitionError(f"{name!r}: a definition name is lower-case letters, digits, _")
    return Path(definitions_dir) / f"{name}.yaml"


def load_definition(definitions_dir: Path, name: str) -> FeatureDefinition:
    """Read and parse ``<definitions_dir>/<name>.yaml``; errors name the file and field."""
    path = definition_path(definitions_dir, name)
    if not path.exists():
        raise DefinitionError(f"{path}: no such definition")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        definition = FeatureDefinition.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise DefinitionError(f"{path}: {problems}") from None
    if definition.name != name:
        raise DefinitionError(f"{path}: name: {definition.name!r} differs from the file name")
    return definition


def services_path(definitions_dir: Path) -> Path:
    return Path(definitions_dir) / "services.yaml"


def load_services(definitions_dir: Path) -> dict[str, list[str]]:
    """Every ranker feature service version and the feature views it serves, oldest first."""
    path = services_path(definitions_dir)
    services = {BASE_SERVICE: list(BASE_VIEWS)}
    if path.exists():
        services |= {k: list(v) for k, v in (yaml.safe_load(path.read_text()) or {}).items()}
    return dict(sorted(services.items(), key=lambda kv: int(kv[0].removeprefix(SERVICE_PREFIX))))


def registered_definitions(definitions_dir: Path) -> list[FeatureDefinition]:
    """The definitions some service version uses (in registration order)."""
    names: list[str] = []
    for views in load_services(definitions_dir).values():
        names += [v for v in views if v not in BASE_VIEWS and v not in names]
    return [load_definition(definitions_dir, n) for n in names]


def all_families(definitions_dir: Path) -> tuple[FeatureFamily, ...]:
    """The built-in families, then every registered one: what the snapshots hold."""
    return FAMILIES + tuple(d.to_family() for d in registered_definitions(definitions_dir))


def resolve_service(name: str, definitions_dir: Path) -> str:
    """``latest`` -> the newest service version; any other name is checked and returned."""
    services = load_services(definitions_dir)
    resolved = list(services)[-1] if name == LATEST else name
    if resolved not in services:
        raise DefinitionError(f"feature service {name!r} is not one of {list(services)}")
    return resolved
