"""Explanations of the champion's answers: SHAP, LIME and anchors per row, and global views.

Build :class:`Explainers` once per model version (or let :class:`ExplainerCache` do it), then::

    explainers = Explainers.build(model.pipeline, model.profile, model.version, settings)
    answer = explainers.explain(raw_row_frame, ExplainMethod.SHAP)  # ShapExplanation
    view = explainers.global_view()                                 # GlobalView, cached

Everything works in the model's own feature space: the engineered features its estimator sees,
with the training reference logged with the model (its profile's sample) as background. The calls
are CPU-bound (milliseconds to seconds): run them off an event loop.
"""

from cncwear.core.errors import NoReferenceError, UnknownExplainMethodError
from cncwear.explain.cache import ExplainerCache
from cncwear.explain.explainers import Explainers, training_reference
from cncwear.explain.results import (
    AnchorExplanation,
    Condition,
    ExplainMethod,
    Explanation,
    FeatureContribution,
    FeatureImportance,
    GlobalView,
    LimeExplanation,
    LimeWeight,
    PartialDependence,
    ShapExplanation,
    Surrogate,
)

__all__ = [
    "AnchorExplanation",
    "Condition",
    "ExplainMethod",
    "ExplainerCache",
    "Explainers",
    "Explanation",
    "FeatureContribution",
    "FeatureImportance",
    "GlobalView",
    "LimeExplanation",
    "LimeWeight",
    "NoReferenceError",
    "PartialDependence",
    "ShapExplanation",
    "Surrogate",
    "UnknownExplainMethodError",
    "training_reference",
]
