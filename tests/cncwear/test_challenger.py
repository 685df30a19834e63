"""Under ``CNCWEAR_PROMOTION_POLICY=shadow`` a winner that passes the holdout gate becomes the
challenger, not the champion; a newer one replaces it (or is kept out, ``SHADOW_QUEUE=keep``); an
operator promotes or rejects it. On a real MLflow store: the session's trained registry of
tests/api, each scenario on a registered model of its own made of copies of its versions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cncwear.core.errors import NoChallengerError
from cncwear.core.settings import PromotionPolicy, Settings, ShadowQueue
from cncwear.data.dataset import Dataset
from cncwear.registry.challenger import promote_challenger, reject_challenger
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Decider, PromotionOutcome, ShadowState, Tag
from cncwear.training.evaluation import holdout_split
from cncwear.training.promotion import decide_promotion
from cncwear.training.retrain import retrain
from tests.api.conftest import Registry

from .challenger_helpers import scenario

AWAITING = "challenger: awaiting live evidence"


@pytest.fixture(scope="module")
def holdout(dataset: Dataset) -> Dataset:
    active = dataset.active()
    split = holdout_split(active, Settings().holdout_fraction, Settings().seed)
    return active.subset(split.holdout_experiments)


def gate(store: ModelStore, settings: Settings, version: str, holdout: Dataset) -> Any:
    score = float(store.version_tags(version)[Tag.holdout("accuracy")])
    return decide_promotion(store, settings, version, score, holdout)


def test_a_retrain_under_shadow_makes_its_winner_the_challenger_and_records_it(
    registry: Registry,
) -> None:
    settings, store, baseline, _ = scenario(
        registry,
        copies=0,
        promotion_policy=PromotionPolicy.SHADOW,
        mlflow_experiment=f"shadow-{uuid.uuid4().hex[:8]}",
        n_jobs=1,
    )
    report = retrain(settings, candidates=["decision_tree"], reason="shadow test")
    assert report.decision.promoted is False and report.decision.challenger is True
    assert report.decision.outcome is PromotionOutcome.CHALLENGER
    champion, challenger = store.champion_version(), store.challenger_version()
    assert champion is not None and str(champion.version) == baseline
    assert challenger is not None and str(challenger.version) == report.version
    tags = store.version_tags(report.version)
    assert tags[Tag.DECISION] == "challenger"
    assert tags[Tag.SHADOW_STATE] == AWAITING
    assert tags[Tag.SHADOW_DECIDED_BY] == "automatic"
    assert float(tags[Tag.CHALLENGER_SINCE]) > 0
    assert tags[Tag.REASON].startswith(AWAITING) and "beats champion" in tags[Tag.REASON]
    (summary,) = store.recent_retrains(limit=1)
    assert (summary.run_id, summary.decision) == (report.run_id, "challenger")
    assert summary.decision_reason == tags[Tag.REASON]
    assert (summary.shadow_state, summary.shadow_decided_by) == (AWAITING, "automatic")


def test_under_the_offline_policy_the_same_winner_becomes_the_champion(
    registry: Registry, holdout: Dataset
) -> None:
    settings, store, _, (forest,) = scenario(registry)
    decision = gate(store, settings, forest, holdout)
    assert decision.promoted and decision.outcome is PromotionOutcome.PROMOTED
    champion = store.champion_version()
    assert champion is not None and str(champion.version) == forest
    assert store.challenger_version() is None
    assert Tag.SHADOW_STATE not in store.version_tags(forest)


def test_a_winner_that_fails_the_gate_under_shadow_is_neither_champion_nor_challenger(
    registry: Registry, holdout: Dataset
) -> None:
    settings, store, baseline, (forest,) = scenario(registry, champion=False)
    store.set_champion(forest)
    shadow = registry.settings(model_name=settings.model_name, promotion_policy="shadow")
    decision = gate(store, shadow, baseline, holdout)
    assert decision.outcome is PromotionOutcome.NOT_PROMOTED
    assert store.challenger_version() is None


def test_with_no_champion_yet_a_shadow_winner_becomes_the_champion_directly(
    registry: Registry, holdout: Dataset
) -> None:
    settings, store, _, (forest,) = scenario(
        registry, champion=False, promotion_policy=PromotionPolicy.SHADOW
    )
    decision = gate(store, settings, forest, holdout)
    assert decision.promoted and decision.reason == "no champion yet"
    champion = store.champion_version()
    assert champion is not None and str(champion.version) == forest
    assert store.challenger_version() is None


def test_a_newer_winner_replaces_the_challenger_and_the_replaced_one_says_so(
    registry: Registry, holdout: Dataset
) -> None:
    settings, store, baseline, (first, second) = scenario(
        registry, copies=2, promotion_policy=PromotionPolicy.SHADOW
    )
    assert gate(store, settings, first, holdout).challenger
    decision = gate(store, settings, second, holdout)
    assert decision.challenger and decision.replaced_challenger == first
    assert decision.reason.endswith(f"replaces challenger {first}")
    challenger, champion = store.challenger_version(), store.champion_version()
    assert challenger is not None and str(challenger.version) == second
    assert champion is not None and str(champion.version) == baseline
    replaced = store.version_tags(first)
    assert replaced[Tag.SHADOW_STATE] == ShadowState.REPLACED
    assert replaced[Tag.SHADOW_REASON].startswith(f"replaced by version {second}")


def test_with_shadow_queue_keep_the_challenger_stays_and_the_newer_winner_gets_no_alias(
    registry: Registry, holdout: Dataset
) -> None:
    settings, store, _, (first, second) = scenario(
        registry, copies=2, promotion_policy=PromotionPolicy.SHADOW, shadow_queue=ShadowQueue.KEEP
    )
    gate(store, settings, first, holdout)
    decision = gate(store, settings, second, holdout)
    assert not decision.promoted and not decision.challenger
    assert decision.outcome is PromotionOutcome.NOT_PROMOTED
    assert f"challenger {first} is in shadow" in decision.reason
    challenger = store.challenger_version()
    assert challenger is not None and str(challenger.version) == first
    assert store.version_tags(first)[Tag.SHADOW_STATE] == AWAITING
    assert store.version_tags(second)[Tag.DECISION] == "not promoted"


def test_a_manual_promotion_makes_the_challenger_champion_and_removes_its_alias(
    registry: Registry, holdout: Dataset
) -> None:
    settings, store, baseline, (forest,) = scenario(
        registry, promotion_policy=PromotionPolicy.SHADOW
    )
    gate(store, settings, forest, holdout)
    move = promote_challenger(store, "the operator saw enough")
    assert (move.state, move.version, move.previous_champion) == (
        ShadowState.PROMOTED,
        forest,
        baseline,
    )
    assert move.decided_by is Decider.MANUAL
    champion = store.champion_version()
    assert champion is not None and str(champion.version) == forest
    assert store.challenger_version() is None
    tags = store.version_tags(forest)
    assert (tags[Tag.SHADOW_STATE], tags[Tag.SHADOW_DECIDED_BY]) == ("promoted", "manual")
    assert tags[Tag.DECISION] == "promoted" and tags[Tag.REASON] == "the operator saw enough"


def test_a_manual_rejection_removes_the_alias_and_keeps_the_version_with_the_reason(
    registry: Registry, holdout: Dataset
) -> None:
    settings, store, baseline, (forest,) = scenario(
        registry, promotion_policy=PromotionPolicy.SHADOW
    )
    gate(store, settings, forest, holdout)
    move = reject_challenger(store, "it calls every run worn")
    assert (move.state, move.version) == (ShadowState.REJECTED, forest)
    assert store.challenger_version() is None
    champion = store.champion_version()
    assert champion is not None and str(champion.version) == baseline
    tags = store.version_tags(forest)  # still registered
    assert tags[Tag.SHADOW_STATE] == "rejected"
    assert tags[Tag.SHADOW_REASON] == tags[Tag.REASON] == "it calls every run worn"
    assert tags[Tag.SHADOW_DECIDED_BY] == "manual"


@pytest.mark.parametrize("move", [promote_challenger, reject_challenger])
def test_with_nothing_in_shadow_a_manual_move_says_so_and_changes_nothing(
    registry: Registry, move: Any
) -> None:
    _, store, baseline, _ = scenario(registry, copies=0)
    with pytest.raises(NoChallengerError, match="'challenger': nothing is in shadow"):
        move(store, "by hand")
    champion = store.champion_version()
    assert champion is not None and str(champion.version) == baseline
