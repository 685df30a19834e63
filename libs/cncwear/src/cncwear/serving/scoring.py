"""What every scorer shares: the columns a fitted pipeline takes, and labels from probabilities.

Scoring itself is :class:`cncwear.serving.model.ScoringModel`, on rows validated by
:func:`cncwear.serving.batch.to_batch`."""

from __future__ import annotations

import numpy as np
from sklearn.pipeline import Pipeline

from cncwear.core.schema import CLASS_NAMES, THRESHOLD

__all__ = ["THRESHOLD", "labels", "model_input_columns"]


def model_input_columns(pipeline: Pipeline) -> list[str]:
    """The raw columns a fitted pipeline takes, in order."""
    return [str(c) for c in pipeline.feature_names_in_]


def labels(probability: np.ndarray) -> list[str]:
    return [CLASS_NAMES[int(p >= THRESHOLD)] for p in probability]
