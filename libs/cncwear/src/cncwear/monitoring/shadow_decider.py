"""Taking the shadow decision for the challenger in the registry, and acting on it.

Any replica may call :func:`decide_challenger` when a run is labelled (or on a timer, for the age
rule). The evidence is read outside the promotion lock; the move is made inside it and only if the
challenger is still the version decided about, so several replicas deciding at once make one move
and the others drop theirs (:class:`~cncwear.core.errors.ChallengerChangedError`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from cncwear.core.errors import ChallengerChangedError
from cncwear.monitoring.shadow import (
    RunVerdicts,
    ShadowDecision,
    ShadowOutcome,
    ShadowPolicy,
    decide_shadow,
)
from cncwear.registry.challenger import (
    ChallengerMove,
    challenger_age_seconds,
    promote_challenger,
    reject_challenger,
)
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Decider

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChallengerVerdict:
    """A shadow decision about one challenger, and the move it made (None: nothing moved, because
    the evidence is inconclusive or another replica moved first)."""

    version: str
    decision: ShadowDecision
    move: ChallengerMove | None


def decide_challenger(
    store: ModelStore,
    version: str,
    runs: Sequence[RunVerdicts],
    *,
    now: float | None = None,
) -> ChallengerVerdict:
    """Decide about challenger ``version`` on the labelled runs compared so far, and promote or
    reject it (recorded as automatic) when the decision says so."""
    policy = ShadowPolicy.from_settings(store.settings)
    decision = decide_shadow(runs, policy, age_seconds=challenger_age_seconds(store, version, now))
    if decision.outcome is ShadowOutcome.INCONCLUSIVE:
        return ChallengerVerdict(version, decision, None)
    act = promote_challenger if decision.outcome is ShadowOutcome.PROMOTE else reject_challenger
    try:
        move = act(store, decision.reason, Decider.AUTOMATIC, version=version)
    except ChallengerChangedError as error:
        logger.info("shadow decision about version %s dropped: %s", version, error)
        return ChallengerVerdict(version, decision, None)
    return ChallengerVerdict(version, decision, move)
