"""SHAP values of the champion's estimator over its engineered features.

Tree ensembles (scikit-learn's decision trees, random forests, extra trees, gradient boosting and
histogram gradient boosting) get the exact Tree SHAP algorithm in its path-dependent form: no
background data, the training distribution is read off the trees' node counts, and the values plus
the base value add up to the model's output exactly. LightGBM and XGBoost boosters get it too
(their output read as the raw score or margin: they have no ``decision_function``). The
interventional form (a background set) was slower on deep forests beyond about 30 background rows,
and on scikit-learn's histogram gradient boosting its values did not add up to the model's output
at all (shap 0.51), so it is not used. Forests add up to the probability of wear; boosting adds up
to the log-odds of wear, the only space where its trees are additive (the probability is its
logistic function).

Any other estimator gets the model-agnostic permutation algorithm over a fixed subsample of the
training reference as background; it is additive by construction (values plus base value equal
the probability of wear). Whichever is chosen, additivity is checked on reference rows when the
explainer is built, and a tree explainer that fails the check is replaced by the agnostic one.
The agnostic explainer's first call compiles shap's masking code with numba (about 20 s, once per
process); it is made while building.

This module is the only one that imports shap.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

with warnings.catch_warnings():
    # shap 0.51 builds its plot colour maps at import with a call matplotlib 3.10 flags as
    # pending deprecation; nothing here plots
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    import shap

from cncwear.explain.model import ModelFunction
from cncwear.explain.results import OutputSpace

logger = logging.getLogger(__name__)

ADDITIVITY_TOLERANCE = 1e-6
CHECK_ROWS = 5
TREE_PATH_DEPENDENT = "tree_path_dependent"
PERMUTATION = "permutation"


@dataclass(frozen=True)
class ShapValues:
    base_value: float
    values: np.ndarray
    """Shape (rows, features)."""


class ShapExplainer:
    """Tree SHAP when the estimator is a supported tree model, permutation SHAP otherwise."""

    def __init__(
        self,
        model: ModelFunction,
        reference: pd.DataFrame,
        *,
        background_rows: int,
        seed: int,
    ) -> None:
        self.model = model
        self.columns = list(reference.columns)
        self._lock = threading.Lock()
        check = reference.iloc[: min(CHECK_ROWS, len(reference))]
        tree = _tree_explainer(model.estimator)
        if tree is not None:
            space = _output_space(tree, model, check)
            if space is not None:
                self.algorithm = TREE_PATH_DEPENDENT
                self.output_space: OutputSpace = space
                self._tree: Any = tree
                return
            name = type(model.estimator).__name__
            logger.warning("tree SHAP does not add up to %s's output: permutation SHAP", name)
        self.algorithm = PERMUTATION
        self.output_space = "probability"
        self._tree = None
        background = reference.sample(min(background_rows, len(reference)), random_state=seed)
        self._seed = seed
        self._permutation = shap.PermutationExplainer(
            model.probability_worn,
            shap.maskers.Independent(background.to_numpy(dtype=float), max_samples=len(background)),
            seed=seed,
        )
        # shap compiles its masking code with numba on the first call (about 20 s, once per
        # process): pay it while building, not on the first request
        self.values(check.iloc[:1])

    def values(self, rows: pd.DataFrame) -> ShapValues:
        """SHAP values of engineered rows (columns in the model's order)."""
        if self._tree is not None:
            return _tree_values(self._tree, rows)
        with self._lock:  # shap's maskers reuse buffers between calls
            np.random.seed(self._seed)  # permutations come from numpy's global generator
            explanation = self._permutation(rows.to_numpy(dtype=float), silent=True)
        return ShapValues(
            base_value=float(np.ravel(explanation.base_values)[0]),
            values=np.asarray(explanation.values, dtype=float).reshape(len(rows), -1),
        )

    def model_output(self, rows: pd.DataFrame) -> np.ndarray:
        """What the values add up to, computed by the model itself."""
        return _model_output(self.model, rows, self.output_space)


def _tree_explainer(estimator: Any) -> Any | None:
    try:
        return shap.TreeExplainer(estimator, feature_perturbation="tree_path_dependent")
    except Exception as error:  # shap raises several types for models it does not support
        logger.info("no tree SHAP for %s: %s", type(estimator).__name__, error)
        return None


def _tree_values(explainer: Any, rows: pd.DataFrame) -> ShapValues:
    with warnings.catch_warnings():
        # shap 0.51 warns on every LightGBM call that its binary output's shape changed; the
        # shapes are handled below
        warnings.filterwarnings(
            "ignore", message="LightGBM binary classifier", category=UserWarning
        )
        values = explainer.shap_values(rows, check_additivity=False)
    raw = np.asarray(values, dtype=float)
    expected = np.ravel(np.asarray(explainer.expected_value, dtype=float))
    if raw.ndim == 3:  # classifiers with per-class outputs (trees, forests): keep "worn"
        return ShapValues(base_value=float(expected[1]), values=raw[:, :, 1])
    return ShapValues(base_value=float(expected[0]), values=raw)


def _output_space(explainer: Any, model: ModelFunction, rows: pd.DataFrame) -> OutputSpace | None:
    """The space in which tree SHAP values add up to the model's output, if they do."""
    shap_values = _tree_values(explainer, rows)
    total = shap_values.base_value + shap_values.values.sum(axis=1)
    spaces: tuple[OutputSpace, ...] = ("probability", "log_odds")
    for space in spaces:
        try:
            expected = _model_output(model, rows, space)
        except AttributeError:
            continue
        if np.allclose(total, expected, rtol=0.0, atol=ADDITIVITY_TOLERANCE):
            return space
    return None


def _model_output(model: ModelFunction, rows: pd.DataFrame, space: OutputSpace) -> np.ndarray:
    if space == "probability":
        return model.probability_worn(rows.to_numpy(dtype=float))
    return log_odds(model.estimator, rows)


def log_odds(estimator: Any, rows: pd.DataFrame) -> np.ndarray:
    """The log-odds of wear as the estimator computes it: scikit-learn's ``decision_function``,
    LightGBM's raw score, XGBoost's margin. Raises ``AttributeError`` for a model with none."""
    module = type(estimator).__module__.split(".")[0]
    if module == "lightgbm":
        raw = estimator.predict(rows, raw_score=True)
    elif module == "xgboost":
        raw = estimator.predict(rows, output_margin=True)
    else:
        raw = estimator.decision_function(rows)
    return np.asarray(raw, dtype=float).ravel()
