"""``/drift`` and ``/feedback``: live traffic against the served model's reference, and ground
truth."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cncwear.monitoring.drift import FeatureDrift
from cncwear.monitoring.window import LivePerformance
from cncwear_api.schemas.common import JsonScalar, Label, ModelRef
from cncwear_api.schemas.model import Histogram
from cncwear_api.schemas.runs import RunDriftSummary, RunPerformancePublic


class LiveFeatureDistribution(BaseModel):
    feature: str
    histogram: Histogram
    """Binned on the training histogram's edges (``GET /model/distributions``); values beyond
    them count in the first or last bin, as in the training histogram."""


class LiveDistributions(BaseModel):
    """The served rows in this replica's drift window, binned like the training distributions,
    so that the two can be drawn over each other."""

    model: ModelRef
    window_rows: int
    features: list[LiveFeatureDistribution]


class FeatureDriftPublic(BaseModel):
    name: str
    psi: float = Field(description="Population stability index over the reference's deciles")
    test: Literal["ks", "wasserstein", "toolpath"] = Field(
        description=(
            "Chosen like Evidently: KS up to 1,000 reference rows, else normed Wasserstein; "
            "`toolpath`: the rows' axis positions against the training runs' tool path"
        )
    )
    statistic: float = Field(
        description=(
            "KS p-value, Wasserstein distance / reference std, or (toolpath) the median distance "
            "to the nearest reference row in reference stds"
        )
    )
    threshold: float = Field(
        description="Fixed, or (calibrated) the normal band's edge: the null's quantile x margin"
    )
    drifted: bool
    reference_mean: float
    current_mean: float
    calibrated: bool = Field(
        default=False, description="Judged against the variation between normal training runs"
    )
    band: dict[str, float] = Field(
        default_factory=dict,
        description="Where normal runs lie: the between-runs null's quantiles (0.5, 0.9, 1.0)",
    )
    p_value: float | None = Field(
        default=None, description="KS p-value, shown beside a calibrated statistic"
    )
    spread: float | None = Field(
        default=None, description="Standard deviation over the reference's (calibrated)"
    )
    spread_threshold: float | None = None
    stuck: bool = Field(
        default=False, description="Constant over the rows, where no normal training run was"
    )

    @classmethod
    def of(cls, drift: FeatureDrift) -> FeatureDriftPublic:
        return cls.model_validate(drift.as_dict())


class LivePerformancePublic(BaseModel):
    labelled_rows: int = Field(description="Labelled rows in the feedback window")
    enough_rows: bool
    metrics: dict[str, float | None] = Field(description="Live accuracy, precision, recall")
    holdout: dict[str, float] = Field(description="The same on the held-out experiments")
    difference: dict[str, float | None] = Field(description="Live minus holdout")

    @classmethod
    def of(cls, performance: LivePerformance) -> LivePerformancePublic:
        return cls.model_validate(performance.as_dict())


class TriggerPublic(BaseModel):
    kind: str
    reason: str
    at: float
    job_id: str | None
    outcome: str


class TriggersPublic(BaseModel):
    retrain_on_drift: bool
    retrain_on_accuracy_drop: bool
    sustain_seconds: float
    drift_since: float | None = Field(description="Since when the traffic has been drifted")
    accuracy_drop_since: float | None
    recent: list[TriggerPublic] = Field(description="Retrains this replica asked for, and why")


class DriftPublic(BaseModel):
    model: ModelRef
    window_rows: int = Field(description="Served rows in the window now")
    window_capacity: int
    min_rows: int
    rows_seen: int = Field(description="Rows served by this version on this replica")
    enough_rows: bool
    drift_share: float
    drift_share_threshold: float
    drift_detected: bool
    drifted_features: list[str]
    features: list[FeatureDriftPublic]
    prediction: FeatureDriftPublic | None = Field(
        description="Predicted wear probability against the holdout's"
    )
    performance: LivePerformancePublic
    runs_performance: RunPerformancePublic | None = Field(
        description=(
            "The served version's predictions for labelled runs against their labels: from the "
            "shared store, so every replica and restart agrees (`performance` is this replica's "
            "feedback window). None while the store cannot be read."
        )
    )
    reference: dict[str, Any]
    triggers: TriggersPublic
    runs: list[RunDriftSummary] | None = Field(
        default=None,
        description=(
            "The latest runs judged against the served version's normal band, newest first "
            "(from the shared store; None while it cannot be read)"
        ),
    )


class RunDriftPublic(BaseModel):
    """One run's rows against the served model's reference: is this run unusual, and on what."""

    run: str
    model: ModelRef
    rows: int = Field(description="Active-cutting rows of the run judged")
    min_rows: int
    enough_rows: bool
    calibrated: bool = Field(description="Judged against the variation between normal runs")
    margin: float | None = Field(description="Factor on the null's quantile (calibrated)")
    drift_detected: bool
    drifted_features: list[str]
    features: list[FeatureDriftPublic]
    prediction: FeatureDriftPublic | None


class FeedbackRequest(BaseModel):
    """Ground truth for an earlier ``/predict`` request (its ``request_id``), or labelled rows."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"request_id": "4f1c0d2ab9e84d0c9d0f6f2f7c1e5b3a", "label": "worn"},
                {"request_id": "4f1c0d2ab9e84d0c9d0f6f2f7c1e5b3a", "labels": ["worn", "worn"]},
            ]
        },
    )

    request_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    label: Label | None = Field(
        default=None, description="The tool's state for every row (a tool's state is constant)"
    )
    labels: list[Label] | None = Field(default=None, description="One label per row, in order")
    rows: list[dict[str, JsonScalar]] | None = None
    columns: list[str] | None = None
    data: list[list[JsonScalar]] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> FeedbackRequest:
        has_rows = self.rows is not None or self.columns is not None or self.data is not None
        if (self.request_id is None) == (not has_rows):
            raise ValueError("give either 'request_id', or rows ('rows', or 'columns' + 'data')")
        if (self.label is None) == (self.labels is None):
            raise ValueError("give either 'label' (every row) or 'labels' (one per row)")
        return self


class FeedbackAccepted(BaseModel):
    model: ModelRef
    rows: int = Field(description="Labelled rows added to the feedback window")
    source: Literal["request_id", "rows"]
    performance: LivePerformancePublic
