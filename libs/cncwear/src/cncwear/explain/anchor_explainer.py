"""Anchors (Ribeiro et al. 2018) for one row, with the ``anchor-exp`` package (0.0.2.0, 2020).

An anchor is a rule (conditions on features) that holds for the explained row and under which the
model gives the same label with high precision, whatever the other features are: the search grows
rules one condition at a time (a beam search), estimating each candidate's precision on perturbed
rows drawn from the training reference with the rule's conditions imposed, and stops at the rule
with the largest coverage whose precision is above the threshold with confidence.

Quirks kept here (with ``lime_explainer``, the only module that imports lime or anchor-exp):

* Only the tabular part is imported (``anchor.anchor_tabular``): it needs lime's discretiser and
  numpy, not spaCy or scikit-image (those are for text and images).
* The library has no limit: on rows near the decision boundary it keeps lengthening rules that
  never reach the threshold, for minutes. Here its sampler is wrapped: every batch is counted
  and timed, and past ``max_seconds`` or ``max_samples`` the wrapper stops the search. The wrapper
  also records what every candidate rule scored, so a stopped search returns the best rule seen so
  far (the widest one that reached the threshold with confidence, else the most precise one),
  marked ``partial``.
* It preallocates room for ``batch_size x 10000`` perturbed rows of 0/1 rule indicators and raw
  features per search, in the dtype of the first batch. The wrapper hands it the indicators as
  int8 and the raw features with no columns (they serve only the library's HTML examples): the
  peak memory of one search on 11 features fell from 480 MB to 60 MB (tracemalloc, 30,000 rows).
* It draws from numpy's global random generator: searches run one at a time under a lock and
  reseed it first, so an explanation is repeatable (unless the time cap stops it, which depends on
  the machine's speed).
* It names bins with two decimals; conditions are rebuilt here from the exact bin edges.
* A search can end below the precision threshold (the library then returns the most precise rule
  it kept); ``precision`` and ``threshold`` are both reported, so callers can tell.
* The precision reported is measured afresh once the rule is chosen, on ``VERIFY_SAMPLES`` rows
  drawn under it, the same way for finished and stopped searches. The search's own estimates pool
  rows drawn for shorter rules (whose distribution differs a little) and are those of the rule
  that looked best among many (so biased upwards); the fresh one is neither. Coverage is measured
  on the library's coverage sample.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from anchor.anchor_base import AnchorBaseBeam
from anchor.anchor_tabular import AnchorTabularExplainer

from cncwear.core.schema import CLASS_NAMES
from cncwear.explain.conditions import bin_edges, condition
from cncwear.explain.model import ModelFunction
from cncwear.explain.results import Condition

# anchor-exp's tabular defaults (AnchorTabularExplainer.explain_instance)
DELTA = 0.1
EPSILON = 0.15
EPSILON_STOP = 0.05
BATCH_SIZE = 100
BEAM_SIZE = 4
COVERAGE_SAMPLES = 10_000
VERIFY_SAMPLES = 1000

StopReason = Literal["time", "samples"]
Rule = tuple[int, ...]
"""Sorted indices into anchor-exp's list of candidate conditions (its ``mapping``)."""


@dataclass(frozen=True)
class AnchorResult:
    conditions: list[Condition]
    precision: float
    coverage: float
    partial: bool
    stopped_by: StopReason | None
    samples: int
    precision_samples: int


class _SearchStoppedError(Exception):
    def __init__(self, reason: StopReason) -> None:
        self.reason = reason


class _CappedSampler:
    """anchor-exp's sampler, counted, timed and capped, remembering every batch it drew."""

    def __init__(self, sample: Callable[..., Any], *, deadline: float, max_samples: int) -> None:
        self._sample = sample
        self.deadline = deadline
        self.max_samples = max_samples
        self.samples = 0
        self.draws: list[tuple[frozenset[int], np.ndarray, np.ndarray]] = []
        """(conditions imposed, 0/1 indicators of every candidate condition, same label)."""
        self.coverage_data: np.ndarray | None = None

    def __call__(
        self, present: list[int], num_samples: int, compute_labels: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not compute_labels:  # the coverage sample, drawn once without labels
            raw, data, labels = self._sample(present, num_samples, compute_labels=False)
            self.coverage_data = data.astype(np.int8)
            return raw[:, :0], self.coverage_data, np.asarray(labels)
        if self.samples:
            if time.perf_counter() >= self.deadline:
                raise _SearchStoppedError("time")
            if self.samples + num_samples > self.max_samples:
                raise _SearchStoppedError("samples")
        raw, data, labels = self._sample(present, num_samples)
        self.samples += num_samples
        indicators = data.astype(np.int8)
        self.draws.append((frozenset(present), indicators, np.asarray(labels, dtype=bool)))
        return raw[:, :0], indicators, labels

    def coverage(self, rule: Rule) -> float:
        if not rule or self.coverage_data is None:
            return 1.0
        return float(np.mean(np.all(self.coverage_data[:, list(rule)] == 1, axis=1)))

    def precision(self, rule: Rule) -> tuple[float, int]:
        """Share of the rows drawn under the rule, or under a shorter rule it extends, that
        satisfy it and got the explained label (as anchor-exp estimates it); and their number."""
        wanted = frozenset(rule)
        hits = rows = 0
        for imposed, indicators, same in self.draws:
            if imposed <= wanted:
                covered = np.all(indicators[:, list(rule)] == 1, axis=1)
                rows += int(np.sum(covered))
                hits += int(np.sum(same & covered))
        return (hits / rows if rows else 0.0), rows

    def best(self, threshold: float) -> Rule:
        """The best rule drawn under: the widest one whose precision passed the threshold with
        the library's confidence, else the most precise (then widest) one with a full batch."""
        beta = np.log(1.0 / DELTA)
        scored = [
            (rule, *self.precision(rule))
            for rule in {tuple(sorted(imposed)) for imposed, _, _ in self.draws}
        ]
        eligible = [
            (rule, precision, n)
            for rule, precision, n in scored
            if precision >= threshold
            and AnchorBaseBeam.dlow_bernoulli(precision, beta / n) > threshold - EPSILON_STOP
        ]
        if eligible:
            return max(eligible, key=lambda s: (self.coverage(s[0]), s[1], -len(s[0])))[0]
        batches = [s for s in scored if s[2] >= BATCH_SIZE] or scored
        return max(batches, key=lambda s: (s[1], self.coverage(s[0]), s[2]))[0]


class AnchorExplainer:
    def __init__(
        self,
        model: ModelFunction,
        reference: pd.DataFrame,
        *,
        threshold: float,
        max_seconds: float,
        max_samples: int,
        seed: int,
    ) -> None:
        self.model = model
        self.columns = list(reference.columns)
        self.threshold = threshold
        self.max_seconds = max_seconds
        self.max_samples = max_samples
        self.seed = seed
        self._lock = threading.Lock()
        self._explainer = AnchorTabularExplainer(
            list(CLASS_NAMES), self.columns, reference.to_numpy(dtype=float)
        )

    def explain(self, row: np.ndarray, label: int) -> AnchorResult:
        with self._lock:
            np.random.seed(self.seed)
            started = time.perf_counter()
            sample, mapping = self._explainer.get_sample_fn(
                row, self.model.labels, desired_label=label
            )
            sampler = _CappedSampler(
                sample, deadline=started + self.max_seconds, max_samples=self.max_samples
            )
            stopped: StopReason | None = None
            try:
                found = AnchorBaseBeam.anchor_beam(
                    sampler,
                    delta=DELTA,
                    epsilon=EPSILON,
                    epsilon_stop=EPSILON_STOP,
                    batch_size=BATCH_SIZE,
                    beam_size=BEAM_SIZE,
                    desired_confidence=self.threshold,
                    coverage_samples=COVERAGE_SAMPLES,
                )
                order = [int(i) for i in found["feature"]]
            except _SearchStoppedError as stop:
                stopped = stop.reason
                order = list(sampler.best(self.threshold))
            rule = tuple(sorted(order))
            _, _, same = sample(list(rule), VERIFY_SAMPLES)
        return AnchorResult(
            conditions=self._conditions(order, mapping),
            precision=float(np.mean(same)),
            coverage=sampler.coverage(rule),
            partial=stopped is not None,
            stopped_by=stopped,
            samples=sampler.samples,
            precision_samples=VERIFY_SAMPLES,
        )

    def _conditions(self, order: list[int], mapping: dict[int, Any]) -> list[Condition]:
        """The rule's conditions, one per feature (bounds combined), in the order they were added.
        anchor-exp's ``(f, "leq", v)`` means bin(x_f) <= v, i.e. x_f <= edge v; ``"geq"`` means
        bin(x_f) > v, i.e. x_f > edge v."""
        bounds: dict[int, list[float | None]] = {}
        for index in order:
            feature, operator, value = mapping[index]
            edge = float(bin_edges(self._explainer.disc, feature)[int(value)])
            lower, upper = bounds.setdefault(feature, [None, None])
            if operator == "geq":
                bounds[feature][0] = edge if lower is None else max(lower, edge)
            elif operator == "leq":
                bounds[feature][1] = edge if upper is None else min(upper, edge)
        return [condition(self.columns[f], lower, upper) for f, (lower, upper) in bounds.items()]
