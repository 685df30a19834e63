"""Evaluation grouped by experiment."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

from cncwear.data.dataset import Dataset
from cncwear.data.profile import HISTOGRAM_BINS, QUANTILES, feature_histograms
from cncwear.training.evaluation import (
    CURVE_POINTS,
    bootstrap_over_experiments,
    holdout_split,
    score_predictions,
)


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


def test_curves_run_from_nothing_to_everything_called_worn_and_are_thinned_for_plotting() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=5000)
    probability = np.clip(labels * 0.3 + rng.random(5000) * 0.7, 0, 1)
    result = score_predictions(labels, probability, np.arange(5000) % 7)
    curves = result.curves
    assert curves is not None
    assert len(curves.roc_fpr) <= CURVE_POINTS and len(curves.pr_recall) <= CURVE_POINTS
    assert (curves.roc_fpr[0], curves.roc_tpr[0]) == (0.0, 0.0)
    assert (curves.roc_fpr[-1], curves.roc_tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(curves.roc_fpr) >= 0) and np.all(np.diff(curves.roc_tpr) >= 0)
    assert curves.pr_recall[0] == 1.0 and curves.pr_recall[-1] == 0.0
    assert max(curves.roc_thresholds) <= 1.0  # JSON has no infinity
    assert curves.average_precision == average_precision_score(labels, probability)
    assert result.roc_auc is not None
    trapezoid = np.trapezoid(curves.roc_tpr, curves.roc_fpr)
    assert abs(trapezoid - result.roc_auc) < 0.01  # thinning keeps the curve's shape


def test_no_curves_when_the_rows_hold_one_class_only() -> None:
    result = score_predictions(np.ones(4, dtype=int), np.array([0.9, 0.8, 0.4, 0.7]), np.zeros(4))
    assert result.curves is None and result.roc_auc is None


def test_feature_histograms_count_the_profile_sample_with_tails_in_the_end_bins() -> None:
    values = np.concatenate([np.linspace(0, 1, 998), [-50.0, 50.0]])
    quantiles = dict(zip(map(str, QUANTILES), np.quantile(values, QUANTILES), strict=True))
    profile = {"features": {"f": {"quantiles": quantiles}}, "sample": {"f": values.tolist()}}
    edges, counts = feature_histograms(profile)["f"]
    assert len(edges) == HISTOGRAM_BINS + 1 and len(counts) == HISTOGRAM_BINS
    assert sum(counts) == len(values)
    assert edges[0] == quantiles["0.01"] and edges[-1] == quantiles["0.99"]
