"""The flat trees: every tree model cncwear trains, read into one set of node arrays, gives the
estimator's own probabilities when walked and combined as :class:`Combination` says."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

from cncwear.data.dataset import Dataset
from cncwear.serving.trees import PARITY_TOLERANCE, FlatTrees, flatten


@pytest.fixture(scope="module")
def engineered(dataset: Dataset) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Raw numeric readings of every 10th active row (a few experiments fitted, others held)."""
    active = dataset.active().rows
    numeric = active.select_dtypes("number").drop(columns=["experiment", "label"], errors="ignore")
    train = active["experiment"] <= 12
    return (
        numeric[train].iloc[::10],
        active["label"][train].iloc[::10].to_numpy(),
        numeric[~train].iloc[::10],
    )


def walked(trees: FlatTrees, x: np.ndarray) -> np.ndarray:
    """The probability of wear from the flat arrays, by the plainest walk (numpy, node by node)."""
    combination = trees.combination
    if combination.float32_features:
        x = x.astype(np.float32).astype(np.float64)
    rows = np.arange(len(x))
    total = np.zeros(len(x))
    for root in trees.roots:
        node = np.full(len(x), root)
        while not trees.is_leaf[node].all():
            inner = ~trees.is_leaf[node]
            at, where = node[inner], rows[inner]
            value = x[where, trees.feature[at]]
            left = np.where(np.isnan(value), trees.missing_left[at], value <= trees.threshold[at])
            node[inner] = np.where(left, trees.left[at], trees.right[at])
        total += trees.worn_value[node]
    score = (total / trees.tree_count if combination.average else total) + combination.baseline
    if combination.logistic_scale is None:
        return score
    return 1 / (1 + np.exp(-combination.logistic_scale * score))


@pytest.mark.parametrize(
    "estimator",
    [
        DecisionTreeClassifier(random_state=0, min_samples_leaf=3),
        ExtraTreeClassifier(random_state=0),
        RandomForestClassifier(n_estimators=20, random_state=0, n_jobs=1),
        ExtraTreesClassifier(n_estimators=20, random_state=0, n_jobs=1),
        HistGradientBoostingClassifier(max_iter=30, random_state=0),
        LGBMClassifier(n_estimators=30, random_state=0, n_jobs=1, verbose=-1),
        LGBMClassifier(
            boosting_type="rf",
            n_estimators=15,
            subsample=0.8,
            subsample_freq=1,
            random_state=0,
            n_jobs=1,
            verbose=-1,
        ),
    ],
    ids=[
        "decision_tree",
        "extra_tree",
        "random_forest",
        "extra_trees",
        "hist_gradient_boosting",
        "lightgbm",
        "lightgbm_random_forest",
    ],
)
def test_flat_trees_give_the_estimator_s_probabilities(
    estimator: Any, engineered: tuple[pd.DataFrame, np.ndarray, pd.DataFrame]
) -> None:
    x, y, held = engineered
    estimator.fit(x, y)
    trees = flatten(estimator)
    assert trees is not None
    assert int(trees.is_leaf.sum()) > trees.tree_count  # real splits, not lone leaves
    expected = estimator.predict_proba(held)[:, 1]
    assert 0 < expected.mean() < 1
    got = walked(trees, held.to_numpy(np.float64))
    assert np.max(np.abs(got - expected)) <= PARITY_TOLERANCE


def test_other_estimators_are_not_read_as_trees(
    engineered: tuple[pd.DataFrame, np.ndarray, pd.DataFrame],
) -> None:
    x, y, _ = engineered
    assert flatten(LogisticRegression(max_iter=200).fit(x, y)) is None
