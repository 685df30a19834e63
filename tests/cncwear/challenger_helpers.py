"""Helpers of the challenger tests: scenarios on copies of the session's registry, and labelled
runs as both models judged them."""

from __future__ import annotations

from typing import Any

from cncwear.core.schema import LABELS
from cncwear.core.settings import Settings
from cncwear.monitoring.shadow import RunVerdicts
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from tests.api.conftest import Registry

WORN, UNWORN = LABELS["worn"], LABELS["unworn"]


def scenario(
    registry: Registry, *, champion: bool = True, copies: int = 1, **changes: Any
) -> tuple[Settings, ModelStore, str, list[str]]:
    """A model of its own: a copy of the baseline (the champion unless ``champion`` is False) and
    ``copies`` copies of the forest, which beats it on the holdout. The copies' retrain-run tag is
    dropped: their moves must not tag the session's shared retrain runs."""
    versions = [registry.fallback_version] + [registry.compiled_version] * copies
    name, made = registry.new_model(
        *versions, champion=registry.fallback_version if champion else None
    )
    settings = registry.settings(model_name=name, **changes)
    store = ModelStore(settings)
    for version in made:
        store.client.delete_model_version_tag(name, version, Tag.RETRAIN_RUN_ID)
    return settings, store, made[0], made[1:]


def runs(
    *, challenger_wins: int = 0, champion_wins: int = 0, both_right: int = 0, labels: str = "mixed"
) -> list[RunVerdicts]:
    """Labelled runs: ``challenger_wins`` the challenger alone got right, ``champion_wins`` the
    champion alone, ``both_right`` both. Labels alternate worn/unworn (``mixed``) or are all
    ``worn``."""
    made: list[RunVerdicts] = []

    def add(challenger_right: bool, champion_right: bool) -> None:
        label = WORN if labels == "worn" or len(made) % 2 == 0 else UNWORN
        wrong = 1 - label
        made.append(
            RunVerdicts(
                run=f"run-{len(made)}",
                label=label,
                champion=label if champion_right else wrong,
                challenger=label if challenger_right else wrong,
            )
        )

    for _ in range(challenger_wins):
        add(True, False)
    for _ in range(champion_wins):
        add(False, True)
    for _ in range(both_right):
        add(True, True)
    return made
