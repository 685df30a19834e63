"""The tag vocabulary: its values are what registries written before hold, so they are pinned."""

from __future__ import annotations

from cncwear.registry.tags import Decider, PromotionOutcome, ShadowState, Tag

WRITTEN_BEFORE = {
    "RUN_KIND": "cncwear.run_kind",
    "PARENT_RUN_ID": "mlflow.parentRunId",
    "CANDIDATE": "cncwear.candidate",
    "DATA_HASH": "cncwear.data_hash",
    "DATA_VERSION": "cncwear.data_version",
    "JOB_ID": "cncwear.job_id",
    "DECISION": "cncwear.promotion.decision",
    "REASON": "cncwear.promotion.reason",
    "SHADOW_STATE": "cncwear.shadow.state",
    "SHADOW_REASON": "cncwear.shadow.reason",
    "SHADOW_DECIDED_BY": "cncwear.shadow.decided_by",
    "CHALLENGER_SINCE": "cncwear.shadow.challenger_since",
    "RETRAIN_REASON": "reason",
    "BUDGET": "budget",
    "WINNER": "winner",
    "REGISTERED_VERSION": "registered_version",
    "ERROR": "error",
    "RETRAIN_RUN_ID": "retrain_run_id",
    "HOLDOUT_PREFIX": "holdout_",
    "COMPILED_PREFIX": "cncwear.compiled.",
    "COMPILED_FORMAT": "cncwear.compiled.format",
    "COMPILED_ARTIFACT": "cncwear.compiled.artifact",
    "COMPILED_SHA256": "cncwear.compiled.sha256",
    "COMPILED_CONVERTER": "cncwear.compiled.converter",
    "COMPILED_TOLERANCE": "cncwear.compiled.tolerance",
    "COMPILED_MAX_ABS_DIFF": "cncwear.compiled.max_abs_diff",
    "COMPILED_PARITY_ROWS": "cncwear.compiled.parity_rows",
    "COMPILED_RUNTIME": "cncwear.compiled.runtime",
    "COMPILED_REASON": "cncwear.compiled.reason",
}


def test_tag_values_are_the_names_registries_already_hold() -> None:
    assert {tag.name: tag.value for tag in Tag} == WRITTEN_BEFORE


def test_a_holdout_tag_is_the_prefix_and_the_metric() -> None:
    assert Tag.holdout("mcc") == "holdout_mcc"


def test_a_tag_reads_and_formats_as_its_plain_name() -> None:
    tags = {"cncwear.job_id": "abc"}
    assert tags.get(Tag.JOB_ID) == "abc"
    assert f"tags.`{Tag.RUN_KIND}` = 'retrain'" == "tags.`cncwear.run_kind` = 'retrain'"


def test_promotion_outcomes_are_the_values_versions_already_hold() -> None:
    assert [outcome.value for outcome in PromotionOutcome] == [
        "promoted",
        "not promoted",
        "challenger",
    ]


def test_shadow_states_and_deciders_are_the_values_versions_already_hold() -> None:
    assert [state.value for state in ShadowState] == [
        "challenger: awaiting live evidence",
        "promoted",
        "rejected",
        "replaced",
    ]
    assert [decider.value for decider in Decider] == ["automatic", "manual"]
