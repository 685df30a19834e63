"""Scoring raw rows with a fitted pipeline: validation first, then probabilities and labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from cncwear.core.schema import CLASS_NAMES, validate_rows

THRESHOLD = 0.5


def model_input_columns(pipeline: Pipeline) -> list[str]:
    """The raw columns a fitted pipeline takes, in order."""
    return [str(c) for c in pipeline.feature_names_in_]


def probability_worn(pipeline: Pipeline, rows: pd.DataFrame) -> np.ndarray:
    """Validate raw rows against the model's own input columns, then score them.

    Raises :class:`cncwear.errors.SchemaError` before any scoring when a row is bad."""
    typed = validate_rows(rows, model_input_columns(pipeline))
    return np.asarray(pipeline.predict_proba(typed)[:, 1], dtype=float)


def labels(probability: np.ndarray) -> list[str]:
    return [CLASS_NAMES[int(p >= THRESHOLD)] for p in probability]
