"""Drift judged against the variation between normal runs, not against zero.

Every run of a mill is its own distribution (feed rate, clamp pressure, the stock, how far the
program got), so one run compared with a pool of others differs on almost every feature by any
two-sample test. What a monitor can tell is whether a run differs from the pool *more than normal
runs do*. The null distribution of each drift statistic is therefore built from the training runs
themselves: each run in turn is left out and compared with a sample of the others, exactly as live
traffic will be compared with a sample of all of them. Live traffic is drifted on a check when its
statistic lies beyond an upper quantile of that null, times a margin (both settings of the service
that judges; the null itself is logged with the model).

Three checks, each aimed at a kind of fault that the others miss:

- ``shape``: the Wasserstein distance normed by the reference's standard deviation (Evidently's
  choice for large references), per column. A gain or a unit error moves it.
- ``spread``: the run's standard deviation over the reference's, per column. A unit error (mm sent
  as cm, a velocity ten times too large) widens a column far more than normal runs differ; a
  narrower run is common (a slow feed, a short program) and is left to ``stuck``.
- ``stuck``: 1 when a column is constant over the served rows, per column. Its null is the share
  of training runs constant in that column, so it fires only where no normal run was constant (a
  frozen sensor; a column constant by design, never). A narrower spread short of constant is not
  flagged: real runs are often much narrower than the pool (a slow feed, a short program).
- ``toolpath``: the median distance from each served row's axis positions to the nearest reference
  row's, in reference standard deviations. Runs of the same program lie on one tool path, however
  far they got along it, so a marginal test cannot see a shifted work offset while this check does.

``docs/drift.md`` has the reasoning and the leave-one-experiment-out figures (``bench/drift.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial import cKDTree

from cncwear.core.errors import CncwearError
from cncwear.core.schema import IDENTIFYING_COLUMNS, SENSOR_NUMERIC_COLUMNS
from cncwear.data.feature_map import FeatureMap

TOOLPATH_COLUMNS = ("X1_ActualPosition", "Y1_ActualPosition", "Z1_ActualPosition")
"""The axis positions the tool path is read from."""
MIN_STD = 1e-3
"""Floor on a reference standard deviation used as a norm (as Evidently's)."""
MIN_NULL_RUNS = 6
"""Below this many training runs, each run's halves are left out too, so the null has values
enough for an upper quantile (a block bootstrap that keeps neighbouring rows together)."""
BAND_QUANTILES = (0.5, 0.9, 1.0)
"""The null's quantiles shown beside a live statistic (the normal band)."""
CHECKS = ("shape", "spread", "stuck")
MARGINS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0)
"""Margins :meth:`NullReference.choose_margin` picks from (the largest when none is enough)."""


WATCHED_RAW_COLUMNS = tuple(c for c in SENSOR_NUMERIC_COLUMNS if c not in IDENTIFYING_COLUMNS)
"""Raw readings watched beside the model's features: a fault on a reading the model does not use
still matters (the next model may), while the identifying columns (program number, line, feed
override) tell runs apart by design and say nothing about the sensors."""


def watched_map(feature_map: FeatureMap) -> FeatureMap:
    """What the drift monitor computes from a raw row: the model's features, then the raw
    readings of :data:`WATCHED_RAW_COLUMNS` that are not among them."""
    return feature_map.with_columns(WATCHED_RAW_COLUMNS)


class NullReferenceError(CncwearError):
    """Too little to build a null from: fewer than two runs, or no column that varies."""


def shape_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein distance between the two samples, normed by the reference's spread."""
    norm = max(float(np.std(reference)), MIN_STD)
    return float(stats.wasserstein_distance(reference, current)) / norm


def spread_ratio(reference: np.ndarray, current: np.ndarray) -> float:
    """How many times wider ``current`` is than ``reference`` (standard deviations)."""
    return float(np.std(current)) / max(float(np.std(reference)), MIN_STD)


def stuck(current: np.ndarray) -> float:
    """1.0 when every value of ``current`` is the same (a frozen reading), else 0.0."""
    return float(len(current) > 1 and bool(np.all(current == current[0])))


@dataclass(frozen=True)
class Toolpath:
    """The reference's axis positions, standardised, in a k-d tree for nearest-row queries."""

    positions: np.ndarray

    @cached_property
    def _scale(self) -> tuple[np.ndarray, np.ndarray]:
        return self.positions.mean(axis=0), np.maximum(self.positions.std(axis=0), MIN_STD)

    @cached_property
    def _tree(self) -> cKDTree:
        mean, std = self._scale
        return cKDTree((self.positions - mean) / std)

    def distance(self, current: np.ndarray) -> float:
        """Median distance from the rows of ``current`` to the nearest reference row."""
        mean, std = self._scale
        distances, _ = self._tree.query((current - mean) / std, k=1)
        return float(np.median(distances))


@dataclass(frozen=True)
class Check:
    """One statistic of the served rows against its normal band."""

    name: str
    """A column, or ``toolpath``."""
    check: str
    """``shape``, ``spread``, ``stuck`` or ``toolpath``."""
    statistic: float
    threshold: float
    band: dict[str, float]
    """The null's quantiles (``BAND_QUANTILES``): where normal runs lie."""

    @property
    def drifted(self) -> bool:
        return self.statistic > self.threshold


@dataclass(frozen=True)
class NullVerdict:
    """Every check of some served rows, and the verdict: drifted when any check is beyond its
    band (the margin and quantile are chosen so that a normal run passes them all)."""

    rows: int
    checks: list[Check]

    @property
    def drifted_checks(self) -> list[Check]:
        return [c for c in self.checks if c.drifted]

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_checks)

    def by_column(self, name: str) -> dict[str, Check]:
        return {c.check: c for c in self.checks if c.name == name}


@dataclass(frozen=True)
class NullReference:
    """A pooled sample of the training runs' rows, and each check's null distribution.

    ``null[check]`` has one row per left-out run (or half-run) and one column per name; ``toolpath``
    one value per left-out run, or none when the rows have no axis positions."""

    names: list[str]
    sample: np.ndarray
    null: dict[str, np.ndarray]
    toolpath_null: np.ndarray
    runs: int
    toolpath_columns: list[str]
    part_runs: np.ndarray
    """The run (its index) each row of the null was left out from."""

    def choose_margin(self, quantile: float) -> float:
        """The smallest of :data:`MARGINS` under which no training run lies beyond the band of
        the others: each run's statistics against the null without it (leave one out again).
        Chosen on the training runs alone, so it is as honest for a new run as the null is."""
        return next((m for m in MARGINS if not self.inner_alarms(quantile, m)), MARGINS[-1])

    def inner_alarms(self, quantile: float, margin: float) -> list[int]:
        """The training runs (indices) that would be drifted against the band of the others."""
        alarmed = []
        part_runs = self.part_runs
        nulls = [(c, self.null[c][:, j]) for c in CHECKS for j in range(len(self.names))]
        if len(self.toolpath_null):
            nulls.append(("toolpath", self.toolpath_null))
        for run in np.unique(part_runs):
            mine, others = part_runs == run, part_runs != run
            if any(
                np.max(values[mine]) > band_threshold(check, values[others], quantile, margin)
                for check, values in nulls
            ):
                alarmed.append(int(run))
        return alarmed

    @cached_property
    def _toolpath(self) -> Toolpath | None:
        if not self.toolpath_columns:
            return None
        return Toolpath(self.sample[:, [self.names.index(c) for c in self.toolpath_columns]])

    def judge(self, current: np.ndarray, *, quantile: float, margin: float) -> NullVerdict:
        """Every check of ``current`` (rows of the columns ``names``, in order)."""
        checks: list[Check] = []
        for j, name in enumerate(self.names):
            reference, served = self.sample[:, j], current[:, j]
            for check, statistic in (
                ("shape", shape_distance(reference, served)),
                ("spread", spread_ratio(reference, served)),
                ("stuck", stuck(served)),
            ):
                checks.append(
                    _check(
                        name,
                        check,
                        statistic,
                        self.null[check][:, j],
                        quantile=quantile,
                        margin=margin,
                    )
                )
        if self._toolpath is not None and len(self.toolpath_null):
            columns = [self.names.index(c) for c in self.toolpath_columns]
            statistic = self._toolpath.distance(current[:, columns])
            checks.append(
                _check(
                    "toolpath",
                    "toolpath",
                    statistic,
                    self.toolpath_null,
                    quantile=quantile,
                    margin=margin,
                )
            )
        return NullVerdict(rows=len(current), checks=checks)

    def as_profile(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "sample": self.sample.tolist(),
            "null": {k: v.tolist() for k, v in self.null.items()},
            "toolpath_null": self.toolpath_null.tolist(),
            "toolpath_columns": self.toolpath_columns,
            "runs": self.runs,
            "part_runs": self.part_runs.tolist(),
        }

    @classmethod
    def from_profile(cls, data: Mapping[str, Any]) -> NullReference:
        names = [str(n) for n in data["names"]]
        return cls(
            names=names,
            sample=np.asarray(data["sample"], dtype=np.float64).reshape(-1, len(names)),
            null={
                k: np.asarray(v, dtype=np.float64).reshape(-1, len(names))
                for k, v in data["null"].items()
            },
            toolpath_null=np.asarray(data["toolpath_null"], dtype=np.float64),
            runs=int(data["runs"]),
            toolpath_columns=[str(c) for c in data["toolpath_columns"]],
            part_runs=np.asarray(data["part_runs"], dtype=np.int64),
        )


def band_threshold(check: str, null: np.ndarray, quantile: float, margin: float) -> float:
    """The edge of the normal band: the null's upper ``quantile`` times ``margin``. A ``stuck``
    column is beyond it only where no normal run was constant: its null is an indicator, which a
    quantile or margin would not make more or less normal."""
    if not len(null):
        return float("inf")
    if check == "stuck":
        return 0.5 if float(np.max(null)) == 0.0 else 1.0
    return float(np.quantile(null, quantile)) * margin


def _check(
    name: str, check: str, statistic: float, null: np.ndarray, *, quantile: float, margin: float
) -> Check:
    band = {str(q): float(np.quantile(null, q)) for q in BAND_QUANTILES} if len(null) else {}
    return Check(name, check, statistic, band_threshold(check, null, quantile, margin), band)


def build_null_reference(
    matrix: np.ndarray,
    groups: np.ndarray,
    names: Sequence[str],
    *,
    sample_size: int = 2000,
    seed: int = 0,
) -> NullReference:
    """The null of every check, by leaving each run (``groups``) out of the pool in turn.

    The pool is subsampled to ``sample_size`` rows for every comparison, as live traffic is
    compared with a sample of that size: distances to the nearest row depend on it.

    Raises :class:`NullReferenceError`."""
    runs = np.unique(groups)
    if len(runs) < 2:
        raise NullReferenceError(f"a null needs at least two runs, got {len(runs)}")
    varying = [j for j in range(matrix.shape[1]) if np.std(matrix[:, j]) > 0]
    if not varying:
        raise NullReferenceError("no column varies across the training runs")
    matrix = matrix[:, varying]
    names = [names[j] for j in varying]
    toolpath = [c for c in TOOLPATH_COLUMNS if c in names]
    toolpath_index = [names.index(c) for c in toolpath]
    rng = np.random.default_rng(seed)
    left_out = _left_out_parts(groups, runs)
    null: dict[str, list[np.ndarray]] = {check: [] for check in CHECKS}
    toolpath_null: list[float] = []
    for part, run in left_out:
        pool = np.flatnonzero(groups != run)
        pool = rng.choice(pool, size=min(sample_size, len(pool)), replace=False)
        reference, served = matrix[pool], matrix[part]
        null["shape"].append(
            np.array([shape_distance(reference[:, j], served[:, j]) for j in range(len(names))])
        )
        null["spread"].append(
            np.array([spread_ratio(reference[:, j], served[:, j]) for j in range(len(names))])
        )
        null["stuck"].append(np.array([stuck(served[:, j]) for j in range(len(names))]))
        if toolpath:
            toolpath_null.append(
                Toolpath(reference[:, toolpath_index]).distance(served[:, toolpath_index])
            )
    sample = rng.choice(len(matrix), size=min(sample_size, len(matrix)), replace=False)
    return NullReference(
        names=names,
        sample=matrix[np.sort(sample)],
        null={k: np.vstack(v) for k, v in null.items()},
        toolpath_null=np.asarray(toolpath_null),
        runs=len(runs),
        toolpath_columns=toolpath,
        part_runs=np.searchsorted(runs, np.asarray([run for _, run in left_out])),
    )


def _left_out_parts(groups: np.ndarray, runs: np.ndarray) -> list[tuple[np.ndarray, Any]]:
    """Each run's rows, and with fewer than ``MIN_NULL_RUNS`` runs also each run's two halves (in
    row order), paired with the run they come from."""
    parts: list[tuple[np.ndarray, Any]] = []
    for run in runs:
        rows = np.flatnonzero(groups == run)
        parts.append((rows, run))
        if len(runs) < MIN_NULL_RUNS and len(rows) >= 2:
            half = len(rows) // 2
            parts.extend([(rows[:half], run), (rows[half:], run)])
    return parts


@dataclass(frozen=True)
class PredictionNull:
    """Predicted wear probabilities on the held-out runs, and the ``shape`` null between them:
    each held-out run against the others (the model never saw any of them, so this is how its
    answers vary between normal unseen runs)."""

    sample: np.ndarray
    null: np.ndarray

    def judge(self, current: np.ndarray, *, quantile: float, margin: float) -> Check:
        statistic = shape_distance(self.sample, current)
        return _check(
            "probability_worn", "shape", statistic, self.null, quantile=quantile, margin=margin
        )

    def as_profile(self) -> dict[str, Any]:
        return {"sample": self.sample.tolist(), "null": self.null.tolist()}

    @classmethod
    def from_profile(cls, data: Mapping[str, Any]) -> PredictionNull:
        return cls(
            sample=np.asarray(data["sample"], dtype=np.float64),
            null=np.asarray(data["null"], dtype=np.float64),
        )


def build_prediction_null(
    probability: np.ndarray, groups: np.ndarray, *, sample_size: int = 2000, seed: int = 0
) -> PredictionNull:
    """The prediction null from held-out runs (halves too when they are few, as for features)."""
    rng = np.random.default_rng(seed)
    null = [
        shape_distance(probability[groups != run], probability[part])
        for part, run in _left_out_parts(groups, np.unique(groups))
        if np.any(groups != run)
    ]
    sample = rng.choice(len(probability), size=min(sample_size, len(probability)), replace=False)
    return PredictionNull(sample=probability[np.sort(sample)], null=np.asarray(null))
