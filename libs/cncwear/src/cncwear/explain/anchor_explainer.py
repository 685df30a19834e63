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
* Its bins are quartiles or deciles of the training data, which cannot express the 0.2 mm offset
  the models lean on. Given ``edges`` (the model's own split thresholds, :mod:`.splits`), the
  explainer's discretiser is replaced by one on those edges (:class:`SplitDiscretizer`, lime's
  ``BaseDiscretizer`` with the edges given), before anything is drawn.
* ``AnchorTabularExplainer.explain_instance`` takes ``beam_size`` and drops it (the search then
  keeps one rule per length): the search here calls ``AnchorBaseBeam.anchor_beam`` itself, with the
  beam size, batch size and the other parameters passed.
* Every feature is a candidate in the library; ``explain`` takes the features that may carry a
  condition (the row's top ones by SHAP) and hides the others' conditions from the search.
* A search can end below the precision threshold (the library then returns the most precise rule
  it kept); ``precision`` and ``threshold`` are both reported, so callers can tell. Given ``wider``
  features, a search that ended below it searches again on those, in the time and samples left
  under the caps, and the better of the two rules is the answer: a narrow candidate set is what
  makes most searches short and precise, and the rows it fails are those whose label also follows
  features outside it.
* The precision reported is measured afresh once the rule is chosen, on ``VERIFY_SAMPLES`` rows
  drawn under it, the same way for finished and stopped searches. The search's own estimates pool
  rows drawn for shorter rules (whose distribution differs a little) and are those of the rule
  that looked best among many (so biased upwards); the fresh one is neither. Coverage is the share
  of the whole training reference the rule covers (the library's coverage sample, 10,000 rows drawn
  from it, only ranks rules during the search): a tight rule for a held-out row may cover none.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from anchor.anchor_base import AnchorBaseBeam
from anchor.anchor_tabular import AnchorTabularExplainer
from lime.discretize import BaseDiscretizer

from cncwear.core.schema import CLASS_NAMES
from cncwear.explain.conditions import bin_edges, condition, coverage
from cncwear.explain.model import ModelFunction
from cncwear.explain.results import Condition

# anchor-exp's tabular defaults (AnchorTabularExplainer.explain_instance), but for EPSILON_STOP
DELTA = 0.1
EPSILON = 0.15
EPSILON_STOP = 0.01
"""A rule is accepted when its estimated precision reaches the threshold and its lower confidence
bound ``threshold - EPSILON_STOP``. The library's 0.05 accepted rules of true precision 0.91 to
0.95, which the fresh measurement then put below the threshold (on the LightGBM champion, 5 of 12
training rows ended at 0.93 to 0.94); 0.01 costs a few more batches per accepted rule."""
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
    """Perturbed rows the search scored, over both searches when it widened."""
    precision_samples: int
    features: list[int]
    """The features the answering search could put conditions on."""
    widened: bool
    """Whether the answer comes from the second search, on the wider set of features."""

    def beats(self, other: AnchorResult, threshold: float) -> bool:
        """Reaching the threshold first, then a higher fresh precision, then a wider rule."""
        return (self.precision >= threshold, self.precision, self.coverage) > (
            other.precision >= threshold,
            other.precision,
            other.coverage,
        )


class _SearchStoppedError(Exception):
    def __init__(self, reason: StopReason) -> None:
        self.reason = reason


class _CappedSampler:
    """anchor-exp's sampler, counted, timed and capped, remembering every batch it drew."""

    def __init__(
        self,
        sample: Callable[..., Any],
        *,
        deadline: float,
        max_samples: int,
        batch_size: int,
    ) -> None:
        self._sample = sample
        self.batch_size = batch_size
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
        batches = [s for s in scored if s[2] >= self.batch_size] or scored
        return max(batches, key=lambda s: (s[1], self.coverage(s[0]), s[2]))[0]


class SplitDiscretizer(BaseDiscretizer):  # type: ignore[misc]
    """lime's discretiser on given inner bin edges per feature (bin ``k``: ``edges[k-1] < x <=
    edges[k]``, ``np.searchsorted`` as lime discretises). A feature with no edges gets one at its
    largest reference value, a single bin in effect: such a feature is never a candidate."""

    def __init__(self, data: np.ndarray, edges: list[np.ndarray], names: list[str]) -> None:
        self._edges = [
            e if len(e) else np.array([float(np.max(data[:, f]))]) for f, e in enumerate(edges)
        ]
        super().__init__(data, [], names)

    def bins(self, data: np.ndarray, labels: Any) -> list[np.ndarray]:
        return self._edges


class AnchorExplainer:
    def __init__(
        self,
        model: ModelFunction,
        reference: pd.DataFrame,
        *,
        threshold: float,
        max_seconds: float,
        max_samples: int,
        beam_size: int,
        batch_size: int,
        seed: int,
        edges: list[np.ndarray] | None = None,
        nearest: int | None = None,
    ) -> None:
        """``edges``: inner bin edges per feature (the model's split thresholds); ``None`` keeps
        anchor-exp's quartile bins. ``nearest``: candidate conditions per feature and side of the
        row's value, the edges nearest it (``None``: every edge)."""
        self.model = model
        self.columns = list(reference.columns)
        self.threshold = threshold
        self.max_seconds = max_seconds
        self.max_samples = max_samples
        self.beam_size = beam_size
        self.batch_size = batch_size
        self.seed = seed
        self.nearest = nearest
        self.binning: Literal["model", "quantile"] = "quantile" if edges is None else "model"
        self._lock = threading.Lock()
        train = reference.to_numpy(dtype=float)
        self._train = train
        self._explainer = AnchorTabularExplainer(list(CLASS_NAMES), self.columns, train)
        self.candidates = set(range(len(self.columns)))
        """Features with at least one bin edge inside the reference's range."""
        if edges is not None:
            self.candidates = {f for f, e in enumerate(edges) if len(e)}
            disc = SplitDiscretizer(train, edges, self.columns)
            self._explainer.disc = disc
            self._explainer.d_train = disc.discretize(train)
            self._explainer.categorical_names = dict(disc.names)

    def explain(
        self,
        row: np.ndarray,
        label: int,
        features: list[int] | None = None,
        wider: list[int] | None = None,
    ) -> AnchorResult:
        """The anchor of the model's ``label`` for one engineered row, with conditions only on
        ``features`` (by default any candidate feature); if that search ends below the threshold
        within the caps, again on ``wider`` (see the module's docstring)."""
        with self._lock:
            np.random.seed(self.seed)
            started = time.perf_counter()
            deadline = started + self.max_seconds
            result = self._search(row, label, features, deadline, self.max_samples)
            left = self.max_samples - result.samples
            more = (set(wider or []) & self.candidates) - set(result.features)
            if (
                more
                and result.precision < self.threshold
                and not result.partial
                and left >= self.batch_size
                and time.perf_counter() < deadline
            ):
                second = self._search(row, label, wider, deadline, left)
                best = second if second.beats(result, self.threshold) else result
                result = dataclasses.replace(
                    best, samples=result.samples + second.samples, widened=best is second
                )
        return result

    def _search(
        self,
        row: np.ndarray,
        label: int,
        features: list[int] | None,
        deadline: float,
        max_samples: int,
    ) -> AnchorResult:
        allowed = self.candidates if features is None else self.candidates & set(features)
        full, full_mapping = self._explainer.get_sample_fn(
            row, self.model.labels, desired_label=label
        )
        bins = self._explainer.disc.discretize(row.reshape(1, -1))[0]
        keep = [
            i
            for i in sorted(full_mapping)
            if full_mapping[i][0] in allowed and self._near(full_mapping[i], bins)
        ]
        mapping = {j: full_mapping[i] for j, i in enumerate(keep)}

        def sample(
            present: list[int], num_samples: int, compute_labels: bool = True
        ) -> tuple[np.ndarray, np.ndarray, Any]:
            raw, data, labels = full([keep[p] for p in present], num_samples, compute_labels)
            return raw, data[:, keep], labels

        sampler = _CappedSampler(
            sample, deadline=deadline, max_samples=max_samples, batch_size=self.batch_size
        )
        stopped: StopReason | None = None
        order: list[int] = []
        if keep:
            try:
                found = AnchorBaseBeam.anchor_beam(
                    sampler,
                    delta=DELTA,
                    epsilon=EPSILON,
                    epsilon_stop=EPSILON_STOP,
                    batch_size=self.batch_size,
                    beam_size=self.beam_size,
                    desired_confidence=self.threshold,
                    coverage_samples=COVERAGE_SAMPLES,
                )
                order = [int(i) for i in found["feature"]]
            except _SearchStoppedError as stop:
                stopped = stop.reason
                order = list(sampler.best(self.threshold))
        _, _, same = sample(sorted(order), VERIFY_SAMPLES)
        conditions = self._conditions(order, mapping)
        return AnchorResult(
            conditions=conditions,
            precision=float(np.mean(same)),
            coverage=coverage(conditions, self._train, self.columns),
            partial=stopped is not None,
            stopped_by=stopped,
            samples=sampler.samples,
            precision_samples=VERIFY_SAMPLES,
            features=[f for f in (features or sorted(allowed)) if f in allowed],
            widened=False,
        )

    def _near(self, candidate: tuple[int, str, int], bins: np.ndarray) -> bool:
        """Whether a condition's edge is among the ``nearest`` on its side of the row's value."""
        if self.nearest is None:
            return True
        feature, operator, value = candidate
        row_bin = int(bins[feature])
        if operator == "leq":  # x <= edge[v], v >= row_bin
            return int(value) - row_bin < self.nearest
        return row_bin - 1 - int(value) < self.nearest  # x > edge[v], v < row_bin

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
