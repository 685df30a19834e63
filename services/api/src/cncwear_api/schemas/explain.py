"""``/explain`` and ``/explain/global``: explanations of the champion's answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
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
from cncwear_api.schemas.common import JsonScalar, Label, ModelRef
from cncwear_api.schemas.predict import EXAMPLE_ROW, EXAMPLE_WORN_ROW

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
    """One per engineered feature (what the model sees), largest absolute contribution first, each
    with its raw columns (``terms``: one for a raw column, two for command minus actual)."""
    output: float
    """``base_value`` plus the contributions: ``probability_worn`` (or its log-odds)."""
    additivity_error: float
    """``|output - the model's own output in output_space|`` for this row (within 1e-6)."""


class LimeExplanationPublic(ExplanationPublic):
    method: Literal["lime"]
    features: list[LimeWeight]
    """The local linear model's largest weights, largest absolute first."""
    intercept: float
    local_prediction: float
    """The local model's probability of ``label`` for the row."""
    score: float
    """R2 of the local model on its weighted perturbed rows (lime's ``score``)."""
    min_score: float
    """The fit asked for (``CNCWEAR_EXPLAIN_LIME_MIN_SCORE``)."""
    low_fidelity: bool
    """``score`` below ``min_score``: the local model describes the model poorly here."""
    samples: int


class AnchorExplanationPublic(ExplanationPublic):
    method: Literal["anchor"]
    conditions: list[Condition]
    """The rule: every condition holds for the row; empty means the label holds anywhere. Stated
    on the model's features, each with its ``formula`` in raw columns."""
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
    binning: Literal["model", "quantile", "decision_path"]
    """Where the conditions' edges come from: the model's split thresholds, quartiles (a model
    without splits), or a decision tree's own path (exact: precision 1.0, no search)."""
    candidates: list[str]
    """The features the search could put conditions on: the row's top ones by absolute SHAP."""
    widened: bool
    """The search on the top features ended below the threshold, and this answer comes from a
    second search on more of them (``CNCWEAR_EXPLAIN_ANCHOR_WIDER_FEATURES``)."""


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
