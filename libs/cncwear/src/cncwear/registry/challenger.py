"""The challenger alias: a version in shadow, how it gets there, and how it leaves (promoted to
champion, or rejected), with every move recorded on the version and its retrain run.

Every move runs inside the promotion lock the offline promotion takes, so concurrent retrains,
replicas and operators make one move each (``docs/promotion.md``). :func:`install_challenger` is
called with the lock held (by the offline gate, which holds it already); :func:`promote_challenger`
and :func:`reject_challenger` take it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from cncwear.core.errors import ChallengerChangedError, NoChallengerError
from cncwear.core.settings import ShadowQueue
from cncwear.registry.events import publish_promotion
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Decider, PromotionOutcome, ShadowState, Tag

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChallengerInstall:
    """What :func:`install_challenger` did."""

    installed: bool
    """Whether the version now holds the challenger alias."""
    replaced: str | None
    """The challenger it replaced."""
    kept: str | None
    """The challenger kept in its place (``CNCWEAR_SHADOW_QUEUE=keep``)."""


@dataclass(frozen=True)
class ChallengerMove:
    """A challenger leaving the shadow: promoted or rejected."""

    state: ShadowState
    version: str
    previous_champion: str | None
    reason: str
    decided_by: Decider


def install_challenger(store: ModelStore, version: str, reason: str) -> ChallengerInstall:
    """Give ``version`` (a winner that passed the holdout gate) the challenger alias, replacing a
    challenger in shadow unless ``CNCWEAR_SHADOW_QUEUE=keep``. Call it inside the promotion
    lock."""
    current = store.challenger_version()
    replaced: str | None = None
    if current is not None and str(current.version) == version:  # a redelivered retrain job
        return ChallengerInstall(installed=True, replaced=None, kept=None)
    if current is not None and str(current.version) != version:
        if store.settings.shadow_queue is ShadowQueue.KEEP:
            logger.info("version %s kept out of shadow: %s is there", version, current.version)
            return ChallengerInstall(installed=False, replaced=None, kept=str(current.version))
        replaced = str(current.version)
        _record(
            store,
            replaced,
            ShadowState.REPLACED,
            f"replaced by version {version}, a newer winner that passed the holdout gate",
            Decider.AUTOMATIC,
        )
    store.set_challenger(version)
    store.tag_version(version, {Tag.CHALLENGER_SINCE: f"{time.time():.3f}"})
    _record(store, version, ShadowState.AWAITING, reason, Decider.AUTOMATIC)
    return ChallengerInstall(installed=True, replaced=replaced, kept=None)


def promote_challenger(
    store: ModelStore,
    reason: str,
    decided_by: Decider = Decider.MANUAL,
    *,
    version: str | None = None,
) -> ChallengerMove:
    """Make the challenger the champion (the challenger alias is removed), and announce it.
    Raises :class:`NoChallengerError` when nothing is in shadow, and
    :class:`ChallengerChangedError` when ``version`` is given and is not the challenger any more
    (read inside the lock: of several replicas deciding at once, one moves)."""
    with store.promotion_lock():
        challenger = _challenger(store, version)
        champion = store.champion_version()
        previous = None if champion is None else str(champion.version)
        store.set_champion(challenger)
        store.remove_challenger()
        store.tag_version(challenger, {Tag.DECISION: PromotionOutcome.PROMOTED, Tag.REASON: reason})
        _record(store, challenger, ShadowState.PROMOTED, reason, decided_by)
    publish_promotion(store.settings, challenger, previous=previous)
    logger.info("challenger %s promoted to champion (%s): %s", challenger, decided_by, reason)
    return ChallengerMove(ShadowState.PROMOTED, challenger, previous, reason, decided_by)


def reject_challenger(
    store: ModelStore,
    reason: str,
    decided_by: Decider = Decider.MANUAL,
    *,
    version: str | None = None,
) -> ChallengerMove:
    """Remove the challenger alias; the version stays in the registry, tagged with ``reason``.
    Raises like :func:`promote_challenger`."""
    with store.promotion_lock():
        challenger = _challenger(store, version)
        champion = store.champion_version()
        store.remove_challenger()
        store.tag_version(
            challenger, {Tag.DECISION: PromotionOutcome.NOT_PROMOTED, Tag.REASON: reason}
        )
        _record(store, challenger, ShadowState.REJECTED, reason, decided_by)
    logger.info("challenger %s rejected (%s): %s", challenger, decided_by, reason)
    previous = None if champion is None else str(champion.version)
    return ChallengerMove(ShadowState.REJECTED, challenger, previous, reason, decided_by)


def challenger_age_seconds(store: ModelStore, version: str, now: float | None = None) -> float:
    """How long ``version`` has been in shadow: since it got the alias, or, for an alias set by
    hand outside cncwear, since it was registered."""
    model_version = store.client.get_model_version(store.settings.model_name, version)
    since = model_version.tags.get(Tag.CHALLENGER_SINCE)
    started = float(since) if since else int(model_version.creation_timestamp) / 1000
    return max(0.0, (time.time() if now is None else now) - started)


def _challenger(store: ModelStore, expected: str | None = None) -> str:
    challenger = store.challenger_version()
    if challenger is None and expected is None:
        raise NoChallengerError(
            f"no version of {store.settings.model_name!r} holds the alias "
            f"{store.settings.challenger_alias!r}: nothing is in shadow"
        )
    found = None if challenger is None else str(challenger.version)
    if expected is not None and found != expected:
        raise ChallengerChangedError(
            f"version {expected} is not the challenger any more (now: {found or 'none'})"
        )
    assert found is not None
    return found


def _record(
    store: ModelStore, version: str, state: ShadowState, reason: str, decided_by: Decider
) -> None:
    """Tag the version and the retrain run that registered it."""
    tags: dict[str, str] = {
        Tag.SHADOW_STATE: state,
        Tag.SHADOW_REASON: reason,
        Tag.SHADOW_DECIDED_BY: decided_by,
    }
    store.tag_version(version, tags)
    run_id = store.version_tags(version).get(Tag.RETRAIN_RUN_ID)
    if run_id:
        try:
            store.tag_run(run_id, tags)
        except Exception as error:  # the version's tags are the record; the run's a copy
            logger.warning("retrain run %s of version %s not tagged: %s", run_id, version, error)
