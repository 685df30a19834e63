"""Deciding whether a newly registered version becomes the champion."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cncwear.core.errors import ModelLoadError
from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import PromotionOutcome, Tag
from cncwear.training.evaluation import evaluate

logger = logging.getLogger(__name__)


@dataclass
class PromotionDecision:
    promoted: bool
    reason: str
    version: str
    previous_champion: str | None
    challenger_score: float
    champion_score: float | None

    @property
    def outcome(self) -> PromotionOutcome:
        return PromotionOutcome.PROMOTED if self.promoted else PromotionOutcome.NOT_PROMOTED


def decide_promotion(
    store: ModelStore,
    settings: Settings,
    version: str,
    challenger: float,
    holdout: Dataset,
) -> PromotionDecision:
    """Give ``version`` the champion alias if its holdout score beats the champion's on the same
    held-out experiments by the margin. The champion is re-scored here, on this holdout, inside the
    promotion lock: scores logged by other retrains may come from other data."""
    metric, margin = settings.promotion_metric, settings.promotion_margin
    with store.promotion_lock():
        current = store.champion_version()
        champion_score: float | None = None
        if current is None:
            promoted, reason = True, "no champion yet"
        elif str(current.version) == version:
            promoted, reason = True, f"version {version} already is the champion"
        else:
            try:
                champion = store.load_version(current)
                champion_score = evaluate(champion.pipeline, holdout).metrics().get(metric, 0.0)
            except ModelLoadError as error:
                logger.error("champion %s cannot be loaded: %s", current.version, error)
            if champion_score is None:
                promoted = True
                reason = f"champion {current.version} cannot be loaded"
            else:
                promoted = challenger > champion_score + margin
                comparison = "beats" if promoted else "does not beat"
                reason = (
                    f"holdout {metric} {challenger:.4f} {comparison} champion "
                    f"{current.version}'s {champion_score:.4f} by more than {margin:.4f}"
                )
        decision = PromotionDecision(
            promoted=promoted,
            reason=reason,
            version=version,
            previous_champion=None if current is None else str(current.version),
            challenger_score=challenger,
            champion_score=champion_score,
        )
        if promoted:
            store.set_champion(version)
        store.tag_version(version, {Tag.DECISION: decision.outcome, Tag.REASON: reason})
    return decision
