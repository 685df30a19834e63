"""Request and response schemas of the prediction service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import WithJsonSchema

from cncwear.explain import (
    Condition,
    ExplainMethod,
    FeatureContribution,
    FeatureImportance,
    LimeWeight,
    PartialDependence,
    Surrogate,
)
from cncwear.explain.results import OutputSpace
from cncwear.registry.store import CandidateSummary, RetrainSummary

JsonScalar = Annotated[
    Any, WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]})
]
"""A cell of a raw row as sent: a number, text (the machining step) or null. Cells are checked by
``cncwear_api.batch`` against the model's schema, not here: one pydantic error per bad cell (and
per type of a union) would let a body of a few megabytes cost minutes."""

Label = Literal["unworn", "worn"]

# A real row: experiment 1 (unworn tool), the 201st row of active cutting.
EXAMPLE_ROW: dict[str, Any] = {
    "X1_ActualPosition": 147.0, "X1_ActualVelocity": -5.22, "X1_ActualAcceleration": 37.5,
    "X1_CommandPosition": 147.0, "X1_CommandVelocity": -5.37, "X1_CommandAcceleration": 4.04,
    "X1_CurrentFeedback": -5.82, "X1_DCBusVoltage": 0.105, "X1_OutputCurrent": 326.0,
    "X1_OutputVoltage": 14.2, "X1_OutputPower": 0.00116,
    "Y1_ActualPosition": 103.0, "Y1_ActualVelocity": -2.6, "Y1_ActualAcceleration": -12.5,
    "Y1_CommandPosition": 103.0, "Y1_CommandVelocity": -2.69, "Y1_CommandAcceleration": -8.12,
    "Y1_CurrentFeedback": -7.99, "Y1_DCBusVoltage": 0.136, "Y1_OutputCurrent": 324.0,
    "Y1_OutputVoltage": 11.5, "Y1_OutputPower": 0.000794,
    "Z1_ActualPosition": 29.5, "Z1_ActualVelocity": 0.0, "Z1_ActualAcceleration": 0.0,
    "Z1_CommandPosition": 29.5, "Z1_CommandVelocity": 0.0, "Z1_CommandAcceleration": 0.0,
    "Z1_CurrentFeedback": 0.0, "Z1_DCBusVoltage": 0.0, "Z1_OutputCurrent": 0.0,
    "Z1_OutputVoltage": 0.0,
    "S1_ActualPosition": 702.0, "S1_ActualVelocity": 53.5, "S1_ActualAcceleration": 60.1,
    "S1_CommandPosition": 703.0, "S1_CommandVelocity": 53.3, "S1_CommandAcceleration": 0.0,
    "S1_CurrentFeedback": 17.4, "S1_DCBusVoltage": 0.84, "S1_OutputCurrent": 318.0,
    "S1_OutputVoltage": 119.0, "S1_OutputPower": 0.158, "S1_SystemInertia": 12.0,
    "M1_CURRENT_PROGRAM_NUMBER": 1.0, "M1_sequence_number": 37.0, "M1_CURRENT_FEEDRATE": 6.0,
    "Machining_Process": "Layer 1 Down",
}  # fmt: skip

# A real row: experiment 6 (worn tool), the 201st row of active cutting.
EXAMPLE_WORN_ROW: dict[str, Any] = {
    "X1_ActualPosition": 150.0, "X1_ActualVelocity": -6.0, "X1_ActualAcceleration": 25.0,
    "X1_CommandPosition": 150.0, "X1_CommandVelocity": -6.0, "X1_CommandAcceleration": 0.0,
    "X1_CurrentFeedback": -6.13, "X1_DCBusVoltage": 0.0961, "X1_OutputCurrent": 325.0,
    "X1_OutputVoltage": 13.2, "X1_OutputPower": 0.00119,
    "Y1_ActualPosition": 89.5, "Y1_ActualVelocity": -0.15, "Y1_ActualAcceleration": -75.0,
    "Y1_CommandPosition": 89.5, "Y1_CommandVelocity": 0.0, "Y1_CommandAcceleration": 0.0,
    "Y1_CurrentFeedback": 5.11, "Y1_DCBusVoltage": 0.107, "Y1_OutputCurrent": 324.0,
    "Y1_OutputVoltage": 8.35, "Y1_OutputPower": -3.24e-05,
    "Z1_ActualPosition": 27.7, "Z1_ActualVelocity": -0.025, "Z1_ActualAcceleration": -6.25,
    "Z1_CommandPosition": 27.7, "Z1_CommandVelocity": 0.0, "Z1_CommandAcceleration": 0.0,
    "Z1_CurrentFeedback": 0.0, "Z1_DCBusVoltage": 0.0, "Z1_OutputCurrent": 0.0,
    "Z1_OutputVoltage": 0.0,
    "S1_ActualPosition": -1070.0, "S1_ActualVelocity": 53.4, "S1_ActualAcceleration": 11.6,
    "S1_CommandPosition": -1070.0, "S1_CommandVelocity": 53.3, "S1_CommandAcceleration": 0.0,
    "S1_CurrentFeedback": 19.2, "S1_DCBusVoltage": 0.854, "S1_OutputCurrent": 319.0,
    "S1_OutputVoltage": 119.0, "S1_OutputPower": 0.165, "S1_SystemInertia": 12.0,
    "M1_CURRENT_PROGRAM_NUMBER": 1.0, "M1_sequence_number": 106.0, "M1_CURRENT_FEEDRATE": 6.0,
    "Machining_Process": "Layer 1 Up",
}  # fmt: skip


class PredictRequest(BaseModel):
    """Raw sensor rows of one tool, either as records (``rows``) or as column names and rows of
    values (``columns`` + ``data``, like MLflow's ``dataframe_split``: faster for large batches)."""

    model_config = ConfigDict(extra="forbid")

    rows: list[dict[str, JsonScalar]] | None = None
    columns: list[str] | None = None
    data: list[list[JsonScalar]] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> PredictRequest:
        columnar = self.columns is not None or self.data is not None
        if (self.rows is None) == (not columnar):
            raise ValueError("give either 'rows', or 'columns' and 'data'")
        if columnar and (self.columns is None or self.data is None):
            raise ValueError("the columnar form needs both 'columns' and 'data'")
        return self

    @property
    def row_count(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.data or [])


REQUEST_EXAMPLES: dict[str, Any] = {
    "rows": {
        "summary": "Rows as records",
        "value": {"rows": [EXAMPLE_ROW, EXAMPLE_WORN_ROW]},
    },
    "columns": {
        "summary": "Columns and data (faster for large batches)",
        "value": {
            "columns": list(EXAMPLE_ROW),
            "data": [list(EXAMPLE_ROW.values()), list(EXAMPLE_WORN_ROW.values())],
        },
    },
}


class ModelRef(BaseModel):
    name: str
    version: str


class Prediction(BaseModel):
    label: Label
    probability_worn: float = Field(ge=0.0, le=1.0)


class Verdict(BaseModel):
    """The batch read as readings of one tool: a tool's state does not change within seconds, and
    many rows together are far more reliable than any single one."""

    label: Label
    """``worn`` when the mean wear probability is at least the decision threshold."""
    mean_probability_worn: float = Field(ge=0.0, le=1.0)
    rows: int
    worn_rows: int
    """Rows whose own label is ``worn``."""


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[Prediction]
    verdict: Verdict
    request_id: str

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": {"name": "cncwear", "version": "3"},
                    "predictions": [
                        {"label": "unworn", "probability_worn": 0.075},
                        {"label": "worn", "probability_worn": 0.925},
                    ],
                    "verdict": {
                        "label": "unworn",
                        "mean_probability_worn": 0.5,
                        "rows": 2,
                        "worn_rows": 1,
                    },
                    "request_id": "4f1c0d2ab9e84d0c9d0f6f2f7c1e5b3a",
                }
            ]
        }
    )


class Problem(BaseModel):
    """One thing wrong with the request; the offending value is never echoed back."""

    row: int | None = None
    """0-based position of the row in the batch; null for a column or the whole body."""
    column: str
    problem: str


class ProblemsResponse(BaseModel):
    detail: str
    problems: list[Problem]
    total: int
    """Problems found; only the first ones are listed."""
    request_id: str | None = None


class ErrorResponse(BaseModel):
    detail: str
    request_id: str | None = None


class GroupedMetrics(BaseModel):
    """Measured on whole experiments the model never saw: the figures to trust."""

    description: str = (
        "held-out experiments: whole experiments kept out of training, rows scored one by one"
    )
    holdout: dict[str, float]
    """Row-level metrics on the held-out experiments (accuracy, precision, recall, f1, mcc,
    roc_auc, and experiment_accuracy: the share of held-out experiments whose majority vote is
    right)."""
    cv_grouped_accuracy: float | None
    """Cross-validated accuracy with folds of whole training experiments."""
    holdout_experiments: list[int]


class LeakyFigure(BaseModel):
    """The random row split's accuracy, shown only to compare: it leaks."""

    accuracy: float | None
    warning: str = (
        "LEAKY: a random 80/20 split of rows, where near-duplicate neighbouring rows of one "
        "experiment land on both sides; it overstates accuracy and is never used to select or "
        "promote a model"
    )


class Serving(BaseModel):
    runtime: Literal["onnxruntime", "scikit-learn"]
    converter: str | None
    parity_max_abs_diff: float | None
    """Largest difference in wear probability from scikit-learn, measured on the held-out rows
    when the version was registered."""
    parity_tolerance: float | None
    parity_rows: int | None
    load_check_max_abs_diff: float | None
    """The same difference measured again by this server when it loaded the model."""
    fallback_reason: str | None
    """Why scikit-learn serves this version, when it does."""


class ModelPublic(BaseModel):
    name: str
    version: str
    run_id: str
    retrain_run_id: str | None
    candidate: str | None
    estimator: str
    engine: str
    """What searched the configuration: ``scikit-learn`` (randomized search) or an AutoML
    engine."""
    trained_at: datetime | None
    registered_at: datetime | None
    loaded_at: datetime
    data_hash: str | None
    promotion_reason: str | None
    input_columns: list[str]
    selected_features: list[str]
    metrics: GroupedMetrics
    leaky_row_split: LeakyFigure
    serving: Serving


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    model: ModelRef | None = None
    detail: str | None = None


# -- what the dashboard plots (computed when a version is trained or loaded, served as is) -------


class ConfusionMatrix(BaseModel):
    """Rows are the true label, columns the predicted one, in the order of ``labels``."""

    labels: list[Label] = ["unworn", "worn"]
    counts: list[list[int]]


class RocCurve(BaseModel):
    fpr: list[float]
    tpr: list[float]
    thresholds: list[float]
    """Wear probability from which a row is called worn, at each point."""
    auc: float | None


class PrecisionRecallCurve(BaseModel):
    recall: list[float]
    precision: list[float]
    thresholds: list[float]
    average_precision: float


class ModelEvaluation(BaseModel):
    """The champion on its held-out experiments, as scored when it was trained."""

    model: ModelRef
    description: str = (
        "held-out experiments: whole experiments kept out of training; the label threshold is 0.5"
    )
    holdout_experiments: list[int]
    metrics: dict[str, float]
    leaky_row_split_accuracy: float | None
    confusion_matrix: ConfusionMatrix | None
    """None for a version trained before it was recorded."""
    roc: RocCurve | None
    precision_recall: PrecisionRecallCurve | None
    per_experiment_accuracy: dict[str, float]
    """Row accuracy of each held-out experiment (keys: experiment numbers)."""


class Histogram(BaseModel):
    edges: list[float]
    """``len(counts) + 1`` bin edges."""
    counts: list[int]


class FeatureDistribution(BaseModel):
    feature: str
    """An engineered feature, as the model's estimator sees it."""
    mean: float
    std: float
    histogram: Histogram


class TrainingDistributions(BaseModel):
    """The training data as the model saw it, from the reference profile logged with the model:
    what drift monitoring compares live traffic against."""

    model: ModelRef
    rows: int
    """Training rows the profile describes."""
    sample_rows: int
    """Rows of the profile's sample behind the histograms."""
    class_balance: dict[str, float]
    features: list[FeatureDistribution]
    holdout_probability_worn: Histogram
    """Predicted wear probability on the held-out experiments."""


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


class ExampleRow(BaseModel):
    experiment: int
    true_label: Label
    row: dict[str, JsonScalar]
    """Raw sensor row, ready for ``/predict`` and ``/explain``."""


class ExampleRows(BaseModel):
    """Real rows of the champion's held-out experiments, to try the model and its explanations."""

    model: ModelRef
    examples: list[ExampleRow]


# The registry's summaries of retrains, served as they are; subclassed only to keep their names
# (and so their schemas) in the API document. No docstring: it would become their description.


class CandidatePublic(CandidateSummary):
    pass


class RetrainPublic(RetrainSummary):
    candidates: list[CandidatePublic]


# -- explanations ---------------------------------------------------------------------------------

EXPLAIN_METHODS = [m.value for m in ExplainMethod]

ExplainMethodName = Annotated[
    str, WithJsonSchema({"type": "string", "enum": EXPLAIN_METHODS, "default": "shap"})
]
"""Text in the request, so that an unknown method gets its own answer listing the valid ones."""


class ExplainRequest(BaseModel):
    """One raw sensor row (the same columns and checks as a row of ``/predict``) and a method."""

    model_config = ConfigDict(extra="forbid")

    row: dict[str, JsonScalar]
    method: ExplainMethodName = "shap"


EXPLAIN_REQUEST_EXAMPLES: dict[str, Any] = {
    "shap": {
        "summary": "SHAP: per-feature contributions (a real worn-tool row)",
        "value": {"row": EXAMPLE_WORN_ROW, "method": "shap"},
    },
    "lime": {
        "summary": "LIME: a local linear model around the row (a real unworn-tool row)",
        "value": {"row": EXAMPLE_ROW, "method": "lime"},
    },
    "anchor": {
        "summary": "Anchor: a rule that fixes the label (a real worn-tool row)",
        "value": {"row": EXAMPLE_WORN_ROW, "method": "anchor"},
    },
}


class ExplanationPublic(BaseModel):
    model: ModelRef
    """The model that was explained (the champion served when the request came)."""
    seconds: float
    """Wall time of the explanation (plus the explainers' build, for the first one of a
    version)."""
    probability_worn: float = Field(ge=0.0, le=1.0)
    """The model's probability of wear for the row."""
    label: Label
    """The model's label for the row; LIME and anchors explain this label."""
    request_id: str


class ShapExplanationPublic(ExplanationPublic):
    method: Literal["shap"]
    algorithm: str
    """``tree_path_dependent`` (exact Tree SHAP) or ``permutation`` (model-agnostic)."""
    output_space: OutputSpace
    """What the contributions add up to: the probability of wear, or its log-odds for gradient
    boosting."""
    base_value: float
    """Expected model output over the training data, where the contributions start from."""
    contributions: list[FeatureContribution]
    """One per engineered feature (what the model sees), largest absolute contribution first."""
    output: float
    """``base_value`` plus the contributions: ``probability_worn`` (or its log-odds)."""


class LimeExplanationPublic(ExplanationPublic):
    method: Literal["lime"]
    features: list[LimeWeight]
    """The local linear model's largest weights, largest absolute first."""
    intercept: float
    local_prediction: float
    """The local model's probability of ``label`` for the row."""
    score: float
    """R2 of the local model on its weighted perturbed rows."""
    samples: int


class AnchorExplanationPublic(ExplanationPublic):
    method: Literal["anchor"]
    conditions: list[Condition]
    """The rule: every condition holds for the row; empty means the label holds anywhere."""
    rule: str
    precision: float = Field(ge=0.0, le=1.0)
    """Share of perturbed rows under the rule that the model labels ``label``."""
    coverage: float = Field(ge=0.0, le=1.0)
    """Share of training-reference rows the rule covers."""
    threshold: float
    """The precision asked for (``CNCWEAR_EXPLAIN_ANCHOR_THRESHOLD``)."""
    partial: bool
    """True when the search hit its cap and returned the best rule found so far."""
    stopped_by: Literal["time", "samples"] | None
    samples: int
    precision_samples: int


ExplainResponse = Annotated[
    ShapExplanationPublic | LimeExplanationPublic | AnchorExplanationPublic,
    Field(discriminator="method"),
]


class GlobalViewPublic(BaseModel):
    """How the champion behaves over its training reference, as numbers ready to plot."""

    model: ModelRef
    seconds: float
    """Time the view took to compute (once per version; later requests get it from memory)."""
    output_space: OutputSpace
    importance: list[FeatureImportance]
    """Mean absolute SHAP value per engineered feature, largest first."""
    importance_rows: int
    surrogate: Surrogate
    """A shallow decision tree fitted to the champion's own labels: its fidelity (accuracy
    against the champion on rows it was not fitted on) and its rules as text."""
    partial_dependence: list[PartialDependence]
    """Partial dependence (``average``) and ICE curves (``ice``) on a grid of each of the most
    important features."""
    request_id: str
