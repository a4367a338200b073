"""What the declarative Feast repo (``feature_repo/``) is built from.

``feast apply`` imports the repo's files in a child process. They read their inputs once,
from one environment variable this module writes (:meth:`RepoInputs.to_env`): where the
snapshots are, where registered definitions live, the owner and the cadence. Every view,
built-in or registered, is then generated from the same list of families
(:func:`view_families`), so Parquet columns and Feast schemas cannot disagree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ranking.features.definitions import all_families, load_services
from ranking.features.specs import FeatureFamily
from ranking.ingest.profile import fit_settings, profile_of
from ranking.settings import Settings, get_settings

#: The environment variable that carries :class:`RepoInputs` to the repo.
INPUTS_ENV = "RANKING_FEAST_REPO_INPUTS"


@dataclass(frozen=True)
class RepoInputs:
    """Everything the Feast repo needs to know about this installation."""

    features_dir: Path
    definitions_dir: Path
    owner: str
    snapshot_every: timedelta

    @classmethod
    def of(cls, settings: Settings) -> RepoInputs:
        return cls(
            features_dir=settings.features_dir,
            definitions_dir=settings.definitions_dir,
            owner=settings.features.owner,
            snapshot_every=settings.features.snapshot_every,
        )

    def to_env(self) -> dict[str, str]:
        payload = {
            "features_dir": str(self.features_dir),
            "definitions_dir": str(self.definitions_dir),
            "owner": self.owner,
            "snapshot_every_s": self.snapshot_every.total_seconds(),
        }
        return {INPUTS_ENV: json.dumps(payload)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RepoInputs:
        """The inputs ``ranking`` handed over; run by hand (``feast apply``, ``feast plan``),
        the settings as the commands fit them to the home's data (a weekly cadence gives
        longer ttls: unfitted, a hand-run plan would report every view as changed)."""
        raw = (os.environ if environ is None else environ).get(INPUTS_ENV)
        if raw is None:
            settings = get_settings()
            return cls.of(fit_settings(settings, profile_of(settings.warehouse_path)))
        payload = json.loads(raw)
        return cls(
            features_dir=Path(payload["features_dir"]),
            definitions_dir=Path(payload["definitions_dir"]),
            owner=payload["owner"],
            snapshot_every=timedelta(seconds=payload["snapshot_every_s"]),
        )

    def view_ttl(self, family: FeatureFamily) -> timedelta:
        """A snapshot must stay valid until the next one, whatever the cadence."""
        return max(family.ttl, 2 * self.snapshot_every)

    def view_owner(self, family: FeatureFamily) -> str:
        return family.owner or self.owner


def view_families(inputs: RepoInputs) -> tuple[FeatureFamily, ...]:
    """Every family that becomes a Feast feature view: built-in, then registered."""
    return all_families(inputs.definitions_dir)


def service_views(inputs: RepoInputs) -> dict[str, list[str]]:
    """Every feature service version and the views it serves, oldest first."""
    return load_services(inputs.definitions_dir)
