"""The anchor of a decision tree: the path its row takes, read off the tree, no search.

Every row that satisfies the conditions on a decision tree's path from root to leaf reaches that
leaf, so it gets the leaf's probability and label: the path is an anchor of precision 1.0 by
construction, whatever the other features are. Its conditions are the path's splits, combined per
feature into one interval; its coverage is the share of training-reference rows in the interval.

The precision reported is still measured, as for searched anchors: on ``VERIFY_SAMPLES`` reference
rows with the rule imposed (a value outside a condition replaced by a reference value inside it),
labelled by the model. scikit-learn compares features as float32; the reference is float32 data
to begin with, so the float64 conditions and the tree's comparisons agree on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from cncwear.explain.anchor_explainer import VERIFY_SAMPLES, AnchorResult
from cncwear.explain.conditions import condition, coverage, draw_under
from cncwear.explain.model import ModelFunction
from cncwear.explain.results import Condition


class DecisionPathAnchor:
    """Anchors of a single binary decision tree."""

    def __init__(
        self, model: ModelFunction, tree: DecisionTreeClassifier, reference: pd.DataFrame, seed: int
    ) -> None:
        self.model = model
        self.tree = tree
        self.columns = list(reference.columns)
        self.reference = reference.to_numpy(dtype=float)
        self.seed = seed

    def explain(self, row: np.ndarray, label: int) -> AnchorResult:
        conditions = self.path(row)
        rng = np.random.default_rng(self.seed)
        drawn = draw_under(self.reference, self.columns, conditions, VERIFY_SAMPLES, rng)
        same = self.model.labels(drawn) == label
        return AnchorResult(
            conditions=conditions,
            precision=float(np.mean(same)),
            coverage=coverage(conditions, self.reference, self.columns),
            partial=False,
            stopped_by=None,
            samples=0,
            precision_samples=VERIFY_SAMPLES,
            features=list(range(len(self.columns))),
            widened=False,
        )

    def path(self, row: np.ndarray) -> list[Condition]:
        """The row's path as one interval per feature, in the order the path first tests each."""
        tree = self.tree.tree_
        x = np.asarray(row, dtype=np.float32).reshape(1, -1)
        nodes = self.tree.decision_path(pd.DataFrame(x, columns=self.columns)).indices
        bounds: dict[int, list[float | None]] = {}
        for node in nodes:
            feature = int(tree.feature[node])
            if feature < 0:  # the leaf
                continue
            threshold = float(tree.threshold[node])
            lower, upper = bounds.setdefault(feature, [None, None])
            if x[0, feature] <= threshold:
                bounds[feature][1] = threshold if upper is None else min(upper, threshold)
            else:
                bounds[feature][0] = threshold if lower is None else max(lower, threshold)
        return [condition(self.columns[f], lower, upper) for f, (lower, upper) in bounds.items()]
