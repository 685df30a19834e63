"""The feature pipeline: the same object is fitted in training and serves raw rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from cncwear.core.schema import IDENTIFYING_COLUMNS, input_columns
from cncwear.data.dataset import Dataset
from cncwear.data.features import (
    CommandActualDifference,
    build_pipeline,
    select_by_cumulative_importance,
    selected_features,
)


def fit_tree(dataset: Dataset, *, use_identifying_columns: bool = False) -> object:
    train = dataset.active().subset([1, 2, 6, 7])
    pipeline = build_pipeline(
        DecisionTreeClassifier(random_state=0),
        use_identifying_columns=use_identifying_columns,
        seed=0,
    )
    return pipeline.fit(
        train.features(use_identifying_columns=use_identifying_columns), train.labels
    )


def test_differences_replace_command_columns(dataset: Dataset) -> None:
    rows = dataset.rows[input_columns(use_identifying_columns=False)].head(5)
    out = CommandActualDifference().fit(rows).transform(rows)
    assert not [c for c in out.columns if "_Command" in c]
    expected = rows["Z1_CommandPosition"] - rows["Z1_ActualPosition"]
    pd.testing.assert_series_equal(out["Z1_PositionDifference"], expected, check_names=False)
    assert len(out.columns) == len(rows.columns)


def test_cumulative_importance_keeps_features_up_to_the_bar_and_above_the_floor() -> None:
    importances = np.array([0.5, 0.01, 0.3, 0.15, 0.04])
    kept = select_by_cumulative_importance(importances, cumulative=0.95, min_importance=0.02)
    assert kept.tolist() == [True, False, True, True, False]
    kept = select_by_cumulative_importance(importances, cumulative=0.99, min_importance=0.02)
    assert kept.tolist() == [True, False, True, True, True]


def test_pipeline_takes_raw_rows_and_returns_probabilities(dataset: Dataset) -> None:
    pipeline = fit_tree(dataset)
    raw = dataset.rows[input_columns(use_identifying_columns=False)].sample(20, random_state=0)
    probability = pipeline.predict_proba(raw)
    assert probability.shape == (20, 2)
    np.testing.assert_allclose(probability.sum(axis=1), 1.0)


def test_constant_columns_are_learned_from_training_rows(dataset: Dataset) -> None:
    pipeline = fit_tree(dataset)
    variance = pipeline.named_steps["constant"]
    dropped = set(variance.feature_names_in_[~variance.get_support()])
    train = dataset.active().subset([1, 2, 6, 7]).rows
    assert "Z1_DCBusVoltage" in dropped
    assert all(train[c].nunique() == 1 for c in dropped if c in train.columns)


def test_identifying_columns_are_left_out_unless_asked_for(dataset: Dataset) -> None:
    default = fit_tree(dataset)
    seen = set(default.named_steps["constant"].feature_names_in_)
    assert not seen & set(IDENTIFYING_COLUMNS)
    with_ids = fit_tree(dataset, use_identifying_columns=True)
    assert "feedrate" in with_ids.feature_names_in_
    assert set(with_ids.named_steps["constant"].feature_names_in_) & set(IDENTIFYING_COLUMNS)


def test_selected_features_are_what_the_estimator_sees(dataset: Dataset) -> None:
    pipeline = fit_tree(dataset)
    names = selected_features(pipeline)
    assert names == list(pipeline.named_steps["model"].feature_names_in_)
    assert 1 <= len(names) < 30
