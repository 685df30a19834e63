"""The champion's estimator as a function of engineered feature rows, for the sampling explainers.

LIME scores thousands of perturbed rows in one call; anchors score batches of 100 rows hundreds of
times, so the cost of one small call decides how far an anchor search gets in its time budget.

* Forests and single trees (scikit-learn's decision, extra and random trees): ``predict_proba``
  spends about 90 ms per call on 300 trees whatever the batch size (input validation and a thread
  pool around every tree), which made one anchor search take minutes. Here the fitted trees are
  flattened into arrays once and walked by a small numba function, tree by tree (a tree's nodes
  stay in cache while every row goes through it): 100 rows through 300 deep trees in about 3 ms.
  It does what scikit-learn does, in the same order: features cast to float32, ``x <= threshold``
  goes left (missing values as the tree learned), each tree's leaf class weights normalised, trees
  summed in order and divided by their number.
* Histogram gradient boosting predicts with OpenMP threads; on a busy 2-core machine a small batch
  waited 10 ms and more per tree for a descheduled thread (a 4-tree model took 140 ms for one row).
  Its fitted predictors are called here directly, with one thread, on float64 arrays (what its
  ``_raw_predict`` does after validating the input, which cost 5 ms per call through pandas), then
  its loss's link gives probabilities.
* Any other estimator is called through ``predict_proba`` on a DataFrame with its feature names.

A fast path is used only after it reproduced scikit-learn's probabilities on the training
reference (within ``PARITY_TOLERANCE``; in practice bit for bit); otherwise, or if scikit-learn's
private attributes it reads have moved, the estimator's own ``predict_proba`` is used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np
import pandas as pd
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

from cncwear.serving.scoring import THRESHOLD

logger = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-12

Path = Literal["trees", "boosting", "sklearn"]


class ModelFunction:
    """Probabilities and labels of the final estimator on engineered rows given as a 2-D array in
    the order of ``columns``."""

    def __init__(self, estimator: Any, columns: Sequence[str], reference: np.ndarray) -> None:
        self.estimator = estimator
        self.columns = list(columns)
        self.path: Path = "sklearn"
        self._forest: _Forest | None = None
        candidate: Path | None = None
        try:
            if _is_binary(estimator):
                self._forest = _Forest.of(estimator)
                if self._forest is not None:
                    candidate = "trees"
                elif isinstance(estimator, HistGradientBoostingClassifier) and (
                    getattr(estimator, "is_categorical_", None) is None
                ):
                    candidate = "boosting"
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
            assert self._forest is not None
            return self._forest.probabilities(rows)
        if self.path == "boosting":
            return self._boosting_probabilities(rows)
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


@dataclass(frozen=True)
class _Forest:
    """The nodes of all trees of a binary forest (or one tree), in flat arrays."""

    roots: np.ndarray
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    leaf: np.ndarray
    value: np.ndarray
    """Normalised class weights of each node (rows sum to 1, or 0 for an empty node)."""

    @classmethod
    def of(cls, estimator: Any) -> _Forest | None:
        if getattr(estimator, "n_outputs_", None) != 1:
            return None
        if isinstance(estimator, RandomForestClassifier | ExtraTreesClassifier):
            trees = [member.tree_ for member in estimator.estimators_]
        elif isinstance(estimator, DecisionTreeClassifier | ExtraTreeClassifier):
            trees = [estimator.tree_]
        else:
            return None
        offsets = np.cumsum([0] + [tree.node_count for tree in trees])
        values = []
        for tree in trees:
            value = np.asarray(tree.value[:, 0, :2], dtype=np.float64)
            total = value.sum(axis=1, keepdims=True)
            total[total == 0.0] = 1.0
            values.append(value / total)

        def joined(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
            return np.ascontiguousarray(np.concatenate(arrays), dtype=dtype)

        children_left = [t.children_left for t in trees]
        return cls(
            roots=np.ascontiguousarray(offsets[:-1], dtype=np.int64),
            left=joined([c + o for c, o in zip(children_left, offsets, strict=False)], np.int64),
            right=joined(
                [t.children_right + o for t, o in zip(trees, offsets, strict=False)], np.int64
            ),
            feature=joined([t.feature for t in trees], np.int64),
            threshold=joined([t.threshold for t in trees], np.float64),
            missing_left=joined([t.missing_go_to_left for t in trees], np.bool_),
            leaf=joined([c == -1 for c in children_left], np.bool_),
            value=joined(values, np.float64),
        )

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        # scikit-learn's trees see float32 features, compared with float64 thresholds
        features = np.ascontiguousarray(np.asarray(rows, dtype=np.float32), dtype=np.float64)
        walked = _walk_forest(
            features,
            self.roots,
            self.left,
            self.right,
            self.feature,
            self.threshold,
            self.missing_left,
            self.leaf,
            self.value,
        )
        return np.asarray(walked, dtype=np.float64)


@numba.njit(cache=False, nogil=True)  # type: ignore[misc]
def _walk_forest(  # noqa: PLR0917 - numba takes plain arrays
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
    out = np.zeros((x.shape[0], 2))
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
            out[row, 0] += value[node, 0]
            out[row, 1] += value[node, 1]
    out /= roots.shape[0]
    return out


def _is_binary(estimator: Any) -> bool:
    return len(getattr(estimator, "classes_", ())) == 2
