"""Feature engineering as scikit-learn transformers, assembled into the one Pipeline that is
trained, registered and served. The served model takes raw rows, so training and serving cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.feature_selection import SelectorMixin, VarianceThreshold
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from cncwear.core.schema import AXES, IDENTIFYING_COLUMNS, MOTION_QUANTITIES, PROCESS_COLUMN


def difference_name(axis: str, quantity: str) -> str:
    return f"{axis}_{quantity}Difference"


class CommandActualDifference(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Replaces each commanded position, velocity and acceleration by its gap to the actual one.

    The gap (command minus actual) is what a dull tool changes: it follows less precisely. The
    command columns alone describe the G-code program, not the tool, so they are dropped.
    """

    def fit(self, x: pd.DataFrame, y: Any = None) -> Self:
        self.feature_names_in_ = np.asarray(x.columns, dtype=object)
        return self

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        out = x.copy()
        for axis in AXES:
            for quantity in MOTION_QUANTITIES:
                command, actual = f"{axis}_Command{quantity}", f"{axis}_Actual{quantity}"
                out[difference_name(axis, quantity)] = x[command] - x[actual]
                del out[command]
        return out

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        commands = {f"{a}_Command{q}" for a in AXES for q in MOTION_QUANTITIES}
        kept = [c for c in self.feature_names_in_ if c not in commands]
        added = [difference_name(a, q) for a in AXES for q in MOTION_QUANTITIES]
        return np.asarray(kept + added, dtype=object)


class ColumnDropper(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Drops named columns when present (the machining step text, identifying columns)."""

    def __init__(self, columns: Sequence[str] = ()) -> None:
        self.columns = columns

    def fit(self, x: pd.DataFrame, y: Any = None) -> Self:
        self.feature_names_in_ = np.asarray(x.columns, dtype=object)
        return self

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        return x.drop(columns=[c for c in self.columns if c in x.columns])

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        return np.asarray([c for c in self.feature_names_in_ if c not in set(self.columns)])


class CumulativeImportanceSelector(SelectorMixin, BaseEstimator):  # type: ignore[misc]
    """Keeps the most important features until their importances add up to ``cumulative``, and of
    those only the ones with at least ``min_importance``: the thesis's selection rule, fitted on the
    training rows of each fit so that held-out experiments never influence which features are used.
    """

    def __init__(
        self,
        estimator: Any = None,
        cumulative: float = 0.95,
        min_importance: float = 0.02,
    ) -> None:
        self.estimator = estimator
        self.cumulative = cumulative
        self.min_importance = min_importance

    def fit(self, x: pd.DataFrame, y: Any) -> Self:
        estimator = clone(self.estimator) if self.estimator is not None else _default_ranker()
        estimator.fit(x, y)
        importances = np.asarray(estimator.feature_importances_, dtype=float)
        self.importances_ = importances
        self.n_features_in_ = x.shape[1]
        if hasattr(x, "columns"):
            self.feature_names_in_ = np.asarray(x.columns, dtype=object)
        self.support_ = select_by_cumulative_importance(
            importances, self.cumulative, self.min_importance
        )
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_


def select_by_cumulative_importance(
    importances: np.ndarray, cumulative: float, min_importance: float
) -> np.ndarray:
    """Boolean mask of the features kept by the cumulative-importance rule (at least one)."""
    order = np.argsort(importances)[::-1]
    reached = np.cumsum(importances[order]) < cumulative
    within = np.concatenate([[True], reached[:-1]])  # the feature that crosses the bar is kept
    keep = order[within & (importances[order] >= min_importance)]
    if keep.size == 0:
        keep = order[:1]
    mask = np.zeros(importances.shape, dtype=bool)
    mask[keep] = True
    return mask


def _default_ranker(seed: int = 0) -> ExtraTreesClassifier:
    """Ranks features for selection. Extremely randomised trees rank as well as a forest at a
    fraction of its cost, and the selection step is refitted in every cross-validation fold."""
    return ExtraTreesClassifier(n_estimators=50, min_samples_leaf=3, random_state=seed, n_jobs=1)


def build_pipeline(
    classifier: ClassifierMixin, *, use_identifying_columns: bool, seed: int
) -> Pipeline:
    """The full model: raw rows in, class probabilities out."""
    dropped = [PROCESS_COLUMN] + ([] if use_identifying_columns else list(IDENTIFYING_COLUMNS))
    ranker = _default_ranker(seed)
    pipeline = Pipeline(
        [
            ("differences", CommandActualDifference()),
            ("drop", ColumnDropper(columns=dropped)),
            ("constant", VarianceThreshold(threshold=0.0)),
            ("select", CumulativeImportanceSelector(estimator=ranker)),
            ("model", classifier),
        ]
    )
    pipeline.set_output(transform="pandas")
    return pipeline


def selected_features(pipeline: Pipeline) -> list[str]:
    """Names of the engineered features the model's estimator sees."""
    return [str(name) for name in pipeline[:-1].get_feature_names_out()]


def feature_importances(pipeline: Pipeline) -> dict[str, float]:
    """Importances the selection step measured for the features it kept."""
    selector: CumulativeImportanceSelector = pipeline.named_steps["select"]
    names = selector.feature_names_in_[selector.support_]
    return {
        str(n): float(v)
        for n, v in zip(names, selector.importances_[selector.support_], strict=True)
    }
