"""What the store answers: runs, their live performance, dataset versions (plain frozen records)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cncwear.data.runs.ids import RunLabel, RunState

Confusion = tuple[int, int, int, int]
"""Counts of (true negatives, false positives, false negatives, true positives), worn positive."""


@dataclass(frozen=True)
class AppendOutcome:
    rows_kept: int
    """Rows of the batch stored: all of them, unless the run reached ``CNCWEAR_RUN_MAX_ROWS``."""
    truncated: bool
    run_rows: int
    """Rows the run holds now."""


@dataclass(frozen=True)
class LivePerformance:
    """How the predictions served for labelled runs did against their labels."""

    runs: int
    rows: int
    accuracy: float | None
    precision: float | None
    """None when no row was predicted worn."""
    recall: float | None
    """None when no row was worn."""

    @classmethod
    def of(cls, counts: Iterable[Confusion], runs: int) -> LivePerformance:
        tn = fp = fn = tp = 0
        for a, b, c, d in counts:
            tn, fp, fn, tp = tn + a, fp + b, fn + c, tp + d
        rows = tn + fp + fn + tp
        return cls(
            runs=runs,
            rows=rows,
            accuracy=(tn + tp) / rows if rows else None,
            precision=tp / (tp + fp) if tp + fp else None,
            recall=tp / (tp + fn) if tp + fn else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ShadowRows:
    """A labelled run's rows as the champion and a challenger in shadow scored them, aligned by
    row: each array holds a wear probability per row of the run, NaN where that model scored none
    (another champion served it, or the challenger's queue dropped it)."""

    run: str
    label: int
    champion: np.ndarray
    challenger: np.ndarray


@dataclass(frozen=True)
class RunDrift:
    """A run's drift verdict: its active-cutting rows against a model version's normal band."""

    run: str
    model_version: str
    judged_at: float
    rows: int
    drifted: bool
    drifted_features: list[str]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RunRecord:
    run: str
    state: RunState
    source: str
    """``predict`` (streamed through ``/predict``) or ``upload`` (sent whole)."""
    label: RunLabel | None
    rows: int
    active_rows: int
    truncated: bool
    first_seen: float
    last_seen: float
    labelled_at: float | None
    withdrawn_at: float | None
    content_hash: str | None
    reasons: list[str]
    model_versions: list[str]
    """The model versions whose predictions were served for the run's rows."""
    live: LivePerformance | None
    """Those predictions against the label, once labelled."""
    dataset_versions: list[str]
    drift: RunDrift | None = None
    """The latest drift verdict on the run, if it was judged."""

    def as_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in self.__dict__.items() if k not in ("label", "live", "drift")},
            "state": self.state.value,
            "label": None if self.label is None else self.label.as_dict(),
            "live": None if self.live is None else self.live.as_dict(),
            "drift": None if self.drift is None else self.drift.as_dict(),
        }


@dataclass(frozen=True)
class RunPage:
    runs: list[RunRecord]
    total: int


@dataclass(frozen=True)
class StoreStats:
    runs: Mapping[RunState, int]
    rows: int
    bytes: int | None
    """Size of the store on disk (None where the engine does not say)."""
    expired_total: int
    truncated_runs: int


@dataclass(frozen=True)
class VersionRun:
    """A run as a dataset version holds it: a group of its own, with the label it had then."""

    run: str
    group: int
    label: RunLabel
    content_hash: str
    rows: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label.as_dict()}


@dataclass(frozen=True)
class DatasetVersion:
    """The base data plus a set of accepted runs, named by a hash of their contents. Immutable."""

    id: str
    made_at: float
    base_hash: str
    base_source: str
    base_experiments: dict[int, str]
    """The base's experiments and their labels (``worn``/``unworn``)."""
    runs: list[VersionRun] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Groups by label: experiments of the base, runs, and both."""
        out: dict[str, dict[str, int]] = {"base": {}, "runs": {}, "all": {}}
        labels = [("base", c) for c in self.base_experiments.values()]
        labels += [("runs", r.label.tool_condition) for r in self.runs]
        for part, condition in labels:
            for key in (part, "all"):
                out[key][condition] = out[key].get(condition, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "made_at": self.made_at,
            "parts": {
                "base": {
                    "source": self.base_source,
                    "content_hash": self.base_hash,
                    "experiments": len(self.base_experiments),
                },
                "runs": [r.as_dict() for r in self.runs],
            },
            "counts": self.counts(),
        }
