"""The reference profile of a model's training data, logged with the model.

Drift monitoring compares live traffic against it, so it describes the features the model's
estimator actually sees (after feature engineering and selection), plus the class balance and the
distribution of predicted wear probability on the held-out experiments.

It keeps two samples of those features: of the training rows (``sample``: what the model learned
from; the explainers start from it) and of the held-out experiments' rows (``holdout_sample``: the
rows on which the model's holdout figures were measured). Given the runs the rows came from, it
also holds ``drift_null`` (:mod:`cncwear.data.drift_null`): a sample of the training runs'
watched columns and how far each normal run lies from the others, which drift monitoring judges
traffic against; models logged before it are judged against ``holdout_sample`` with fixed
thresholds.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from cncwear.data.drift_null import (
    NullReferenceError,
    build_null_reference,
    build_prediction_null,
    watched_map,
)
from cncwear.data.feature_map import FeatureMap, FeatureStepsError

logger = logging.getLogger(__name__)

QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
PROBABILITY_BINS = 20


def build_profile(
    pipeline: Pipeline,
    train_x: pd.DataFrame,
    train_y: np.ndarray,
    holdout_probability_worn: np.ndarray,
    *,
    holdout_x: pd.DataFrame | None = None,
    train_groups: np.ndarray | None = None,
    holdout_groups: np.ndarray | None = None,
    sample_size: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """``train_groups`` and ``holdout_groups``: the run (experiment) of each row, for the drift
    null; without them the profile has none."""
    engineered = pipeline[:-1].transform(train_x)
    rng = np.random.default_rng(seed)
    sample_rows = rng.choice(len(engineered), size=min(sample_size, len(engineered)), replace=False)
    histogram, edges = np.histogram(holdout_probability_worn, bins=PROBABILITY_BINS, range=(0, 1))
    holdout_rows = rng.choice(
        len(holdout_probability_worn),
        size=min(sample_size, len(holdout_probability_worn)),
        replace=False,
    )
    profile: dict[str, Any] = {
        "rows": len(train_x),
        "class_balance": {
            "unworn": float(np.mean(train_y == 0)),
            "worn": float(np.mean(train_y == 1)),
        },
        "features": {str(c): _describe(engineered[c].to_numpy()) for c in engineered.columns},
        "sample": {
            str(c): engineered[c].to_numpy()[sample_rows].tolist() for c in engineered.columns
        },
        "holdout_probability_worn": {
            "bin_edges": edges.tolist(),
            "counts": histogram.tolist(),
            "mean": float(np.mean(holdout_probability_worn)),
            # Drift monitoring compares served probabilities against these (prediction drift).
            "sample": np.asarray(holdout_probability_worn)[holdout_rows].tolist(),
        },
    }
    if holdout_x is not None and len(holdout_x):
        held = pipeline[:-1].transform(holdout_x)
        picked = rng.choice(len(held), size=min(sample_size, len(held)), replace=False)
        profile["holdout_rows"] = len(holdout_x)
        profile["holdout_sample"] = {
            str(c): held[c].to_numpy()[picked].tolist() for c in held.columns
        }
    if train_groups is not None:
        profile["drift_null"] = _drift_null(
            pipeline,
            train_x,
            train_groups,
            holdout_probability_worn,
            holdout_groups,
            sample_size=sample_size,
            seed=seed,
        )
    return profile


def _drift_null(
    pipeline: Pipeline,
    train_x: pd.DataFrame,
    train_groups: np.ndarray,
    holdout_probability_worn: np.ndarray,
    holdout_groups: np.ndarray | None,
    *,
    sample_size: int,
    seed: int,
) -> dict[str, Any] | None:
    try:
        watched = watched_map(FeatureMap.probe(pipeline))
        columns = watched.apply(train_x[watched.raw_columns].to_numpy(np.float64))
        null = build_null_reference(
            columns, np.asarray(train_groups), watched.names, sample_size=sample_size, seed=seed
        ).as_profile()
    except (FeatureStepsError, NullReferenceError) as error:
        logger.warning("no drift null for this model: %s", error)
        return None
    if holdout_groups is not None and len(np.unique(holdout_groups)) >= 2:
        null["prediction"] = build_prediction_null(
            np.asarray(holdout_probability_worn), np.asarray(holdout_groups), seed=seed
        ).as_profile()
    return null


def _describe(values: np.ndarray) -> dict[str, Any]:
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "quantiles": {
            str(q): float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
        },
    }


HISTOGRAM_BINS = 30


def feature_histograms(
    profile: dict[str, Any], bins: int = HISTOGRAM_BINS
) -> dict[str, tuple[list[float], list[int]]]:
    """Histograms (bin edges, counts) of each profiled feature, from the profile's sample of the
    training rows. The bins span the 1st to 99th percentile of the whole training data; values
    beyond fall into the first or last bin, so a long tail does not squash the plot."""
    histograms: dict[str, tuple[list[float], list[int]]] = {}
    for feature, sample in profile.get("sample", {}).items():
        values = np.asarray(sample, dtype=float)
        edges = histogram_edges(profile["features"][feature]["quantiles"], bins)
        counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
        histograms[feature] = ([float(e) for e in edges], [int(c) for c in counts])
    return histograms


def histogram_edges(quantiles: dict[str, float], bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Evenly spaced bin edges from the 1st to the 99th percentile (the full range when those
    coincide, and a unit-wide range around a constant)."""
    low, high = quantiles["0.01"], quantiles["0.99"]
    if high <= low:
        low, high = quantiles["0.0"], quantiles["1.0"]
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)
