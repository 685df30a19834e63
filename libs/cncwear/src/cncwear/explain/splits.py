"""The thresholds a tree model splits each feature on, thinned to the ones it uses most.

Anchors cut every feature into bins and state their rules as "feature above or below a bin edge".
With quartile or decile edges of the training data, the edges fall wherever the data's mass is, not
where the model changes its mind: the 0.2 mm offset in ``Z1_ActualPosition`` that separates worn
from unworn falls inside one quartile, so no rule can express it and precision stalls near 0.5.
The model's own split thresholds are exactly where its output can change, so rules on them can be
as precise as the model is simple.

Read here: scikit-learn's trees and forests (``tree_.threshold``), histogram gradient boosting
(its predictors' ``num_threshold``), LightGBM (the booster's dumped split thresholds) and XGBoost
(its trees' split conditions). All but XGBoost send ``x <= threshold`` left; XGBoost sends
``x < split`` left, so its edge is the float just below the split. Any other model has no splits
here (:func:`model_thresholds` returns ``None``) and its anchors keep quantile bins.

Thinning: two thresholds between the same two neighbouring training values cut the training data
the same way, and the anchor sampler draws values from that data, so they are one edge. Edges are
grouped that way, each group counted by how many splits use it, and the most used groups kept
(each represented by its most used threshold, so the row's own side of it is the model's).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from cncwear.serving.trees import SKLEARN_TREE_MODELS

Splits = list[Counter[float]]
"""Per feature (by column index), how many splits use each threshold."""


def model_thresholds(estimator: Any, features: int) -> Splits | None:
    """The split thresholds of a tree model per feature, or ``None`` for a model without them."""
    splits: Splits = [Counter() for _ in range(features)]
    if isinstance(estimator, SKLEARN_TREE_MODELS):
        trees = getattr(estimator, "estimators_", [estimator])
        for tree in trees:
            _add(splits, tree.tree_.feature, tree.tree_.threshold, tree.tree_.feature >= 0)
        return splits
    if isinstance(estimator, HistGradientBoostingClassifier):
        for iteration in estimator._predictors:
            for predictor in iteration:
                nodes = predictor.nodes
                _add(splits, nodes["feature_idx"], nodes["num_threshold"], nodes["is_leaf"] == 0)
        return splits
    module = type(estimator).__module__.split(".")[0]
    if module == "lightgbm":
        return _lightgbm(estimator.booster_.dump_model(), splits)
    if module == "xgboost":
        return _xgboost(estimator.get_booster(), splits)
    return None


def thin(splits: Counter[float], reference: np.ndarray, keep: int) -> np.ndarray:
    """At most ``keep`` edges of one feature, sorted: the most used thresholds that cut the
    reference values apart, one per distinct cut."""
    values = np.unique(reference)
    groups: dict[int, Counter[float]] = {}
    for threshold, count in splits.items():
        below = int(np.searchsorted(values, threshold, side="right"))
        if 0 < below < len(values):  # a cut with reference values on both sides
            groups.setdefault(below, Counter())[threshold] = count
    ranked = sorted(groups.values(), key=lambda group: -sum(group.values()))[:keep]
    edges = [max(group.items(), key=lambda item: (item[1], -item[0]))[0] for group in ranked]
    return np.sort(np.asarray(edges, dtype=float))


def _add(splits: Splits, feature: np.ndarray, threshold: np.ndarray, inner: np.ndarray) -> None:
    for f, t in zip(feature[inner], threshold[inner], strict=True):
        splits[int(f)][float(t)] += 1


def _lightgbm(model: dict[str, Any], splits: Splits) -> Splits:
    pending = [tree["tree_structure"] for tree in model["tree_info"]]
    while pending:
        node = pending.pop()
        if "split_feature" not in node:  # a leaf
            continue
        if node.get("decision_type", "<=") == "<=":  # numerical split (categorical: "==")
            splits[int(node["split_feature"])][float(node["threshold"])] += 1
        pending.extend((node["left_child"], node["right_child"]))
    return splits


def _xgboost(booster: Any, splits: Splits) -> Splits:
    frame = booster.trees_to_dataframe()
    names = booster.feature_names
    inner = frame[frame["Feature"] != "Leaf"]
    for feature, split in zip(inner["Feature"], inner["Split"], strict=True):
        index = names.index(feature) if names else int(str(feature).removeprefix("f"))
        # x < split goes left: the largest float32 below the split is the "x <= edge" form
        edge = float(np.nextafter(np.float32(split), np.float32(-np.inf)))
        splits[index][edge] += 1
    return splits
