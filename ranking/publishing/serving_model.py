"""The champion for a ranking call: the kept copy when the alias still names it, else
the registry (see ``ranking.publishing.champion`` for why and when)."""

from __future__ import annotations

from ranking.publishing.champion import Champion, alias_version, keep, kept_champion
from ranking.settings import Settings


def serving_champion(settings: Settings) -> Champion | None:
    """The champion: its kept copy when the alias still names it, else from the registry
    (and kept for the next call)."""
    champion = kept_champion(settings)
    if champion is not None:
        return champion
    from ranking.publishing.models import load_champion  # MLflow: only when needed

    champion = load_champion(settings)
    named = alias_version(settings)
    if champion is not None and named is not None and named[0] == champion.version:
        keep(settings, champion, named[1])
    return champion
