"""The shadow decision: an exact McNemar test on paired run verdicts, with the both-labels and the
age rules. Runs are built by hand; each test says which runs each model got right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.stats import binomtest

from cncwear.core.settings import PromotionPolicy, Settings, ShadowQueue
from cncwear.data.runs.records import ShadowRows
from cncwear.monitoring.shadow import (
    RunVerdicts,
    ShadowOutcome,
    ShadowPolicy,
    compare_runs,
    decide_shadow,
    majority_verdict,
    mcnemar_p_value,
    wins_needed,
)

from .challenger_helpers import UNWORN, WORN, runs

POLICY = ShadowPolicy(min_runs=10, alpha=0.05, max_age_seconds=7 * 24 * 3600)
YOUNG = 3600.0


def test_a_challenger_that_wins_enough_runs_of_both_labels_is_promoted() -> None:
    decision = decide_shadow(runs(challenger_wins=7, both_right=5), POLICY, age_seconds=YOUNG)
    assert decision.outcome is ShadowOutcome.PROMOTE
    assert (decision.challenger_wins, decision.champion_wins, decision.runs) == (7, 0, 12)
    assert decision.p_value == pytest.approx(2 * 0.5**7)
    assert decision.runs_by_label == {"unworn": 6, "worn": 6}
    assert "wins" in decision.reason and decision.needs == []


def test_runs_both_models_get_right_or_wrong_weigh_nothing_in_the_test() -> None:
    few = decide_shadow(runs(challenger_wins=7, both_right=5), POLICY, age_seconds=YOUNG)
    many = decide_shadow(runs(challenger_wins=7, both_right=500), POLICY, age_seconds=YOUNG)
    assert few.p_value == many.p_value == pytest.approx(binomtest(7, 7).pvalue)


def test_a_significant_win_on_runs_of_one_label_only_is_not_a_promotion() -> None:
    decision = decide_shadow(
        runs(challenger_wins=8, both_right=4, labels="worn"), POLICY, age_seconds=YOUNG
    )
    assert decision.p_value < POLICY.alpha
    assert decision.outcome is ShadowOutcome.INCONCLUSIVE
    assert decision.labels_missing == ["unworn"]
    assert any("none is unworn yet" in need for need in decision.needs)


def test_a_significant_win_on_fewer_runs_than_the_minimum_waits_for_more() -> None:
    decision = decide_shadow(runs(challenger_wins=7), POLICY, age_seconds=YOUNG)
    assert decision.p_value < POLICY.alpha
    assert decision.outcome is ShadowOutcome.INCONCLUSIVE
    assert decision.runs_needed == 3
    assert decision.wins_needed == 0
    assert decision.needs[0] == "3 more labelled run(s) (at least 10)"


def test_a_challenger_that_loses_significantly_is_rejected_even_on_few_runs() -> None:
    decision = decide_shadow(runs(champion_wins=6), POLICY, age_seconds=YOUNG)
    assert decision.outcome is ShadowOutcome.REJECT
    assert decision.p_value == pytest.approx(2 * 0.5**6)
    assert "loses" in decision.reason


def test_an_even_split_is_inconclusive_and_says_what_a_promotion_needs() -> None:
    decision = decide_shadow(
        runs(challenger_wins=3, champion_wins=3, both_right=10), POLICY, age_seconds=YOUNG
    )
    assert decision.outcome is ShadowOutcome.INCONCLUSIVE and not decision.moves
    assert decision.p_value == pytest.approx(1.0)
    # 3 + k against 3 is first significant at k = 9: binomtest(12, 15) gives p = 0.035.
    assert decision.wins_needed == 9
    assert binomtest(11, 14).pvalue >= 0.05 > binomtest(12, 15).pvalue
    assert any("at least 9 more run(s)" in need for need in decision.needs)
    assert decision.needs[-1] == "or else rejection after 601200 s (7.0 d) more in shadow"


def test_a_challenger_past_its_max_age_without_a_win_is_rejected() -> None:
    evidence = runs(challenger_wins=3, champion_wins=3, both_right=10)
    just_before = decide_shadow(evidence, POLICY, age_seconds=POLICY.max_age_seconds - 1)
    at_max_age = decide_shadow(evidence, POLICY, age_seconds=POLICY.max_age_seconds)
    assert just_before.outcome is ShadowOutcome.INCONCLUSIVE
    assert at_max_age.outcome is ShadowOutcome.REJECT
    assert "past the max age" in at_max_age.reason


def test_a_challenger_past_its_max_age_with_no_runs_at_all_is_rejected() -> None:
    decision = decide_shadow([], POLICY, age_seconds=POLICY.max_age_seconds + 1)
    assert decision.outcome is ShadowOutcome.REJECT
    assert decision.runs == 0 and decision.p_value == 1.0


def test_a_significant_win_in_hand_at_the_max_age_still_promotes() -> None:
    decision = decide_shadow(
        runs(challenger_wins=7, both_right=5), POLICY, age_seconds=POLICY.max_age_seconds * 2
    )
    assert decision.outcome is ShadowOutcome.PROMOTE


def test_a_run_whose_rows_split_evenly_counts_as_wrong_for_that_model() -> None:
    tied = RunVerdicts(run="tied", label=WORN, champion=None, challenger=WORN)
    decision = decide_shadow([tied], POLICY, age_seconds=YOUNG)
    assert (decision.challenger_wins, decision.champion_wins) == (1, 0)


def test_the_majority_verdict_of_a_run_is_its_most_predicted_label() -> None:
    assert majority_verdict(np.array([1, 1, 0])) == WORN
    assert majority_verdict([0, 0, 1, 0]) == UNWORN
    assert majority_verdict([0, 1]) is None
    assert majority_verdict([]) is None


def test_the_mcnemar_p_value_is_the_two_sided_binomial_of_the_discordant_runs() -> None:
    assert mcnemar_p_value(0, 0) == 1.0
    assert mcnemar_p_value(9, 2) == pytest.approx(binomtest(9, 11, 0.5).pvalue)
    assert mcnemar_p_value(2, 9) == mcnemar_p_value(9, 2)
    assert wins_needed(0, 0, 0.05) == 6  # 6 of 6: p = 0.03125; 5 of 5: p = 0.0625


def test_the_policy_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CNCWEAR_PROMOTION_POLICY", "shadow")
    monkeypatch.setenv("CNCWEAR_SHADOW_MIN_RUNS", "12")
    monkeypatch.setenv("CNCWEAR_SHADOW_ALPHA", "0.01")
    monkeypatch.setenv("CNCWEAR_SHADOW_MAX_AGE_SECONDS", "86400")
    monkeypatch.setenv("CNCWEAR_SHADOW_QUEUE", "keep")
    monkeypatch.setenv("CNCWEAR_CHALLENGER_ALIAS", "shadow")
    settings = Settings(home=tmp_path)
    assert settings.promotion_policy is PromotionPolicy.SHADOW
    assert settings.shadow_queue is ShadowQueue.KEEP
    assert settings.challenger_alias == "shadow"
    assert ShadowPolicy.from_settings(settings) == ShadowPolicy(
        min_runs=12, alpha=0.01, max_age_seconds=86400.0
    )


def test_offline_promotion_stays_the_default(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.promotion_policy is PromotionPolicy.OFFLINE
    assert (settings.champion_alias, settings.challenger_alias) == ("champion", "challenger")
    assert settings.shadow_queue is ShadowQueue.REPLACE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("promotion_policy", "online"),
        ("shadow_queue", "stack"),
        ("shadow_alpha", 1.5),
        ("shadow_min_runs", 0),
        ("shadow_max_age_seconds", 0),
    ],
)
def test_a_bad_shadow_setting_is_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


def test_the_challenger_alias_cannot_be_the_champions() -> None:
    with pytest.raises(ValidationError, match="CNCWEAR_CHALLENGER_ALIAS must differ"):
        Settings(challenger_alias="champion")


def test_the_comparison_takes_each_models_majority_over_the_rows_it_scored() -> None:
    nan = np.nan
    scored = [
        # worn: the champion says worn on 2 of 3 rows; the challenger scored 2 rows, both worn.
        ShadowRows("a", 1, np.array([0.9, 0.8, 0.1, nan]), np.array([nan, 0.7, 0.6, nan])),
        # unworn: the champion says worn on both; the challenger unworn on its one row.
        ShadowRows("b", 0, np.array([0.9, 0.6]), np.array([0.2, nan])),
    ]
    comparison = compare_runs(scored)
    assert comparison.runs == [
        RunVerdicts("a", label=1, champion=1, challenger=1),
        RunVerdicts("b", label=0, champion=1, challenger=0),
    ]
    assert comparison.champion_accuracy == pytest.approx(2 / 5)
    assert comparison.challenger_accuracy == pytest.approx(3 / 3)
    # Rows both scored: a's second (both worn) and third (unworn, worn), b's first (worn, unworn).
    assert comparison.rows_compared == 3
    assert comparison.agreement == pytest.approx(1 / 3)


def test_with_no_run_scored_there_is_no_figure() -> None:
    comparison = compare_runs([])
    assert comparison.runs == []
    assert comparison.champion_accuracy is comparison.agreement is None
