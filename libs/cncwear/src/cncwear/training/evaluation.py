"""Evaluation grouped by experiment.

Neighbouring rows of one experiment are near duplicates and the label is constant per experiment, so
a random row split lets a model recognise experiments it has already seen. Everything that selects
or promotes a model here holds out whole experiments; the random row split is computed only to show
how far the leaky figure is from the honest one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from cncwear.core.schema import EXPERIMENT_COLUMN
from cncwear.data.dataset import Dataset

CURVE_POINTS = 200
"""At most this many points per logged curve: enough to draw it, small enough to log and serve."""


@dataclass(frozen=True)
class HoldoutSplit:
    train_experiments: list[int]
    holdout_experiments: list[int]


@dataclass(frozen=True)
class Curves:
    """ROC and precision-recall curves of the wear probability, thinned to at most
    :data:`CURVE_POINTS` points each, for plotting."""

    roc_fpr: list[float]
    roc_tpr: list[float]
    roc_thresholds: list[float]
    pr_recall: list[float]
    pr_precision: list[float]
    pr_thresholds: list[float]
    average_precision: float


def curves(labels: np.ndarray, probability_worn: np.ndarray) -> Curves:
    """The ROC and precision-recall curves of a scored set holding both classes."""
    fpr, tpr, roc_thresholds = roc_curve(labels, probability_worn, drop_intermediate=True)
    precision, recall, pr_thresholds = precision_recall_curve(labels, probability_worn)
    # precision_recall_curve has one threshold fewer than points: the last point (recall 0,
    # precision 1) has none. Repeat the highest threshold so every point has one.
    pr_thresholds = np.append(pr_thresholds, pr_thresholds[-1] if len(pr_thresholds) else 1.0)
    # roc_curve's first threshold is +inf (nothing predicted worn): JSON has no infinity.
    roc_thresholds = np.minimum(roc_thresholds, 1.0)
    roc_keep, pr_keep = _thin(len(fpr)), _thin(len(recall))
    return Curves(
        roc_fpr=_floats(fpr[roc_keep]),
        roc_tpr=_floats(tpr[roc_keep]),
        roc_thresholds=_floats(roc_thresholds[roc_keep]),
        pr_recall=_floats(recall[pr_keep]),
        pr_precision=_floats(precision[pr_keep]),
        pr_thresholds=_floats(pr_thresholds[pr_keep]),
        average_precision=float(average_precision_score(labels, probability_worn)),
    )


def _thin(length: int) -> np.ndarray:
    """Indices of at most CURVE_POINTS evenly spread points, the first and the last kept."""
    if length <= CURVE_POINTS:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, CURVE_POINTS).round().astype(int))


def _floats(values: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in values]


@dataclass
class Evaluation:
    """Row-level metrics on held-out experiments, and accuracy at experiment level."""

    accuracy: float
    precision: float
    recall: float
    f1: float
    mcc: float
    roc_auc: float | None
    confusion_matrix: list[list[int]]
    experiment_accuracy: float
    experiments_right: int
    experiments: int
    per_experiment: dict[int, float] = field(default_factory=dict)
    """Row accuracy of each held-out experiment."""
    curves: Curves | None = None
    """ROC and precision-recall curves (None when the rows hold one class only)."""

    def metrics(self) -> dict[str, float]:
        """The scalar metrics, named as they are logged to MLflow."""
        values = {
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "mcc": self.mcc,
            "experiment_accuracy": self.experiment_accuracy,
        }
        if self.roc_auc is not None:
            values["roc_auc"] = self.roc_auc
        return values

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def holdout_split(dataset: Dataset, fraction: float, seed: int) -> HoldoutSplit:
    """Hold out whole experiments, the same share of each class, chosen by the seed."""
    labels = dataset.experiment_labels()
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for label in sorted(labels.unique()):
        members = np.sort(labels.index[labels == label].to_numpy())
        count = max(1, round(len(members) * fraction))
        if count >= len(members):
            raise ValueError(
                f"cannot hold out {count} of {len(members)} experiments of class {label}"
            )
        held += [int(e) for e in rng.choice(members, size=count, replace=False)]
    train = [int(e) for e in labels.index if e not in held]
    return HoldoutSplit(train_experiments=sorted(train), holdout_experiments=sorted(held))


def evaluate(pipeline: Pipeline, dataset: Dataset) -> Evaluation:
    """Score a fitted pipeline on a data set, feeding it the raw columns it was fitted on."""
    x = dataset.rows[list(pipeline.feature_names_in_)]
    probability = pipeline.predict_proba(x)[:, 1]
    return score_predictions(dataset.labels, probability, dataset.groups)


def score_predictions(
    labels: np.ndarray, probability_worn: np.ndarray, groups: np.ndarray
) -> Evaluation:
    """Metrics of wear probabilities against labels, with experiment-level majority votes."""
    predicted = (probability_worn >= 0.5).astype(int)
    frame = pd.DataFrame({EXPERIMENT_COLUMN: groups, "label": labels, "right": predicted == labels})
    per_experiment = frame.groupby(EXPERIMENT_COLUMN)["right"].mean()
    both_classes = len(np.unique(labels)) == 2
    return Evaluation(
        accuracy=float(accuracy_score(labels, predicted)),
        precision=float(precision_score(labels, predicted, zero_division=0)),
        recall=float(recall_score(labels, predicted, zero_division=0)),
        f1=float(f1_score(labels, predicted, zero_division=0)),
        mcc=float(matthews_corrcoef(labels, predicted)) if both_classes else 0.0,
        roc_auc=float(roc_auc_score(labels, probability_worn)) if both_classes else None,
        confusion_matrix=confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
        experiment_accuracy=float((per_experiment > 0.5).mean()),
        experiments_right=int((per_experiment > 0.5).sum()),
        experiments=len(per_experiment),
        per_experiment=dict(
            zip(
                per_experiment.index.astype(int).tolist(),
                per_experiment.astype(float).tolist(),
                strict=True,
            )
        ),
        curves=curves(labels, probability_worn) if both_classes else None,
    )


def leaky_row_split_accuracy(
    pipeline: Pipeline, dataset: Dataset, *, seed: int, n_jobs: int = 1
) -> float:
    """The thesis's figure: a random 80/20 split of rows, which leaks between near-duplicate rows.
    Shown only beside grouped figures, never used to select or promote."""
    x = dataset.rows[list(pipeline.feature_names_in_)]
    x_train, x_test, y_train, y_test = train_test_split(
        x, dataset.labels, test_size=0.2, random_state=seed, stratify=dataset.labels
    )
    model = clone(pipeline)
    if "n_jobs" in model.named_steps["model"].get_params():
        model.set_params(model__n_jobs=n_jobs)
    model.fit(x_train, y_train)
    return float(accuracy_score(y_test, model.predict(x_test)))


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float


def bootstrap_over_experiments(
    per_experiment: dict[int, float],
    rows_per_experiment: dict[int, int],
    *,
    seed: int,
    resamples: int = 2000,
    confidence: float = 0.95,
) -> Interval:
    """Row-weighted mean accuracy with a percentile interval from resampling whole experiments:
    the uncertainty that matters when there are only a handful of experiments."""
    keys = sorted(per_experiment)
    accuracy = np.array([per_experiment[k] for k in keys])
    weights = np.array([rows_per_experiment[k] for k in keys], dtype=float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(keys), size=(resamples, len(keys)))
    means = (accuracy[picks] * weights[picks]).sum(axis=1) / weights[picks].sum(axis=1)
    tail = (1 - confidence) / 2
    return Interval(
        mean=float((accuracy * weights).sum() / weights.sum()),
        low=float(np.quantile(means, tail)),
        high=float(np.quantile(means, 1 - tail)),
    )
