"""Fitted tree models as flat node arrays: one reading of scikit-learn's trees and forests,
histogram gradient boosting and LightGBM, and of how each combines its leaves into the probability
of wear.

Both tree-walking users read trees here: the ONNX export (one ``TreeEnsemble``) and the explainers'
numba walk. Each checks its result against the estimator's own ``predict_proba`` within
:data:`PARITY_TOLERANCE` before it is trusted. Details and figures: ``docs/serving.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

from cncwear.core.errors import CompileError

PARITY_TOLERANCE = 1e-9
"""Largest absolute difference in a probability allowed between a compiled form or a fast path and
the estimator's own ``predict_proba``. The exact routines measure about 1e-16; the acceptance bar of
the service is 1e-6."""

SKLEARN_TREE_MODELS = (
    DecisionTreeClassifier,
    ExtraTreeClassifier,
    RandomForestClassifier,
    ExtraTreesClassifier,
)


@dataclass(frozen=True)
class Combination:
    """How an ensemble turns the values of the leaves its rows reach into the probability of wear:
    ``score = sum (/ number of trees if average) + baseline``, then the probability is the score
    itself, or ``sigmoid(logistic_scale * score)``."""

    float32_features: bool
    """The trees compare ``float32(x) <= threshold`` (scikit-learn's trees), not ``x``."""
    average: bool
    baseline: float
    logistic_scale: float | None
    """None when the averaged leaf values are probabilities already."""


@dataclass(frozen=True)
class FlatTrees:
    """The nodes of every tree of an ensemble, one after the other, in arrays over all nodes.

    Children are indices into the same arrays (``x <= threshold`` goes left, a missing value goes
    left where ``missing_left``); ``feature`` and ``threshold`` mean nothing at leaves."""

    roots: np.ndarray
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    is_leaf: np.ndarray
    leaf_value: np.ndarray
    """What a leaf adds up, shape (nodes, outputs): the unworn and worn fractions of a
    scikit-learn tree's leaf (normalised as its ``predict_proba`` does), the raw score of a boosted
    tree's leaf (one column)."""
    missing_left: np.ndarray
    combination: Combination

    @property
    def tree_count(self) -> int:
        return len(self.roots)

    @property
    def worn_value(self) -> np.ndarray:
        """What each leaf adds towards wear: the worn fraction, or the boosted score."""
        return np.ascontiguousarray(self.leaf_value[:, -1])


def flatten(estimator: Any) -> FlatTrees | None:
    """The flat trees of a fitted binary tree model, or None when the estimator is none of the tree
    models read here. Raises :class:`CompileError` for a tree model whose trees cannot be read
    exactly (more than one output or two classes, categorical splits)."""
    if isinstance(estimator, SKLEARN_TREE_MODELS):
        return _sklearn(estimator)
    if isinstance(estimator, HistGradientBoostingClassifier):
        return _hist_gradient_boosting(estimator)
    if _is_lightgbm_classifier(estimator):
        return _lightgbm(estimator)
    return None


def _sklearn(estimator: Any) -> FlatTrees:
    single = isinstance(estimator, DecisionTreeClassifier | ExtraTreeClassifier)
    trees = [estimator.tree_] if single else [member.tree_ for member in estimator.estimators_]
    arrays = []
    for tree in trees:
        if tree.n_outputs != 1 or tree.value.shape[2] != 2:
            raise CompileError("only single-output binary trees can be compiled")
        value = np.asarray(tree.value[:, 0, :2], dtype=np.float64)
        total = value.sum(axis=1, keepdims=True)
        total[total == 0.0] = 1.0
        arrays.append(
            _Tree(
                left=tree.children_left,
                right=tree.children_right,
                feature=tree.feature,
                threshold=tree.threshold,
                is_leaf=tree.children_left == -1,
                leaf_value=value / total,
                missing_left=tree.missing_go_to_left,
            )
        )
    combination = Combination(
        float32_features=True, average=True, baseline=0.0, logistic_scale=None
    )
    return _joined(arrays, combination)


def _hist_gradient_boosting(estimator: HistGradientBoostingClassifier) -> FlatTrees:
    if estimator.n_trees_per_iteration_ != 1:
        raise CompileError("only binary gradient boosting can be compiled")
    if getattr(estimator, "_preprocessor", None) is not None or (
        estimator.is_categorical_ is not None and np.any(estimator.is_categorical_)
    ):
        raise CompileError("gradient boosting with categorical features cannot be compiled")
    arrays = []
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        arrays.append(
            _Tree(
                left=nodes["left"],
                right=nodes["right"],
                feature=nodes["feature_idx"],
                threshold=nodes["num_threshold"],
                is_leaf=nodes["is_leaf"].astype(bool),
                leaf_value=nodes["value"][:, np.newaxis],
                missing_left=nodes["missing_go_to_left"].astype(bool),
            )
        )
    baseline = float(np.asarray(estimator._baseline_prediction).ravel()[0])
    combination = Combination(
        float32_features=False, average=False, baseline=baseline, logistic_scale=1.0
    )
    return _joined(arrays, combination)


def _is_lightgbm_classifier(estimator: Any) -> bool:
    """Without importing LightGBM (the API does not install it)."""
    return any(
        kind.__name__ == "LGBMClassifier" and kind.__module__.startswith("lightgbm")
        for kind in type(estimator).__mro__
    )


def _lightgbm(estimator: Any) -> FlatTrees:
    """LightGBM's own model dump: double thresholds, its missing-value directions, leaf values
    summed (averaged in its random-forest mode) before its sigmoid."""
    dump = estimator.booster_.dump_model()
    objective = str(dump["objective"]).split()
    if objective[0] != "binary" or dump["num_tree_per_iteration"] != 1:
        raise CompileError(f"only binary LightGBM can be compiled, not {dump['objective']!r}")
    scale = float(dict(part.split(":") for part in objective[1:]).get("sigmoid", 1.0))
    arrays = [_lightgbm_tree(tree["tree_structure"]) for tree in dump["tree_info"]]
    combination = Combination(
        float32_features=False,
        average=bool(dump["average_output"]),
        baseline=0.0,
        logistic_scale=scale,
    )
    return _joined(arrays, combination)


def _lightgbm_tree(root: dict[str, Any]) -> _Tree:
    """One tree of LightGBM's nested dump, numbered depth first from the root at 0."""
    nodes: list[dict[str, Any]] = []
    left: list[int] = []
    right: list[int] = []

    def visit(node: dict[str, Any]) -> int:
        index = len(nodes)
        nodes.append(node)
        left.append(-1)
        right.append(-1)
        if "leaf_value" not in node:
            if node["decision_type"] != "<=" or node["missing_type"] == "Zero":
                raise CompileError(
                    "LightGBM splits on categories or with zero as missing cannot be compiled"
                )
            left[index] = visit(node["left_child"])
            right[index] = visit(node["right_child"])
        return index

    visit(root)
    return _Tree(
        left=np.asarray(left),
        right=np.asarray(right),
        feature=np.array([node.get("split_feature", 0) for node in nodes]),
        threshold=np.array([float(node.get("threshold", 0.0)) for node in nodes]),
        is_leaf=np.array(["leaf_value" in node for node in nodes]),
        leaf_value=np.array([[float(node.get("leaf_value", 0.0))] for node in nodes]),
        missing_left=np.array(
            [node.get("missing_type") == "NaN" and bool(node["default_left"]) for node in nodes]
        ),
    )


@dataclass(frozen=True)
class _Tree:
    """One tree's node arrays, its children numbered from its root at 0 (-1 at leaves)."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    is_leaf: np.ndarray
    leaf_value: np.ndarray
    missing_left: np.ndarray


def _joined(trees: list[_Tree], combination: Combination) -> FlatTrees:
    offsets = np.cumsum([0] + [len(tree.is_leaf) for tree in trees])

    def joined(arrays: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(arrays), dtype=dtype)

    def children(side: str) -> np.ndarray:
        shifted = [
            np.where(tree.is_leaf, -1, np.asarray(getattr(tree, side), dtype=np.int64) + offset)
            for tree, offset in zip(trees, offsets, strict=False)
        ]
        return joined(shifted, np.int64)

    return FlatTrees(
        roots=np.ascontiguousarray(offsets[:-1], dtype=np.int64),
        left=children("left"),
        right=children("right"),
        feature=joined([np.where(t.is_leaf, 0, t.feature) for t in trees], np.int64),
        threshold=joined([t.threshold for t in trees], np.float64),
        is_leaf=joined([t.is_leaf for t in trees], np.bool_),
        leaf_value=joined([t.leaf_value for t in trees], np.float64),
        missing_left=joined([t.missing_left for t in trees], np.bool_),
        combination=combination,
    )
