"""Watching a served model: a sliding window of what it was asked and answered, the ground truth
given back for some of it, and how both compare with the reference logged with the model.

The work splits in two so that serving stays fast. On the request path, :meth:`Monitor.observe`
only copies the batch's selected features and predicted probabilities into fixed-size ring buffers
(a matrix product and a slice assignment, microseconds, memory bounded by the window). The
statistics (:mod:`cncwear.drift`) are computed from a snapshot of the buffers by
:meth:`Monitor.report`, on a timer or on demand, never per row.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from sklearn.pipeline import Pipeline

from cncwear.data.drift_null import NullReference, PredictionNull, watched_map
from cncwear.data.feature_map import FeatureMap, FeatureStepsError
from cncwear.monitoring.drift import FeatureDrift, calibrated, compare, toolpath

logger = logging.getLogger(__name__)

PERFORMANCE_METRICS = ("accuracy", "precision", "recall")


def window_feature_map(pipeline: Pipeline) -> FeatureMap:
    """The feature map the drift window engineers its rows with: the pipeline's own, or, when its
    feature steps are not column picks and differences, one that computes nothing (the window then
    monitors no feature and lists them all as unmonitored)."""
    try:
        return FeatureMap.probe(pipeline)
    except FeatureStepsError as error:
        logger.warning("drift monitoring covers no feature: %s", error)
        return FeatureMap.nothing(pipeline)


class RingBuffer:
    """The last ``capacity`` rows of a stream, in fixed memory: one or more aligned column blocks
    (say raw readings and a probability), appended together at the cost of a slice copy each."""

    def __init__(self, capacity: int, *widths: int) -> None:
        self.capacity = capacity
        self._blocks = [np.zeros((capacity, width)) for width in widths or (1,)]
        self._next = 0
        self.size = 0
        self.total = 0
        """Rows ever appended."""

    def extend(self, *parts: np.ndarray) -> None:
        """Append rows: one array per block, each ``(rows, width)`` or ``(rows,)`` for width 1."""
        count = len(parts[0])
        self.total += count
        capacity, start = self.capacity, self._next
        if count >= capacity:
            for block, part in zip(self._blocks, parts, strict=True):
                block[:] = part[-capacity:].reshape(capacity, -1)
            self._next, self.size = 0, capacity
            return
        end = start + count
        for block, part in zip(self._blocks, parts, strict=True):
            rows = part.reshape(count, -1)
            if end <= capacity:
                block[start:end] = rows
            else:
                first = capacity - start
                block[start:] = rows[:first]
                block[: count - first] = rows[first:]
        self._next = end % capacity
        if self.size < capacity:
            self.size = min(self.size + count, capacity)

    def values(self) -> list[np.ndarray]:
        """Copies of the rows held, one array per block (in storage order: the statistics do not
        need the arrival order)."""
        return [block[: self.size].copy() for block in self._blocks]

    def clear(self) -> None:
        self._next = self.size = self.total = 0


@dataclass(frozen=True)
class MonitorConfig:
    """How a window is judged. The figures come from the service's settings (the API's
    ``CNCWEAR_DRIFT_*`` and ``CNCWEAR_FEEDBACK_*``), which hold their defaults."""

    window_rows: int
    """Served rows the drift statistics look at (the most recent ones)."""
    min_rows: int
    """Rows the window must hold before drift is judged at all."""
    drift_share: float
    """Share of drifted features from which the window counts as drifted."""
    ks_alpha: float
    wasserstein_threshold: float
    feedback_window_rows: int
    """Labelled rows live performance is computed over (the most recent ones)."""
    feedback_min_rows: int
    """Labelled rows needed before live performance is reported and judged."""
    psi_bins: int = 10
    null_quantile: float = 1.0
    """Upper quantile of the null (between normal runs) that bounds the normal band."""
    null_margin: float | None = None
    """Factor on that quantile beyond which a statistic counts as drifted; None: the model's own,
    the smallest under which none of its training runs is drifted against the others
    (:meth:`NullReference.choose_margin`)."""


@dataclass(frozen=True)
class Reference:
    """What a model's live traffic is compared against, from the profile logged with it."""

    version: str
    features: dict[str, np.ndarray]
    """Rows of the held-out experiments, per selected feature (the profile's ``holdout_sample``)."""
    probability_worn: np.ndarray
    """Predicted wear probability on the held-out experiments (a sample of them)."""
    holdout: dict[str, float]
    """The model's accuracy, precision and recall on the held-out experiments."""
    training_rows: int
    null: NullReference | None = None
    """The training runs' watched columns and their null (the profile's ``drift_null``); None for
    a model logged before it, judged against ``features`` with fixed thresholds."""
    prediction_null: PredictionNull | None = None
    source: ClassVar[str] = "holdout_sample"
    """The profile's sample ``features`` come from."""

    @classmethod
    def from_profile(
        cls, version: str, profile: Mapping[str, Any], holdout_metrics: Mapping[str, float]
    ) -> Reference:
        sample = profile.get(cls.source) or {}
        probabilities = profile.get("holdout_probability_worn") or {}
        null = profile.get("drift_null") or {}
        return cls(
            version=version,
            features={str(k): np.asarray(v, dtype=np.float64) for k, v in sample.items()},
            probability_worn=np.asarray(probabilities.get("sample", []), dtype=np.float64),
            holdout={
                k: float(holdout_metrics[k]) for k in PERFORMANCE_METRICS if k in holdout_metrics
            },
            training_rows=int(profile.get("rows", 0)),
            null=NullReference.from_profile(null) if null else None,
            prediction_null=(
                PredictionNull.from_profile(null["prediction"]) if "prediction" in null else None
            ),
        )


@dataclass(frozen=True)
class LivePerformance:
    labelled_rows: int
    enough_rows: bool
    metrics: dict[str, float | None]
    holdout: dict[str, float]
    difference: dict[str, float | None]
    """Live minus holdout; negative: worse than measured before promotion."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "labelled_rows": self.labelled_rows,
            "enough_rows": self.enough_rows,
            "metrics": self.metrics,
            "holdout": self.holdout,
            "difference": self.difference,
        }


@dataclass(frozen=True)
class DriftVerdict:
    """Drift of some served rows: a replica's window, or one run."""

    rows: int
    enough_rows: bool
    features: list[FeatureDrift]
    drift_share: float
    drift_detected: bool
    prediction: FeatureDrift | None

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]


@dataclass(frozen=True)
class MonitorReport(DriftVerdict):
    """The verdict on a replica's window, with what else the window knows."""

    version: str
    rows_seen: int
    performance: LivePerformance
    config: MonitorConfig
    reference: dict[str, Any] = field(default_factory=dict)

    @property
    def window_rows(self) -> int:
        return self.rows


class Monitor:
    """The live window of one served model version, and its reference. Thread-safe: requests
    append while a timer takes reports."""

    def __init__(
        self, reference: Reference, feature_map: FeatureMap, config: MonitorConfig
    ) -> None:
        self.reference = reference
        self.config = config
        self.feature_map = feature_map
        watched = watched_map(feature_map)
        self.null = reference.null
        if self.null is not None and not set(self.null.names) <= set(watched.names):
            logger.warning("the drift null names columns this model does not compute; ignored")
            self.null = None
        if self.null is not None:
            self.names = list(self.null.names)
            computed = watched
        else:
            self.names = [n for n in feature_map.names if n in reference.features]
            computed = feature_map
        keep = [computed.names.index(n) for n in self.names]
        self._matrix = np.ascontiguousarray(computed.matrix[:, keep])
        # Raw readings are kept and engineered at report time: a slice copy per request, no
        # arithmetic on the request path.
        self._served = RingBuffer(config.window_rows, len(feature_map.raw_columns), 1)
        self._feedback = RingBuffer(config.feedback_window_rows, 1, 1)
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return self.reference.version

    def observe(self, numeric: np.ndarray, probability: np.ndarray) -> None:
        """Add a scored batch (validated raw numeric rows in the model's column order, and their
        wear probabilities) to the window. Request path: a slice copy under a lock."""
        with self._lock:
            self._served.extend(numeric, probability)

    def add_feedback(self, predicted_worn: np.ndarray, actual_worn: np.ndarray) -> None:
        with self._lock:
            self._feedback.extend(predicted_worn.astype(np.float64), actual_worn.astype(np.float64))

    def window_features(self) -> dict[str, np.ndarray]:
        """The monitored features of the rows in the window now (off the request path)."""
        with self._lock:
            numeric, _ = self._served.values()
        features = numeric @ self._matrix
        return {name: features[:, i] for i, name in enumerate(self.names)}

    def report(self) -> MonitorReport:
        """Drift and live performance over a snapshot of the windows (milliseconds: call it off the
        request path)."""
        with self._lock:
            numeric, probability_column = self._served.values()
            predicted, actual = self._feedback.values()
            rows_seen = self._served.total
        feedback = np.column_stack([predicted[:, 0], actual[:, 0]])
        verdict = self.judge(numeric, probability_column[:, 0])
        config = self.config
        return MonitorReport(
            **{f.name: getattr(verdict, f.name) for f in fields(DriftVerdict)},
            version=self.version,
            rows_seen=rows_seen,
            performance=self._performance(feedback),
            config=config,
            reference={
                "version": self.version,
                "what": (
                    "this version's training runs (features), each judged against the others "
                    "for the normal band, and its predictions on its held-out runs "
                    "(probability_worn)"
                    if self.null is not None
                    else "this version's held-out experiments: their rows (features) and its "
                    "predictions on them (probability_worn)"
                ),
                "calibrated": self.null is not None,
                "training_runs": None if self.null is None else self.null.runs,
                "training_rows": self.reference.training_rows,
                "feature_sample_rows": (
                    len(self.null.sample)
                    if self.null is not None
                    else min((len(v) for v in self.reference.features.values()), default=0)
                ),
                "probability_sample_rows": len(self.reference.probability_worn),
                "features": self.names,
                "unmonitored_features": [
                    n
                    for n in self.feature_map.unmapped + self.feature_map.names
                    if n not in self.names
                ],
            },
        )

    @cached_property
    def margin(self) -> float:
        """The margin on the null's quantile: the setting, else chosen on the training runs (a
        quarter of a second, once per served version, off the request path)."""
        if self.config.null_margin is not None:
            return self.config.null_margin
        assert self.null is not None
        return self.null.choose_margin(self.config.null_quantile)

    def judge(
        self, numeric: np.ndarray, probability: np.ndarray, *, min_rows: int | None = None
    ) -> DriftVerdict:
        """Drift of some served rows (validated raw numeric rows in the model's column order, and
        their wear probabilities): a window, or one run's rows. Against the null where the model
        has one: drifted when any check lies beyond the normal band. Else against the holdout
        sample with fixed thresholds, drifted from a share of drifted features. ``min_rows``:
        rows needed to judge at all (default: the window's)."""
        features = numeric @ self._matrix
        config = self.config
        needed = config.min_rows if min_rows is None else min_rows
        enough = len(features) >= needed and len(features) > 0
        drifts: list[FeatureDrift] = []
        prediction: FeatureDrift | None = None
        if enough and self.null is not None:
            drifts, prediction = self._calibrated(features, probability)
        elif enough:
            drifts = [
                self._compare(name, self.reference.features[name], features[:, i])
                for i, name in enumerate(self.names)
            ]
            if len(self.reference.probability_worn):
                prediction = self._compare(
                    "probability_worn", self.reference.probability_worn, probability
                )
        share = sum(d.drifted for d in drifts) / len(drifts) if drifts else 0.0
        if self.null is not None:
            detected = any(d.drifted for d in drifts)
        else:
            detected = enough and bool(drifts) and share >= config.drift_share
        return DriftVerdict(len(features), enough, drifts, share, detected, prediction)

    def _calibrated(
        self, features: np.ndarray, probability: np.ndarray
    ) -> tuple[list[FeatureDrift], FeatureDrift | None]:
        assert self.null is not None
        quantile, margin = self.config.null_quantile, self.margin
        verdict = self.null.judge(features, quantile=quantile, margin=margin)
        drifts = [
            calibrated(
                name,
                self.null.sample[:, i],
                features[:, i],
                verdict.by_column(name),
                psi_bins=self.config.psi_bins,
            )
            for i, name in enumerate(self.names)
        ]
        drifts.extend(toolpath(c) for c in verdict.checks if c.check == "toolpath")
        prediction = None
        if self.reference.prediction_null is not None:
            check = self.reference.prediction_null.judge(
                probability, quantile=quantile, margin=margin
            )
            prediction = calibrated(
                "probability_worn",
                self.reference.prediction_null.sample,
                probability,
                {"shape": check},
                psi_bins=self.config.psi_bins,
            )
        return drifts, prediction

    def _compare(self, name: str, reference: np.ndarray, current: np.ndarray) -> FeatureDrift:
        return compare(
            name,
            reference,
            current,
            ks_alpha=self.config.ks_alpha,
            wasserstein_threshold=self.config.wasserstein_threshold,
            psi_bins=self.config.psi_bins,
        )

    def _performance(self, feedback: np.ndarray) -> LivePerformance:
        holdout = self.reference.holdout
        enough = len(feedback) >= self.config.feedback_min_rows and len(feedback) > 0
        metrics: dict[str, float | None] = dict.fromkeys(PERFORMANCE_METRICS)
        if enough:
            metrics = classification_metrics(feedback[:, 0] > 0.5, feedback[:, 1] > 0.5)
        difference = {k: _minus(metrics[k], holdout.get(k)) for k in PERFORMANCE_METRICS}
        return LivePerformance(len(feedback), enough, metrics, holdout, difference)


def _minus(live: float | None, holdout: float | None) -> float | None:
    return None if live is None or holdout is None else live - holdout


def classification_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float | None]:
    """Accuracy, and precision and recall of the ``worn`` class (None where undefined)."""
    true_positive = int(np.sum(predicted & actual))
    predicted_positive, actual_positive = int(predicted.sum()), int(actual.sum())
    return {
        "accuracy": float(np.mean(predicted == actual)),
        "precision": true_positive / predicted_positive if predicted_positive else None,
        "recall": true_positive / actual_positive if actual_positive else None,
    }


class RecentPredictions:
    """What was predicted for recent requests, by request id, so that ground truth sent later can
    be matched. Bounded by the total rows held; the oldest requests are forgotten first."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self._rows = 0
        self._by_id: OrderedDict[str, tuple[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, request_id: str, version: str, predicted_worn: np.ndarray) -> None:
        if len(predicted_worn) > self.max_rows:
            return
        with self._lock:
            previous = self._by_id.pop(request_id, None)
            if previous is not None:
                self._rows -= len(previous[1])
            self._by_id[request_id] = (version, predicted_worn)
            self._rows += len(predicted_worn)
            while self._rows > self.max_rows:
                _, (_, dropped) = self._by_id.popitem(last=False)
                self._rows -= len(dropped)

    def peek(self, request_id: str) -> tuple[str, np.ndarray] | None:
        with self._lock:
            return self._by_id.get(request_id)

    def take(self, request_id: str) -> tuple[str, np.ndarray] | None:
        """The version and predicted labels of a request, forgotten once taken (ground truth for a
        request counts once)."""
        with self._lock:
            found = self._by_id.pop(request_id, None)
            if found is not None:
                self._rows -= len(found[1])
            return found


class SustainedCondition:
    """True once a condition has held, at every check, for at least ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.since: float | None = None

    def update(self, holds: bool, now: float) -> bool:
        if not holds:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.seconds

    def restart(self, now: float) -> None:
        """Start counting again (after acting on it), so it fires at most once per period."""
        self.since = now
