"""Drift statistics: how far a window of served values has moved from the training reference.

Two figures per feature. A population stability index (PSI) over bins cut at the reference's
deciles, the figure operators know (below 0.1 stable, 0.1 to 0.25 moving, above 0.25 shifted). And
a two-sample comparison chosen like Evidently's defaults for numerical columns: with at most 1,000
reference observations the Kolmogorov-Smirnov test (drift when p < 0.05); with more, the
Wasserstein distance normed by the reference's standard deviation (drift when above 0.1), since on
large samples any test rejects on differences too small to matter. That comparison decides whether
the feature counts as drifted; the share of drifted features decides about the whole window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from scipy import stats

from cncwear.data.drift_null import Check, shape_distance

EVIDENTLY_SMALL_REFERENCE = 1000
"""Evidently: up to this many reference observations, a statistical test (KS); above, a distance."""

KS_ALPHA = 0.05
WASSERSTEIN_THRESHOLD = 0.1
PSI_BINS = 10
PSI_EPSILON = 1e-4
"""Floor on a bin's share, so an empty bin gives a large PSI rather than an infinite one."""


class DriftTest(StrEnum):
    KS = "ks"
    WASSERSTEIN = "wasserstein"
    TOOLPATH = "toolpath"
    """Rows' axis positions against the reference's tool path (:mod:`cncwear.data.drift_null`)."""


def choose_test(reference_size: int) -> DriftTest:
    """Evidently's choice for a numerical column, by the size of the reference."""
    return DriftTest.KS if reference_size <= EVIDENTLY_SMALL_REFERENCE else DriftTest.WASSERSTEIN


@dataclass(frozen=True)
class FeatureDrift:
    """One column of the window against its reference."""

    name: str
    psi: float
    test: DriftTest
    statistic: float
    """KS: the p-value; Wasserstein: the normed distance."""
    threshold: float
    drifted: bool
    reference_mean: float
    current_mean: float
    band: dict[str, float] = field(default_factory=dict)
    """Where normal runs lie (the null's quantiles), when the threshold is calibrated on them."""
    p_value: float | None = None
    """The KS p-value, shown beside a calibrated statistic (not what decides)."""
    stuck: bool = False
    """Constant over the window, where no normal run was."""
    spread: float | None = None
    """Standard deviation over the reference's, when calibrated."""
    spread_threshold: float | None = None

    @property
    def calibrated(self) -> bool:
        return bool(self.band)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "test": self.test.value, "calibrated": self.calibrated}


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference``, over bins cut at the
    reference's quantiles (equal-population bins; ties merge bins)."""
    edges = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    expected = _shares(reference, edges)
    actual = _shares(current, edges)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.maximum(counts / max(len(values), 1), PSI_EPSILON)


def compare(
    name: str,
    reference: np.ndarray,
    current: np.ndarray,
    *,
    ks_alpha: float = KS_ALPHA,
    wasserstein_threshold: float = WASSERSTEIN_THRESHOLD,
    psi_bins: int = PSI_BINS,
) -> FeatureDrift:
    """Drift of one column: PSI, and the comparison Evidently would choose for this reference."""
    test = choose_test(len(reference))
    if test is DriftTest.KS:
        statistic = float(stats.ks_2samp(reference, current).pvalue)
        threshold, drifted = ks_alpha, statistic < ks_alpha
    else:
        statistic = shape_distance(reference, current)
        threshold, drifted = wasserstein_threshold, statistic > wasserstein_threshold
    return FeatureDrift(
        name=name,
        psi=psi(reference, current, psi_bins),
        test=test,
        statistic=statistic,
        threshold=threshold,
        drifted=bool(drifted),
        reference_mean=float(np.mean(reference)),
        current_mean=float(np.mean(current)),
    )


def calibrated(
    name: str,
    reference: np.ndarray,
    current: np.ndarray,
    checks: dict[str, Check],
    *,
    psi_bins: int = PSI_BINS,
) -> FeatureDrift:
    """Drift of one column judged against the variation between normal runs: its ``shape``,
    ``spread`` and ``stuck`` checks, with PSI and the KS p-value shown beside them."""
    shape, wider, frozen = checks["shape"], checks.get("spread"), checks.get("stuck")
    return FeatureDrift(
        name=name,
        psi=psi(reference, current, psi_bins),
        test=DriftTest.WASSERSTEIN,
        statistic=shape.statistic,
        threshold=shape.threshold,
        drifted=any(c is not None and c.drifted for c in (shape, wider, frozen)),
        reference_mean=float(np.mean(reference)),
        current_mean=float(np.mean(current)),
        band=shape.band,
        p_value=float(stats.ks_2samp(reference, current).pvalue),
        stuck=bool(frozen and frozen.drifted),
        spread=None if wider is None else wider.statistic,
        spread_threshold=None if wider is None else wider.threshold,
    )


def toolpath(check: Check) -> FeatureDrift:
    """The tool-path check as a row of the drift table (no means or PSI: it is joint)."""
    return FeatureDrift(
        name=check.name,
        psi=0.0,
        test=DriftTest.TOOLPATH,
        statistic=check.statistic,
        threshold=check.threshold,
        drifted=check.drifted,
        reference_mean=0.0,
        current_mean=0.0,
        band=check.band,
    )
