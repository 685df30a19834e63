"""LIME (Ribeiro et al. 2016) for one row, with the ``lime`` package (0.2.0.1, 2020).

The tabular explainer discretises each engineered feature into quartile bins of the training
reference, samples perturbed rows from those bins, scores them with the model and fits a weighted
ridge regression of the probability of the explained label on "is the row in the same bin as the
explained row" indicators. What is returned: the bins with the largest weights, the intercept, the
local model's prediction for the row and its R2 on the weighted samples (``score``).

Quirks kept here (this module and ``anchor_explainer`` are the only ones that import lime):

* ``feature_selection="highest_weights"``: lime's default (``auto``) runs forward selection for
  up to 6 features, refitting a ridge regression 40 to 60 times per row, which with scikit-learn
  1.9's input validation cost more than half a second. Highest weights fits one ridge on all bins
  and keeps the largest weights: the usual choice for tabular data with few features.
* lime draws from one ``numpy.random.RandomState`` held by the explainer and shared with its
  discretiser; the explainer is used under a lock and reseeded per call, so an explanation is
  repeatable and concurrent calls do not interleave draws.
* lime formats bin bounds with two decimals; the conditions returned carry the exact bin edges.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lime.lime_tabular import LimeTabularExplainer

from cncwear.core.schema import CLASS_NAMES
from cncwear.explain.conditions import bin_edges, condition
from cncwear.explain.model import ModelFunction
from cncwear.explain.results import Condition


@dataclass(frozen=True)
class LimeResult:
    weights: list[tuple[int, Condition, float]]
    """(feature index, the row's bin, weight), largest absolute weight first."""
    intercept: float
    local_prediction: float
    score: float


class LimeExplainer:
    def __init__(
        self,
        model: ModelFunction,
        reference: pd.DataFrame,
        *,
        samples: int,
        features: int,
        seed: int,
    ) -> None:
        self.model = model
        self.columns = list(reference.columns)
        self.samples = samples
        self.features = min(features, len(self.columns))
        self.seed = seed
        self._lock = threading.Lock()
        self._explainer = LimeTabularExplainer(
            reference.to_numpy(dtype=float),
            mode="classification",
            feature_names=self.columns,
            class_names=list(CLASS_NAMES),
            discretize_continuous=True,
            discretizer="quartile",
            feature_selection="highest_weights",
            random_state=seed,
        )

    def explain(self, row: np.ndarray, label: int) -> LimeResult:
        """Explain the model's probability of ``label`` around one engineered row."""
        with self._lock:
            generator = np.random.RandomState(self.seed)
            self._explainer.random_state = generator
            self._explainer.base.random_state = generator
            self._explainer.discretizer.random_state = generator
            explanation = self._explainer.explain_instance(
                row,
                self.model.probabilities,
                labels=(label,),
                num_features=self.features,
                num_samples=self.samples,
            )
        weights = [
            (int(index), self._bin_of(int(index), float(row[index])), float(weight))
            for index, weight in explanation.as_map()[label]
        ]
        return LimeResult(
            weights=weights,
            intercept=float(explanation.intercept[label]),
            local_prediction=float(np.ravel(explanation.local_pred)[0]),
            score=float(explanation.score),
        )

    def _bin_of(self, feature: int, value: float) -> Condition:
        edges = bin_edges(self._explainer.discretizer, feature)
        k = int(np.searchsorted(edges, value))
        lower = float(edges[k - 1]) if k > 0 else None
        upper = float(edges[k]) if k < len(edges) else None
        return condition(self.columns[feature], lower, upper)
