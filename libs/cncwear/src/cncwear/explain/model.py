"""The champion's estimator as a function of engineered feature rows, for the sampling explainers.

LIME and anchors score many small batches, so the cost of one call decides how far a search gets in
its time budget. Where scikit-learn's ``predict_proba`` is slow per call, a fast path does the same
arithmetic: scikit-learn's trees and forests are walked by numba over the flat arrays of
:mod:`cncwear.serving.trees`; histogram gradient boosting's predictors are called on one thread
without input validation; a LightGBM booster is called on the array, without the pandas frame and
checks of its scikit-learn wrapper. A fast path is used only after it reproduced ``predict_proba``
on the training reference within ``PARITY_TOLERANCE``. Measurements: ``docs/serving.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numba
import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from cncwear.serving.scoring import THRESHOLD
from cncwear.serving.trees import PARITY_TOLERANCE, SKLEARN_TREE_MODELS, FlatTrees, flatten

logger = logging.getLogger(__name__)

Path = Literal["trees", "boosting", "lightgbm", "sklearn"]


class ModelFunction:
    """Probabilities and labels of the final estimator on engineered rows given as a 2-D array in
    the order of ``columns``."""

    def __init__(self, estimator: Any, columns: Sequence[str], reference: np.ndarray) -> None:
        self.estimator = estimator
        self.columns = list(columns)
        self.path: Path = "sklearn"
        self._trees: FlatTrees | None = None
        candidate: Path | None = None
        try:
            if _is_binary(estimator):
                if _is_single_output_trees(estimator):
                    self._trees = flatten(estimator)
                    candidate = "trees"
                elif isinstance(estimator, HistGradientBoostingClassifier) and (
                    getattr(estimator, "is_categorical_", None) is None
                ):
                    candidate = "boosting"
                elif type(estimator).__module__.startswith("lightgbm"):
                    candidate = "lightgbm"
            if candidate is not None and len(reference):
                self.path = candidate
                gap = float(
                    np.max(
                        np.abs(
                            self.probabilities(reference) - self._sklearn_probabilities(reference)
                        )
                    )
                )
                if gap > PARITY_TOLERANCE:
                    logger.warning("fast %s path differs by %.3g: predict_proba", candidate, gap)
                    self.path = "sklearn"
        except Exception as error:  # scikit-learn's private attributes moved
            logger.warning("no fast path for %s: %s", type(estimator).__name__, error)
            self.path = "sklearn"

    @property
    def fast(self) -> bool:
        return self.path != "sklearn"

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (rows, 2): unworn, worn."""
        rows = np.atleast_2d(rows)
        if self.path == "trees":
            assert self._trees is not None
            return _tree_probabilities(self._trees, rows)
        if self.path == "boosting":
            return self._boosting_probabilities(rows)
        if self.path == "lightgbm":
            worn = np.asarray(self.estimator.booster_.predict(rows, num_threads=1), dtype=float)
            return np.column_stack([1.0 - worn, worn])
        return self._sklearn_probabilities(rows)

    def probability_worn(self, rows: np.ndarray) -> np.ndarray:
        return self.probabilities(rows)[:, 1]

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """1 for worn, 0 for unworn, with the threshold the service labels rows with."""
        return (self.probability_worn(rows) >= THRESHOLD).astype(int)

    def _sklearn_probabilities(self, rows: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame(rows, columns=self.columns)
        return np.asarray(self.estimator.predict_proba(frame), dtype=float)

    def _boosting_probabilities(self, rows: np.ndarray) -> np.ndarray:
        """``HistGradientBoostingClassifier.predict_proba`` without input validation, on one
        thread (scikit-learn's ``_raw_predict`` and ``_predict_iterations``)."""
        model = self.estimator
        features = np.ascontiguousarray(rows, dtype=np.float64)
        known_categories, feature_index = model._bin_mapper.make_known_categories_bitsets()
        raw = np.zeros(
            (len(features), model.n_trees_per_iteration_),
            dtype=model._baseline_prediction.dtype,
            order="F",
        )
        raw += model._baseline_prediction
        for iteration in model._predictors:
            for k, predictor in enumerate(iteration):
                raw[:, k] += predictor.predict(features, known_categories, feature_index, 1)
        return np.asarray(model._loss.predict_proba(raw), dtype=float)


def _is_single_output_trees(estimator: Any) -> bool:
    return isinstance(estimator, SKLEARN_TREE_MODELS) and estimator.n_outputs_ == 1


def _tree_probabilities(trees: FlatTrees, rows: np.ndarray) -> np.ndarray:
    """scikit-learn's forest arithmetic: features cast to float32, each tree's normalised leaf
    class weights summed in tree order, divided by the number of trees."""
    features = np.ascontiguousarray(np.asarray(rows, dtype=np.float32), dtype=np.float64)
    summed = _walk_trees(
        features,
        trees.roots,
        trees.left,
        trees.right,
        trees.feature,
        trees.threshold,
        trees.missing_left,
        trees.is_leaf,
        trees.leaf_value,
    )
    return np.asarray(summed / trees.tree_count, dtype=np.float64)


@numba.njit(cache=False, nogil=True)  # type: ignore[misc]
def _walk_trees(  # noqa: PLR0917 - numba takes plain arrays
    x: np.ndarray,
    roots: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    missing_left: np.ndarray,
    leaf: np.ndarray,
    value: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """Sum over the trees of the leaf values each row reaches, tree by tree (a tree's nodes stay in
    cache while every row goes through it)."""
    out = np.zeros((x.shape[0], value.shape[1]))
    for tree in range(roots.shape[0]):
        for row in range(x.shape[0]):
            node = roots[tree]
            while not leaf[node]:
                v = x[row, feature[node]]
                if np.isnan(v):
                    node = left[node] if missing_left[node] else right[node]
                elif v <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            for k in range(value.shape[1]):
                out[row, k] += value[node, k]
    return out


def _is_binary(estimator: Any) -> bool:
    return len(getattr(estimator, "classes_", ())) == 2
