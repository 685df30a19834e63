"""The names cncwear writes on MLflow runs and model versions, and the promotion decision's values.

Values are what registries written before hold: renaming a member is free, changing a value makes
old runs and versions unreadable."""

from __future__ import annotations

from enum import StrEnum


class Tag(StrEnum):
    """Tag names on runs and model versions."""

    RUN_KIND = "cncwear.run_kind"
    """``retrain`` on a retrain's parent run, ``candidate`` on each candidate's child run."""
    PARENT_RUN_ID = "mlflow.parentRunId"
    """Set by MLflow on a nested run: a candidate's retrain."""
    CANDIDATE = "cncwear.candidate"
    DATA_HASH = "cncwear.data_hash"
    DATA_VERSION = "cncwear.data_version"
    """The dataset version (``cncwear.data.runs.versions``) a retrain trained on: on its run and on
    the version it registered."""
    JOB_ID = "cncwear.job_id"
    DECISION = "cncwear.promotion.decision"
    """A :class:`PromotionOutcome`, on the retrain's run and on the version it registered."""
    REASON = "cncwear.promotion.reason"
    """Why the promotion decision went the way it did."""

    # On a challenger's version and the retrain run that registered it (docs/promotion.md).
    SHADOW_STATE = "cncwear.shadow.state"
    """A :class:`ShadowState`: where the version is in its time as a challenger."""
    SHADOW_REASON = "cncwear.shadow.reason"
    """Why it got there."""
    SHADOW_DECIDED_BY = "cncwear.shadow.decided_by"
    """A :class:`Decider`: who moved it last."""
    CHALLENGER_SINCE = "cncwear.shadow.challenger_since"
    """When the version got the challenger alias (Unix seconds): its age in shadow counts from
    it."""

    # On a retrain's run.
    RETRAIN_REASON = "reason"
    """Why the retrain ran: ``on demand``, ``new data``, a schedule, drift."""
    BUDGET = "budget"
    WINNER = "winner"
    REGISTERED_VERSION = "registered_version"

    # On a candidate's run.
    ERROR = "error"
    """Why the candidate could not be trained."""

    # On a registered version.
    RETRAIN_RUN_ID = "retrain_run_id"
    HOLDOUT_PREFIX = "holdout_"
    """Followed by a metric name: the version's score on the held-out experiments (``holdout_mcc``),
    see :meth:`holdout`."""

    # On a registered version: its compiled form.
    COMPILED_PREFIX = "cncwear.compiled."
    """The start of every tag below."""
    COMPILED_FORMAT = "cncwear.compiled.format"
    """``onnx`` when a checked compiled form exists, ``none`` when the version is served by
    scikit-learn."""
    COMPILED_ARTIFACT = "cncwear.compiled.artifact"
    """Folder of the compiled form among the artifacts of the version's run."""
    COMPILED_SHA256 = "cncwear.compiled.sha256"
    COMPILED_CONVERTER = "cncwear.compiled.converter"
    COMPILED_TOLERANCE = "cncwear.compiled.tolerance"
    COMPILED_MAX_ABS_DIFF = "cncwear.compiled.max_abs_diff"
    COMPILED_PARITY_ROWS = "cncwear.compiled.parity_rows"
    COMPILED_RUNTIME = "cncwear.compiled.runtime"
    COMPILED_REASON = "cncwear.compiled.reason"

    @staticmethod
    def holdout(metric: str) -> str:
        """The tag of a version's held-out score for ``metric``."""
        return f"{Tag.HOLDOUT_PREFIX}{metric}"


class PromotionOutcome(StrEnum):
    """What a retrain's promotion decision did: the value of :attr:`Tag.DECISION` and of the
    worker's ``cncwear_worker_retrains_total{outcome}`` label."""

    PROMOTED = "promoted"
    NOT_PROMOTED = "not promoted"
    CHALLENGER = "challenger"
    """Passed the holdout gate under ``CNCWEAR_PROMOTION_POLICY=shadow``: in shadow, awaiting live
    evidence."""


class ShadowState(StrEnum):
    """The value of :attr:`Tag.SHADOW_STATE`."""

    AWAITING = "challenger: awaiting live evidence"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    REPLACED = "replaced"
    """A newer retrain's winner took the challenger alias."""


class Decider(StrEnum):
    """The value of :attr:`Tag.SHADOW_DECIDED_BY`."""

    AUTOMATIC = "automatic"
    MANUAL = "manual"
