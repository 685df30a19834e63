"""Deciding whether a newly registered version becomes the champion."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cncwear.core.errors import ModelLoadError
from cncwear.core.settings import PromotionPolicy, Settings
from cncwear.data.dataset import Dataset
from cncwear.registry.challenger import install_challenger
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import PromotionOutcome, ShadowState, Tag
from cncwear.training.evaluation import evaluate

logger = logging.getLogger(__name__)


@dataclass
class PromotionDecision:
    promoted: bool
    """Whether the version became the champion."""
    reason: str
    version: str
    previous_champion: str | None
    challenger_score: float
    champion_score: float | None
    challenger: bool = False
    """Whether it became the challenger instead (``CNCWEAR_PROMOTION_POLICY=shadow``)."""
    replaced_challenger: str | None = None
    """The challenger it replaced in shadow."""

    @property
    def outcome(self) -> PromotionOutcome:
        if self.promoted:
            return PromotionOutcome.PROMOTED
        if self.challenger:
            return PromotionOutcome.CHALLENGER
        return PromotionOutcome.NOT_PROMOTED


def decide_promotion(
    store: ModelStore,
    settings: Settings,
    version: str,
    challenger: float,
    holdout: Dataset,
) -> PromotionDecision:
    """Give ``version`` the champion alias if its holdout score beats the champion's on the same
    held-out experiments by the margin (under ``CNCWEAR_PROMOTION_POLICY=shadow``, the challenger
    alias: it takes over only on live evidence, ``docs/promotion.md``). The champion is re-scored
    here, on this holdout, inside the promotion lock: scores logged by other retrains may come from
    other data."""
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
        if promoted and champion_score is not None and _in_shadow(settings):
            _to_shadow(store, decision)
        elif promoted:
            store.set_champion(version)
        store.tag_version(version, {Tag.DECISION: decision.outcome, Tag.REASON: decision.reason})
    return decision


def _in_shadow(settings: Settings) -> bool:
    return settings.promotion_policy is PromotionPolicy.SHADOW


def _to_shadow(store: ModelStore, decision: PromotionDecision) -> None:
    """A winner over a champion that could be scored goes to shadow, not to the champion's place
    (with no champion, or one that cannot be loaded, there is nothing to shadow: it is promoted)."""
    reason = f"{ShadowState.AWAITING}; {decision.reason}"
    install = install_challenger(store, decision.version, reason)
    decision.promoted = False
    if install.installed:
        decision.challenger = True
        decision.replaced_challenger = install.replaced
        decision.reason = reason + (
            "" if install.replaced is None else f"; replaces challenger {install.replaced}"
        )
    else:
        decision.reason = (
            f"{decision.reason}, but challenger {install.kept} is in shadow and "
            "CNCWEAR_SHADOW_QUEUE=keep keeps it"
        )
