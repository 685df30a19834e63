"""Evaluation grouped by experiment."""

from __future__ import annotations

import numpy as np

from cncwear.dataset import Dataset
from cncwear.evaluation import bootstrap_over_experiments, holdout_split, score_predictions


def test_holdout_is_whole_experiments_of_both_classes_fixed_by_the_seed(dataset: Dataset) -> None:
    split = holdout_split(dataset, fraction=0.25, seed=7)
    labels = dataset.experiment_labels()
    assert not set(split.train_experiments) & set(split.holdout_experiments)
    assert sorted(split.train_experiments + split.holdout_experiments) == list(range(1, 19))
    assert set(labels[split.holdout_experiments]) == {0, 1}
    assert holdout_split(dataset, fraction=0.25, seed=7) == split
    assert holdout_split(dataset, fraction=0.25, seed=8) != split


def test_experiment_accuracy_is_a_majority_vote_over_its_rows() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0])
    groups = np.array([5, 5, 5, 9, 9, 9])
    probability = np.array([0.9, 0.8, 0.1, 0.7, 0.6, 0.2])  # 5: 2 of 3 right, 9: 1 of 3 right
    result = score_predictions(labels, probability, groups)
    assert result.experiments_right == 1
    assert result.experiment_accuracy == 0.5
    assert result.accuracy == 0.5
    assert result.per_experiment == {5: 2 / 3, 9: 1 / 3}


def test_confusion_matrix_counts_rows_by_true_and_predicted_class() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    probability = np.array([0.1, 0.9, 0.8, 0.7, 0.2])
    result = score_predictions(labels, probability, np.zeros(5))
    assert result.confusion_matrix == [[1, 1], [1, 2]]


def test_bootstrap_interval_brackets_the_row_weighted_mean() -> None:
    per_experiment = {1: 1.0, 2: 0.5, 3: 0.9}
    rows = {1: 100, 2: 100, 3: 200}
    interval = bootstrap_over_experiments(per_experiment, rows, seed=0)
    assert interval.mean == (100 + 50 + 180) / 400
    assert interval.low <= interval.mean <= interval.high
    assert interval.low >= 0.5 and interval.high <= 1.0
