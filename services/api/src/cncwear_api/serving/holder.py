"""The champion being served, and its swap for a new one like a rolling deployment.

A :class:`ModelHolder` keeps one :class:`ServedModel`. :meth:`ModelHolder.refresh` reads the
champion alias from the registry; when it names another version, the new version is loaded
completely (pipeline, compiled form, its parity check, a warm-up prediction) while the old one keeps
answering, then the reference is switched, then the old model is dropped. A request takes the
reference once and uses that model to the end, so a swap never fails a request nor makes it wait.
A version that fails to load leaves the current model in place.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from mlflow.entities.model_registry import ModelVersion
from sklearn.pipeline import Pipeline

from cncwear.core.schema import ACTIVE_PROCESSES
from cncwear.data.feature_map import FeatureMap
from cncwear.data.features import selected_features
from cncwear.monitoring.window import Reference, window_feature_map
from cncwear.registry.store import LoadedModel, ModelStore
from cncwear.registry.tags import Tag
from cncwear.serving.batch import Batch
from cncwear.serving.compiled.runtime import CompiledModel
from cncwear.serving.model import ONNX, SKLEARN, Runtime, ScoringModel, load_scoring_model
from cncwear.serving.scoring import model_input_columns
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.schemas.model import (
    GroupedMetrics,
    LeakyFigure,
    ModelEvaluation,
    ModelPublic,
    Serving,
    TrainingDistributions,
)
from cncwear_api.serving.insight import model_evaluation, training_distributions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """A version as this server serves it: the model that scores (the same as ``cncwear predict``
    and the explanations use) and what the API shows and monitors of it."""

    scoring: ScoringModel
    card: ModelPublic
    evaluation: ModelEvaluation
    distributions: TrainingDistributions
    reference: Reference
    """What drift monitoring compares this version's traffic with (from its logged profile)."""
    feature_map: FeatureMap
    """The selected features from validated raw rows, for the drift window."""

    @property
    def name(self) -> str:
        return self.scoring.name

    @property
    def version(self) -> str:
        return self.scoring.version

    @property
    def runtime(self) -> Runtime:
        return self.scoring.runtime

    @property
    def input_columns(self) -> list[str]:
        return self.scoring.input_columns

    @property
    def numeric_columns(self) -> list[str]:
        return self.scoring.numeric_columns

    @property
    def pipeline(self) -> Pipeline:
        return self.scoring.pipeline

    @property
    def compiled(self) -> CompiledModel | None:
        return self.scoring.compiled

    @property
    def profile(self) -> dict[str, Any]:
        """The reference profile logged with the version (its training sample backs
        explanations)."""
        return self.scoring.loaded.profile

    def probability_worn(self, batch: Batch) -> np.ndarray:
        """Wear probability of each row of a validated batch."""
        return self.scoring.probability_worn(batch)

    def class_probabilities(self, batch: Batch) -> np.ndarray:
        """Each class's probability through the pipeline (MLflow's pyfunc answer)."""
        return self.scoring.class_probabilities(batch)


def load_served_model(store: ModelStore, model_version: ModelVersion) -> ServedModel:
    """Load a registered version for serving: through its compiled form when it has a trusted one,
    else through scikit-learn. Raises ``ModelLoadError`` when the version cannot be loaded."""
    scoring = load_scoring_model(store, model_version)
    if scoring.fallback is not None:
        logger.warning(
            "version %s is served by scikit-learn: %s", scoring.version, scoring.fallback
        )
    loaded = scoring.loaded
    card = _card(
        store,
        model_version=model_version,
        loaded=loaded,
        compiled=scoring.compiled,
        load_check=scoring.load_check,
        fallback=scoring.fallback,
    )
    served = ServedModel(
        scoring=scoring,
        card=card,
        evaluation=model_evaluation(store, loaded, card),
        distributions=training_distributions(loaded),
        reference=Reference.from_profile(loaded.version, loaded.profile, card.metrics.holdout),
        feature_map=window_feature_map(loaded.pipeline),
    )
    # Warm up (first calls allocate), so the first request after a swap is not the slow one.
    warm = Batch(np.zeros((1, len(served.numeric_columns))), [sorted(ACTIVE_PROCESSES)[0]])
    served.probability_worn(warm)
    return served


Role = Literal["champion", "challenger"]


class ModelHolder:
    """The version holding one alias: the champion (serves ``/predict``) or, under
    ``CNCWEAR_PROMOTION_POLICY=shadow``, the challenger (loaded beside it, with the same checks and
    the same swap; it serves no request). Only the champion's loads feed the model metrics."""

    def __init__(self, store: ModelStore, metrics: ApiMetrics, role: Role = "champion") -> None:
        self.store = store
        self.metrics = metrics
        self.role: Role = role
        self._current: ServedModel | None = None
        self._lock = threading.Lock()
        self._failed_version: str | None = None
        self.load_failures = 0
        """Failed loads (or registry reads) of this holder's alias since the server started."""
        self.load_error: str | None = None
        """Why the version holding the alias could not be loaded, while it cannot."""

    @property
    def current(self) -> ServedModel | None:
        return self._current

    def refresh(self) -> ServedModel | None:
        """Serve the registry's champion if it is not the one served yet. Blocking (registry reads,
        artifact downloads): call it from a worker thread. Never raises."""
        with self._lock:
            champion = self._to_load()
            if champion is not None:
                self._swap(champion)
            return self._current

    def _failed(self) -> None:
        self.load_failures += 1
        if self.role == "champion":
            self.metrics.model_load_failures.inc()

    def _to_load(self) -> ModelVersion | None:
        """The registry's version of this holder's alias when it is not the one held, else
        None."""
        try:
            if self.role == "champion":
                champion = self.store.champion_version()
            else:
                champion = self.store.challenger_version()
        except Exception as error:
            self._failed()
            logger.error("cannot read the %s from the registry: %s", self.role, error)
            return None
        current = self._current
        if champion is None:
            if current is not None and self.role == "challenger":
                # Promoted or rejected: a challenger that lost its alias is not kept loaded.
                logger.info("version %s is not the challenger any more: unloaded", current.version)
                self._current, self.load_error = None, None
                self.metrics.loaded(self.role, None)
            elif current is not None:
                logger.warning(
                    "the registry has no champion any more; still serving version %s",
                    current.version,
                )
            return None
        if current is not None and current.version == str(champion.version):
            return None
        return champion

    def _swap(self, champion: ModelVersion) -> None:
        """Load the champion, then switch to it. No frame here keeps the old model: once the
        requests still holding it are done it is freed, before :func:`settle_heap` could freeze it
        into the long-lived heap."""
        started = time.perf_counter()
        try:
            new = load_served_model(self.store, champion)
        except Exception as error:
            self._failed()
            self.load_error = str(error)
            if self._failed_version != str(champion.version):
                logger.exception("cannot load %s version %s", self.role, champion.version)
            self._failed_version = str(champion.version)
            return
        self._failed_version, self.load_error = None, None
        replaced = None if self._current is None else self._current.version
        self._current = new  # the switch: requests from now on get the new model
        seconds = time.perf_counter() - started
        if self.role == "challenger":
            self.metrics.loaded(self.role, new.name, new.version, new.runtime)
            logger.info("challenger version %s loaded in shadow (%.1f s)", new.version, seconds)
            settle_heap()
            return
        self.metrics.model_load_duration.observe(seconds)
        self.metrics.model_loads.labels(runtime=new.runtime).inc()
        self.metrics.serving(new.name, new.version, new.runtime)
        if new.card.registered_at is not None:
            self.metrics.promoted_at(new.card.registered_at.timestamp())
        logger.info(
            "serving %s version %s through %s (loaded in %.1f s)%s",
            new.name, new.version, new.runtime, seconds,
            "" if replaced is None else f", instead of version {replaced}",
        )  # fmt: skip
        settle_heap()


def settle_heap() -> None:
    """Collect once, then exempt every object alive now from later full garbage collections.

    The served process holds millions of long-lived objects (MLflow, scikit-learn, the model, the
    explainers' libraries); a full collection walks them all and stops every request for about
    300 ms, which made the p99 of 1,000-row batches forty times their median. Frozen objects are
    still freed when nothing refers to them; a cycle among them waits for the next swap, which
    unfreezes and collects first, so at most one old model's cycles are kept meanwhile.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _card(
    store: ModelStore,
    *,
    model_version: ModelVersion,
    loaded: LoadedModel,
    compiled: CompiledModel | None,
    load_check: float | None,
    fallback: str | None,
) -> ModelPublic:
    tags = loaded.tags
    run_metrics: dict[str, float] = {}
    run_params: dict[str, str] = {}
    trained_at: datetime | None = None
    holdout_experiments: list[int] = []
    try:  # the card is information: a registry hiccup here must not fail the load
        run = store.run(loaded.run_id)
        run_metrics, run_params = dict(run.data.metrics), dict(run.data.params)
        trained_at = _time(run.info.start_time)
        retrain_run_id = tags.get(Tag.RETRAIN_RUN_ID)
        if retrain_run_id:
            parent = store.run(retrain_run_id).data.params
            holdout_experiments = [int(e) for e in json.loads(parent["holdout_experiments"])]
    except Exception as error:
        logger.warning("run details of version %s unavailable: %s", loaded.version, error)
    holdout = {
        key.removeprefix("holdout_"): value
        for key, value in run_metrics.items()
        if key.startswith("holdout_")
    } or {
        key.removeprefix(Tag.HOLDOUT_PREFIX): float(value)
        for key, value in tags.items()
        if key.startswith(Tag.HOLDOUT_PREFIX)
    }
    return ModelPublic(
        name=loaded.name,
        version=loaded.version,
        run_id=loaded.run_id,
        retrain_run_id=tags.get(Tag.RETRAIN_RUN_ID),
        candidate=tags.get(Tag.CANDIDATE),
        estimator=type(loaded.pipeline[-1]).__name__,
        engine=run_params.get("engine", SKLEARN),
        trained_at=trained_at,
        registered_at=_time(model_version.creation_timestamp),
        loaded_at=datetime.now(UTC),
        data_hash=tags.get(Tag.DATA_HASH),
        data_version=tags.get(Tag.DATA_VERSION),
        promotion_reason=tags.get(Tag.REASON),
        promotion_policy=store.settings.promotion_policy,
        input_columns=model_input_columns(loaded.pipeline),
        selected_features=selected_features(loaded.pipeline),
        metrics=GroupedMetrics(
            holdout=holdout,
            cv_grouped_accuracy=run_metrics.get("cv_grouped_accuracy"),
            holdout_experiments=holdout_experiments,
        ),
        leaky_row_split=LeakyFigure(accuracy=run_metrics.get("leaky_row_split_accuracy")),
        serving=Serving(
            runtime=ONNX if compiled is not None else SKLEARN,
            converter=tags.get(Tag.COMPILED_CONVERTER),
            parity_max_abs_diff=_float(tags.get(Tag.COMPILED_MAX_ABS_DIFF)),
            parity_tolerance=_float(tags.get(Tag.COMPILED_TOLERANCE)),
            parity_rows=_int(tags.get(Tag.COMPILED_PARITY_ROWS)),
            load_check_max_abs_diff=load_check,
            fallback_reason=fallback,
        ),
    )


def _time(milliseconds: Any) -> datetime | None:
    if milliseconds is None:
        return None
    return datetime.fromtimestamp(int(milliseconds) / 1000, tz=UTC)


def _float(text: str | None) -> float | None:
    return None if text is None else float(text)


def _int(text: str | None) -> int | None:
    return None if text is None else int(text)
