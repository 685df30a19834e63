"""A pipeline's feature steps as arithmetic on the raw numeric columns.

Every engineered feature of :mod:`cncwear.data.features` is a raw column or a command-minus-actual
difference, so the features the estimator sees are gathers and one subtraction away from a raw row:
the ONNX export writes that into its graph, the drift window and the explainers compute it without
pandas or a pipeline call. The arithmetic is read off the fitted steps (not spelt out again) and
trusted only if it reproduces their output exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from cncwear.core.errors import CncwearError
from cncwear.core.schema import PROCESS_COLUMN, numeric_columns, validate_rows
from cncwear.data.features import selected_features

CHECK_ROWS = 64
"""Random rows the map is checked on when no real rows are given."""


class FeatureStepsError(CncwearError):
    """Feature steps that are not column picks and command-minus-actual differences."""


@dataclass(frozen=True)
class FeatureMap:
    """``feature[j] = raw[plus[j]] - (raw[minus[j]] if has_minus[j] else 0)`` over the raw numeric
    columns ``raw_columns``, for the features ``names`` (the estimator's columns, in its order)."""

    raw_columns: list[str]
    names: list[str]
    plus: np.ndarray
    minus: np.ndarray
    has_minus: np.ndarray
    """1.0 where the feature is a difference, 0.0 where it is a raw column."""
    unmapped: list[str] = field(default_factory=list)
    """Features of the estimator the map does not compute: none for a probed map, all of them for
    :meth:`nothing`."""

    @classmethod
    def probe(
        cls, pipeline: Pipeline, rows: pd.DataFrame | None = None, *, seed: int = 0
    ) -> FeatureMap:
        """Read the feature steps (all steps but the last) off a fitted pipeline by probing them
        with a row of zeros and one unit row per raw numeric column, and accept the map only if it
        reproduces the steps' output exactly on ``rows`` (validated raw rows; by default
        :data:`CHECK_ROWS` random rows that exercise every raw column, drawn with ``seed``).

        Raises :class:`FeatureStepsError`."""
        columns = [str(c) for c in pipeline.feature_names_in_]
        raw_columns = numeric_columns(columns)
        if rows is None:
            rows = _random_rows(columns, seed)
        features = pipeline[:-1]
        probe = pd.DataFrame(
            np.vstack([np.zeros(len(raw_columns)), np.eye(len(raw_columns))]), columns=raw_columns
        )
        known = PROCESS_COLUMN in rows and len(rows)
        probe[PROCESS_COLUMN] = str(rows[PROCESS_COLUMN].iloc[0]) if known else "Layer 1 Up"
        try:
            probed = np.asarray(features.transform(probe[columns]), dtype=np.float64)
            names = selected_features(pipeline)
        except Exception as error:
            raise FeatureStepsError(f"the feature steps cannot be probed: {error}") from error
        bias, weights = probed[0], probed[1:] - probed[0]
        if np.any(bias != 0) or not np.all(np.isin(weights, (-1.0, 0.0, 1.0))):
            raise FeatureStepsError("the feature steps are not column picks and differences")
        plus_count, minus_count = (weights == 1).sum(axis=0), (weights == -1).sum(axis=0)
        if np.any(plus_count != 1) or np.any(minus_count > 1):
            raise FeatureStepsError("the feature steps are not column picks and differences")
        has_minus = minus_count == 1
        mapping = cls(
            raw_columns=raw_columns,
            names=names,
            plus=np.argmax(weights == 1, axis=0).astype(np.int64),
            minus=np.where(has_minus, np.argmax(weights == -1, axis=0), 0).astype(np.int64),
            has_minus=has_minus.astype(np.float64),
        )
        expected = np.asarray(features.transform(rows[columns]), dtype=np.float64)
        if not np.array_equal(mapping.apply(rows[raw_columns].to_numpy(np.float64)), expected):
            raise FeatureStepsError(
                "the feature steps do not reduce to column picks and differences"
            )
        return mapping

    @classmethod
    def nothing(cls, pipeline: Pipeline) -> FeatureMap:
        """A map that computes none of the pipeline's features (all of them ``unmapped``)."""
        raw_columns = numeric_columns(str(c) for c in pipeline.feature_names_in_)
        empty = np.zeros(0, dtype=np.int64)
        return cls(
            raw_columns=raw_columns,
            names=[],
            plus=empty,
            minus=empty,
            has_minus=np.zeros(0),
            unmapped=selected_features(pipeline),
        )

    def with_columns(self, columns: Sequence[str]) -> FeatureMap:
        """This map plus the raw ``columns`` it does not compute already, as plain picks (the
        drift monitor watches raw readings beside the model's features)."""
        extra = [c for c in columns if c not in self.names and c in self.raw_columns]
        picks = np.array([self.raw_columns.index(c) for c in extra], dtype=np.int64)
        return FeatureMap(
            raw_columns=self.raw_columns,
            names=[*self.names, *extra],
            plus=np.concatenate([self.plus, picks]),
            minus=np.concatenate([self.minus, np.zeros(len(extra), dtype=np.int64)]),
            has_minus=np.concatenate([self.has_minus, np.zeros(len(extra))]),
            unmapped=self.unmapped,
        )

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """The features of validated raw rows (numeric columns in ``raw_columns`` order)."""
        difference = raw[:, self.plus] - raw[:, self.minus] * self.has_minus
        return np.asarray(difference, dtype=np.float64)

    @property
    def matrix(self) -> np.ndarray:
        """The same arithmetic as a matrix: ``raw @ matrix`` gives the features (exactly: each
        column has one +1 and at most one -1)."""
        weights = np.zeros((len(self.raw_columns), len(self.names)))
        columns = np.arange(len(self.names))
        weights[self.plus, columns] = 1.0
        differences = self.has_minus == 1.0
        weights[self.minus[differences], columns[differences]] = -1.0
        return weights


def _random_rows(columns: list[str], seed: int) -> pd.DataFrame:
    numeric = numeric_columns(columns)
    values = np.random.default_rng(seed).normal(scale=100.0, size=(CHECK_ROWS, len(numeric)))
    frame = pd.DataFrame(values, columns=numeric).assign(**{PROCESS_COLUMN: "Layer 1 Up"})
    return validate_rows(frame[columns], columns)
