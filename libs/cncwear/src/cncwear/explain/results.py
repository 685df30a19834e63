"""What explanations return: plain dataclasses of numbers, lists and text, ready for JSON.

Every per-row answer names the model version, the method and how long it took, plus what the model
said about the row (probability of wear and the label), so an answer can be read on its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

from cncwear.core.errors import UnknownExplainMethodError


class ExplainMethod(StrEnum):
    SHAP = "shap"
    LIME = "lime"
    ANCHOR = "anchor"

    @classmethod
    def parse(cls, value: str) -> ExplainMethod:
        """The method named ``value``; :class:`UnknownExplainMethodError` lists the valid ones."""
        try:
            return cls(value)
        except ValueError:
            raise UnknownExplainMethodError(value, [m.value for m in cls]) from None


OutputSpace = Literal["probability", "log_odds"]
"""What SHAP values add up to: the probability of wear (forests, single trees, model-agnostic
explainers) or the log-odds of wear (gradient boosting, whose trees add up in log-odds)."""


@dataclass(frozen=True)
class _Answer:
    model_version: str
    method: ExplainMethod
    seconds: float
    """Wall time of the explanation, feature engineering included."""
    probability_worn: float
    """The model's probability of wear for the row (what ``/predict`` returns)."""
    label: str
    """The model's label for the row (``worn`` or ``unworn``); LIME and anchors explain it."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RawTerm:
    """One raw column in an engineered feature: ``feature = sum(sign * value)`` over its terms."""

    column: str
    sign: int
    """+1 or -1 (``Command - Actual``: the command's term is +1, the actual's -1)."""
    value: float
    """The raw column's value in the explained row."""


@dataclass(frozen=True)
class FeatureContribution:
    feature: str
    """An engineered feature: what the model's estimator sees (see ``cncwear.features``)."""
    value: float
    """The feature's value for the explained row."""
    contribution: float
    terms: list[RawTerm] = field(default_factory=list)
    """The raw columns the feature is computed from, with their values in the row: one term for
    a raw column, two for a command-minus-actual difference; empty when the feature steps are not
    column picks and differences."""


@dataclass(frozen=True)
class ShapExplanation(_Answer):
    algorithm: str
    """``tree_path_dependent`` (exact Tree SHAP) or ``permutation`` (model-agnostic)."""
    output_space: OutputSpace
    base_value: float
    """Expected model output over the training data: where contributions start from."""
    contributions: list[FeatureContribution]
    """One per engineered feature, largest absolute contribution first."""
    output: float
    """``base_value`` plus the contributions: the model's output in ``output_space``; equals
    ``probability_worn``, or its log-odds for gradient boosting."""
    additivity_error: float
    """``|output - the model's own output in output_space|``, measured on every answer: within
    1e-6 for every model family the candidates produce (tests and ``bench/explain.py`` check)."""


@dataclass(frozen=True)
class Condition:
    """``lower < feature <= upper``; a missing bound is open."""

    feature: str
    lower: float | None
    upper: float | None
    text: str
    formula: str = ""
    """The feature in raw columns (``X1_CommandPosition - X1_ActualPosition``, or the column
    itself); empty when the feature steps are not column picks and differences."""


@dataclass(frozen=True)
class LimeWeight:
    feature: str
    condition: Condition
    """The quartile bin of the feature that the explained row falls in: LIME's interpretable
    feature is whether a row is in this bin."""
    value: float
    weight: float
    """Weight of the bin in the local linear model of the probability of ``label``."""


@dataclass(frozen=True)
class LimeExplanation(_Answer):
    features: list[LimeWeight]
    """Largest absolute weight first."""
    intercept: float
    local_prediction: float
    """The local model's probability of ``label`` for the explained row."""
    score: float
    """R2 of the local model on the weighted perturbed rows (lime's ``score``): how well it fits
    the model there."""
    min_score: float
    """The fit asked for (``CNCWEAR_EXPLAIN_LIME_MIN_SCORE``)."""
    low_fidelity: bool
    """``score`` below ``min_score``: the weights describe the local model, which describes the
    model poorly around this row."""
    samples: int


@dataclass(frozen=True)
class AnchorExplanation(_Answer):
    conditions: list[Condition]
    """The rule: all of them hold for the explained row; empty means the label holds anywhere."""
    rule: str
    precision: float
    """Share of perturbed rows drawn under the rule (the reference rows with the rule's conditions
    imposed) that the model labels ``label``, measured afresh once the rule is chosen."""
    coverage: float
    """Share of training-reference rows the rule covers."""
    threshold: float
    """The precision asked for."""
    partial: bool
    """True when the search hit its cap (time or samples) and returned the best rule so far."""
    stopped_by: Literal["time", "samples"] | None
    samples: int
    """Perturbed rows the model scored during the search (the capped quantity)."""
    precision_samples: int
    """Perturbed rows behind the reported precision."""
    binning: Literal["model", "quantile", "decision_path"]
    """Where the conditions' edges come from: the model's split thresholds, quartiles of the
    training reference (a model without splits), or a decision tree's own path (no search)."""
    candidates: list[str]
    """The features the search could put conditions on (the row's top ones by absolute SHAP)."""
    widened: bool
    """True when the search on the top features ended below the threshold and a second one, on
    more of them (``CNCWEAR_EXPLAIN_ANCHOR_WIDER_FEATURES``), found the answer."""

    @property
    def meets_threshold(self) -> bool:
        return self.precision >= self.threshold


Explanation = ShapExplanation | LimeExplanation | AnchorExplanation


@dataclass(frozen=True)
class FeatureImportance:
    feature: str
    mean_abs_shap: float


@dataclass(frozen=True)
class Surrogate:
    """A shallow decision tree fitted to the champion's own labels on the training reference."""

    depth: int
    leaves: int
    fidelity_accuracy: float
    """Share of rows, not used to fit the surrogate, on which it agrees with the champion."""
    fit_rows: int
    check_rows: int
    rules: str
    """The tree as indented text rules (scikit-learn's ``export_text``)."""


@dataclass(frozen=True)
class PartialDependence:
    """How the probability of wear moves with one feature, the others held at each row's values."""

    feature: str
    grid: list[float]
    average: list[float]
    """Partial dependence: the mean of the ICE curves over the reference sample."""
    ice: list[list[float]]
    """Individual conditional expectation curves of a subset of rows, one list per row."""
    ice_rows: int


@dataclass(frozen=True)
class GlobalView:
    model_version: str
    seconds: float
    output_space: OutputSpace
    importance: list[FeatureImportance]
    """Mean absolute SHAP value per feature, largest first."""
    importance_rows: int
    surrogate: Surrogate
    partial_dependence: list[PartialDependence] = field(default_factory=list)
    """For the most important features."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
