"""The shadow decision acted on in the registry: a winning challenger is promoted, a losing or
stale one rejected, an inconclusive one left alone, all recorded as automatic; several replicas
deciding at the same moment make one move. Real MLflow store (copies of the session's registry);
the verdicts are built by hand (the live scoring that will produce them is not built yet)."""

from __future__ import annotations

import multiprocessing
from typing import Any

from cncwear.core.settings import PromotionLock, Settings
from cncwear.monitoring.shadow import ShadowOutcome
from cncwear.monitoring.shadow_decider import decide_challenger
from cncwear.registry.challenger import install_challenger
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from tests.api.conftest import Registry

from .challenger_helpers import runs, scenario

SHADOW = {"promotion_policy": "shadow", "shadow_min_runs": 10, "shadow_alpha": 0.05}
WINNING = {"challenger_wins": 7, "both_right": 5}
LOSING = {"champion_wins": 6, "both_right": 4}


def in_shadow(registry: Registry, **changes: Any) -> tuple[Settings, ModelStore, str, str]:
    """A champion (baseline copy) and a challenger (forest copy) just put in shadow."""
    settings, store, champion, (challenger,) = scenario(registry, **{**SHADOW, **changes})
    with store.promotion_lock():
        install_challenger(store, challenger, "challenger: awaiting live evidence; a test")
    return settings, store, champion, challenger


def aliases(store: ModelStore) -> tuple[str | None, str | None]:
    champion, challenger = store.champion_version(), store.challenger_version()
    return (
        None if champion is None else str(champion.version),
        None if challenger is None else str(challenger.version),
    )


def test_a_challenger_that_wins_on_labelled_runs_is_promoted_automatically(
    registry: Registry,
) -> None:
    _, store, champion, challenger = in_shadow(registry)
    verdict = decide_challenger(store, challenger, runs(**WINNING))
    assert verdict.decision.outcome is ShadowOutcome.PROMOTE
    assert verdict.move is not None and verdict.move.previous_champion == champion
    assert aliases(store) == (challenger, None)
    tags = store.version_tags(challenger)
    assert (tags[Tag.SHADOW_STATE], tags[Tag.SHADOW_DECIDED_BY]) == ("promoted", "automatic")
    assert "the challenger wins" in tags[Tag.SHADOW_REASON]


def test_a_challenger_that_loses_is_rejected_and_the_champion_stays(registry: Registry) -> None:
    _, store, champion, challenger = in_shadow(registry)
    verdict = decide_challenger(store, challenger, runs(**LOSING))
    assert verdict.decision.outcome is ShadowOutcome.REJECT and verdict.move is not None
    assert aliases(store) == (champion, None)
    tags = store.version_tags(challenger)
    assert (tags[Tag.SHADOW_STATE], tags[Tag.SHADOW_DECIDED_BY]) == ("rejected", "automatic")
    assert "loses" in tags[Tag.SHADOW_REASON]


def test_inconclusive_evidence_moves_nothing(registry: Registry) -> None:
    _, store, champion, challenger = in_shadow(registry)
    verdict = decide_challenger(store, challenger, runs(challenger_wins=3, champion_wins=2))
    assert verdict.decision.outcome is ShadowOutcome.INCONCLUSIVE and verdict.move is None
    assert aliases(store) == (champion, challenger)
    assert verdict.decision.needs


def test_a_challenger_past_its_max_age_is_rejected_counting_from_when_it_got_the_alias(
    registry: Registry,
) -> None:
    _, store, champion, challenger = in_shadow(registry, shadow_max_age_seconds=3600)
    since = float(store.version_tags(challenger)[Tag.CHALLENGER_SINCE])
    early = decide_challenger(store, challenger, [], now=since + 3599)
    assert early.move is None and aliases(store) == (champion, challenger)
    late = decide_challenger(store, challenger, [], now=since + 3600)
    assert late.decision.outcome is ShadowOutcome.REJECT and late.move is not None
    assert "past the max age" in store.version_tags(challenger)[Tag.SHADOW_REASON]
    assert aliases(store) == (champion, None)


def test_a_decision_about_a_replaced_challenger_is_dropped(registry: Registry) -> None:
    _, store, champion, (first, second) = scenario(registry, copies=2, **SHADOW)
    with store.promotion_lock():
        install_challenger(store, first, "first")
        install_challenger(store, second, "second")
    verdict = decide_challenger(store, first, runs(**WINNING))
    assert verdict.decision.outcome is ShadowOutcome.PROMOTE and verdict.move is None
    assert aliases(store) == (champion, second)


_BARRIER: list[Any] = []


def _keep_barrier(barrier: Any) -> None:
    """Pool initializer: a barrier reaches a worker only when the worker is started."""
    _BARRIER.append(barrier)


def _decide_at_the_barrier(changes: dict[str, Any], version: str) -> bool:
    """One replica: wait for the other, then decide on the same winning runs."""
    store = ModelStore(Settings(**changes))
    evidence = runs(**WINNING)
    _BARRIER[0].wait(timeout=120)
    return decide_challenger(store, version, evidence).move is not None


def test_two_replicas_deciding_at_the_same_moment_make_one_promotion(
    registry: Registry, redis_url: str
) -> None:
    """Through the Redis lock, as replicas on several machines take it (the file lock is the
    same code path round another lock; the offline promotion's concurrency test covers it)."""
    lock = PromotionLock.REDIS
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    with context.Pool(2, initializer=_keep_barrier, initargs=(barrier,)) as pool:
        for _ in range(3):
            settings, store, _, challenger = in_shadow(
                registry, promotion_lock=lock, redis_url=redis_url
            )
            changes = {
                "home": str(settings.home),
                "model_name": settings.model_name,
                "promotion_lock": lock.value,
                "redis_url": redis_url,
                **SHADOW,
            }
            moved = pool.starmap(_decide_at_the_barrier, [(changes, challenger)] * 2)
            assert sorted(moved) == [False, True]
            assert aliases(store) == (challenger, None)
