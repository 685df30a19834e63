"""The explainers of one model version, built once from the pipeline and its training reference."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from cncwear.core.errors import NoReferenceError, Problem, SchemaError
from cncwear.core.schema import CLASS_NAMES
from cncwear.core.settings import Settings
from cncwear.data.feature_map import FeatureMap, FeatureStepsError
from cncwear.data.features import selected_features
from cncwear.explain import global_views
from cncwear.explain.anchor_explainer import AnchorExplainer
from cncwear.explain.decision_path import DecisionPathAnchor
from cncwear.explain.lime_explainer import LimeExplainer
from cncwear.explain.model import ModelFunction
from cncwear.explain.results import (
    AnchorExplanation,
    Condition,
    ExplainMethod,
    Explanation,
    FeatureContribution,
    GlobalView,
    LimeExplanation,
    LimeWeight,
    RawTerm,
    ShapExplanation,
)
from cncwear.explain.shap_explainer import ShapExplainer
from cncwear.explain.splits import model_thresholds, thin
from cncwear.serving.batch import Batch, Rows, of_validated, to_batch
from cncwear.serving.scoring import THRESHOLD, model_input_columns

logger = logging.getLogger(__name__)

Score = Callable[[Batch], np.ndarray]
"""Wear probabilities of validated raw rows: ``ScoringModel.probability_worn``."""


@dataclass
class Explainers:
    """SHAP, LIME and anchor explainers of one model version, and its global view (computed on
    first use, then kept). Thread-safe: build once per version and share between requests."""

    version: str
    pipeline: Pipeline
    reference: pd.DataFrame
    """Engineered training rows logged with the model (its profile's ``sample``)."""
    model: ModelFunction
    shap: ShapExplainer
    lime: LimeExplainer
    anchor: AnchorExplainer
    settings: Settings
    build_seconds: float
    features: FeatureMap | None = None
    """The feature steps as column picks and differences, when they reduce to that: one row is
    engineered in microseconds instead of the 10 to 30 ms pandas takes through the pipeline."""
    path_anchor: DecisionPathAnchor | None = None
    """A single decision tree's anchors: its decision paths (exact, no search)."""
    _global: GlobalView | None = field(default=None, repr=False)
    _global_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(
        cls, pipeline: Pipeline, profile: dict[str, Any], version: str, settings: Settings
    ) -> Explainers:
        started = time.perf_counter()
        reference = training_reference(pipeline, profile, version)
        model = ModelFunction(
            pipeline[-1], [str(c) for c in reference.columns], reference.to_numpy(dtype=float)
        )
        seed = settings.seed
        explainers = cls(
            version=version,
            pipeline=pipeline,
            reference=reference,
            model=model,
            shap=ShapExplainer(
                model, reference, background_rows=settings.explain_background_rows, seed=seed
            ),
            lime=LimeExplainer(
                model,
                reference,
                samples=settings.explain_lime_samples,
                features=settings.explain_lime_features,
                seed=seed,
            ),
            anchor=AnchorExplainer(
                model,
                reference,
                threshold=settings.explain_anchor_threshold,
                max_seconds=settings.explain_anchor_max_seconds,
                max_samples=settings.explain_anchor_max_samples,
                beam_size=settings.explain_anchor_beam_size,
                batch_size=settings.explain_anchor_batch_size,
                seed=seed,
                edges=_anchor_edges(model, reference, settings),
                nearest=settings.explain_anchor_nearest,
            ),
            settings=settings,
            build_seconds=0.0,
            features=_feature_map(pipeline, seed),
            path_anchor=_path_anchor(model, reference, settings),
        )
        explainers.build_seconds = time.perf_counter() - started
        logger.info(
            "explainers of version %s built in %.2f s (SHAP %s, model path %s, anchor bins %s, "
            "features %s)",
            version,
            explainers.build_seconds,
            explainers.shap.algorithm,
            model.path,
            "decision path" if explainers.path_anchor is not None else explainers.anchor.binning,
            "mapped" if explainers.features is not None else "through the pipeline",
        )
        return explainers

    def engineered(self, row: pd.DataFrame | Batch, *, validated: bool = False) -> pd.DataFrame:
        """Engineer the features of one raw row (see :meth:`explain` for ``row`` and
        ``validated``)."""
        return self._engineered(self._one_row(row, validated))

    def _one_row(self, row: pd.DataFrame | Batch, validated: bool) -> Batch:
        """The row as a batch, validated as ``/predict`` validates rows unless it is a batch
        already or ``validated`` (the output of ``validate_rows``: then only range checked)."""
        columns = model_input_columns(self.pipeline)
        if isinstance(row, Batch):
            batch = row
        elif validated:
            batch = of_validated(row, columns)
        else:
            batch = to_batch(Rows.of_frame(row), columns)
        rows = len(batch.numeric)
        if rows != 1:
            raise SchemaError([Problem(column="*", problem=f"one row expected, got {rows}")])
        return batch

    def _engineered(self, batch: Batch) -> pd.DataFrame:
        typed = batch.frame(model_input_columns(self.pipeline))
        if self.features is not None:
            raw = typed[self.features.raw_columns].to_numpy(dtype=np.float64)
            return pd.DataFrame(self.features.apply(raw), columns=self.reference.columns)
        out = self.pipeline[:-1].transform(typed)
        frame = out if isinstance(out, pd.DataFrame) else pd.DataFrame(out)
        frame.columns = self.reference.columns
        return frame

    def explain(
        self,
        row: pd.DataFrame | Batch,
        method: ExplainMethod | str,
        *,
        validated: bool = False,
        score: Score | None = None,
    ) -> Explanation:
        """Explain the model's answer for one raw row: a validated :class:`Batch`, or a frame,
        validated here by ``to_batch`` like a row of ``/predict`` (skip that with ``validated``
        when the frame comes from ``validate_rows`` already).

        ``score`` gives the probability reported: pass the served model's own function, so an
        explanation says what ``/predict`` answers for the row; by default the estimator's function
        on the engineered row (:class:`ModelFunction`, checked against scikit-learn) scores it.
        Raises :class:`SchemaError` for a bad row and :class:`UnknownExplainMethodError` for an
        unknown method."""
        started = time.perf_counter()
        method = method if isinstance(method, ExplainMethod) else ExplainMethod.parse(method)
        batch = self._one_row(row, validated)
        engineered = self._engineered(batch)
        x = engineered.to_numpy(dtype=float)[0]
        terms = self._terms(batch)
        scored = score(batch) if score is not None else self.model.probability_worn(x[np.newaxis])
        probability = float(scored[0])
        label = int(probability >= THRESHOLD)
        if method is ExplainMethod.SHAP:
            values = self.shap.values(engineered)
            output = values.base_value + float(np.sum(values.values[0]))
            contributions = sorted(
                (
                    FeatureContribution(str(f), float(v), float(c), terms[j])
                    for j, (f, v, c) in enumerate(
                        zip(engineered.columns, x, values.values[0], strict=True)
                    )
                ),
                key=lambda c: -abs(c.contribution),
            )
            return ShapExplanation(
                model_version=self.version,
                method=method,
                probability_worn=probability,
                label=CLASS_NAMES[label],
                seconds=time.perf_counter() - started,
                algorithm=self.shap.algorithm,
                output_space=self.shap.output_space,
                base_value=values.base_value,
                contributions=contributions,
                output=output,
                additivity_error=abs(output - float(self.shap.model_output(engineered)[0])),
            )
        if method is ExplainMethod.LIME:
            lime = self.lime.explain(x, label)
            return LimeExplanation(
                model_version=self.version,
                method=method,
                probability_worn=probability,
                label=CLASS_NAMES[label],
                seconds=time.perf_counter() - started,
                features=[
                    LimeWeight(
                        feature=self.lime.columns[i], condition=c, value=float(x[i]), weight=w
                    )
                    for i, c, w in lime.weights
                ],
                intercept=lime.intercept,
                local_prediction=lime.local_prediction,
                score=lime.score,
                min_score=self.settings.explain_lime_min_score,
                low_fidelity=lime.score < self.settings.explain_lime_min_score,
                samples=self.lime.samples,
            )
        if self.path_anchor is not None:
            anchor = self.path_anchor.explain(x, label)
            binning: Literal["model", "quantile", "decision_path"] = "decision_path"
        else:
            ranked = self._ranked_features(engineered)
            anchor = self.anchor.explain(
                x,
                label,
                ranked[: self.settings.explain_anchor_features],
                wider=ranked[: self.settings.explain_anchor_wider_features],
            )
            binning = self.anchor.binning
        conditions = [self._with_formula(c, terms) for c in anchor.conditions]
        return AnchorExplanation(
            model_version=self.version,
            method=method,
            probability_worn=probability,
            label=CLASS_NAMES[label],
            seconds=time.perf_counter() - started,
            conditions=conditions,
            rule=" AND ".join(c.text for c in conditions) or "(any row)",
            precision=anchor.precision,
            coverage=anchor.coverage,
            threshold=self.anchor.threshold,
            partial=anchor.partial,
            stopped_by=anchor.stopped_by,
            samples=anchor.samples,
            precision_samples=anchor.precision_samples,
            binning=binning,
            candidates=[self.anchor.columns[f] for f in anchor.features],
            widened=anchor.widened,
        )

    def _ranked_features(self, engineered: pd.DataFrame) -> list[int]:
        """The row's features by absolute SHAP value, largest first (none that are zero): an
        anchor may put conditions only on the top ones."""
        values = np.abs(self.shap.values(engineered).values[0])
        return [int(f) for f in np.argsort(-values, kind="stable") if values[f] > 0]

    def _terms(self, batch: Batch) -> list[list[RawTerm]]:
        """Per engineered feature, the raw columns it is computed from with the row's values."""
        if self.features is None:
            return [[] for _ in self.reference.columns]
        typed = batch.frame(model_input_columns(self.pipeline))
        raw = typed[self.features.raw_columns].to_numpy(dtype=np.float64)[0]
        names = self.features.raw_columns
        out = []
        for j in range(len(self.features.names)):
            plus = int(self.features.plus[j])
            feature = [RawTerm(names[plus], 1, float(raw[plus]))]
            if self.features.has_minus[j]:
                minus = int(self.features.minus[j])
                feature.append(RawTerm(names[minus], -1, float(raw[minus])))
            out.append(feature)
        return out

    def _with_formula(self, item: Condition, terms: list[list[RawTerm]]) -> Condition:
        parts: list[str] = []
        for term in terms[list(self.reference.columns).index(item.feature)]:
            sign = "- " if term.sign < 0 else "+ "
            parts.append(f"{sign if parts else ''}{term.column}")
        return replace(item, formula=" ".join(parts))

    def global_view(self) -> GlobalView:
        """Feature importance, surrogate tree and partial dependence; computed once per version
        (seconds to tens of seconds on a large forest), then returned from memory."""
        if self._global is not None:
            return self._global
        with self._global_lock:
            if self._global is None:
                self._global = self._compute_global()
            return self._global

    def _compute_global(self) -> GlobalView:
        started = time.perf_counter()
        seed = self.settings.seed
        ranked, rows = global_views.importance(
            self.shap, self.reference, rows=self.settings.explain_global_rows, seed=seed
        )
        top = [f.feature for f in ranked[: global_views.PARTIAL_DEPENDENCE_FEATURES]]
        view = GlobalView(
            model_version=self.version,
            seconds=0.0,
            output_space=self.shap.output_space,
            importance=ranked,
            importance_rows=rows,
            surrogate=global_views.surrogate(
                self.model, self.reference, depth=self.settings.explain_surrogate_depth, seed=seed
            ),
            partial_dependence=global_views.partial_dependence(
                self.model, self.reference, top, seed=seed
            ),
        )
        return replace(view, seconds=time.perf_counter() - started)


def _anchor_edges(
    model: ModelFunction, reference: pd.DataFrame, settings: Settings
) -> list[np.ndarray] | None:
    """Anchor bin edges per feature on the model's split thresholds (``None``: quantile bins,
    asked for or for a model without splits)."""
    if settings.explain_anchor_binning != "model":
        return None
    splits = model_thresholds(model.estimator, len(reference.columns))
    if splits is None:
        return None
    values = reference.to_numpy(dtype=float)
    keep = settings.explain_anchor_thresholds
    return [thin(splits[f], values[:, f], keep) for f in range(values.shape[1])]


def _path_anchor(
    model: ModelFunction, reference: pd.DataFrame, settings: Settings
) -> DecisionPathAnchor | None:
    estimator = model.estimator
    if (
        isinstance(estimator, DecisionTreeClassifier)
        and estimator.n_outputs_ == 1
        and len(estimator.classes_) == 2
    ):
        return DecisionPathAnchor(model, estimator, reference, settings.seed)
    return None


def _feature_map(pipeline: Pipeline, seed: int) -> FeatureMap | None:
    """The pipeline's feature steps as a :class:`FeatureMap`, accepted only if it reproduces them
    exactly on random rows (drawn with ``seed``) that exercise every raw column."""
    try:
        return FeatureMap.probe(pipeline, seed=seed)
    except FeatureStepsError as error:
        logger.info("feature steps engineered through the pipeline: %s", error)
        return None


def training_reference(pipeline: Pipeline, profile: dict[str, Any], version: str) -> pd.DataFrame:
    """The engineered training rows kept in a model's profile, in the estimator's column order."""
    features = selected_features(pipeline)
    sample = profile.get("sample") or {}
    missing = [f for f in features if f not in sample]
    if missing:
        raise NoReferenceError(
            f"version {version}'s profile has no training sample of {missing}: retrain to explain"
        )
    reference = pd.DataFrame({f: np.asarray(sample[f], dtype=float) for f in features})
    if reference.empty:
        raise NoReferenceError(f"version {version}'s profile has an empty training sample")
    return reference
