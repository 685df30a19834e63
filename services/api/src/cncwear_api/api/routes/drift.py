"""``/drift`` and ``/feedback``: how live traffic compares with the served model's reference, and
ground truth for earlier predictions, giving live accuracy, precision and recall."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from cncwear.serving.batch import to_batch
from cncwear.serving.scoring import THRESHOLD
from cncwear_api.api.deps import CurrentModel, NoDuplicateKeys, WriteAccess
from cncwear_api.api.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ServiceOffError,
)
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.schemas.common import ModelRef
from cncwear_api.schemas.drift import (
    DriftPublic,
    FeatureDriftPublic,
    FeedbackAccepted,
    FeedbackRequest,
    LiveDistributions,
    LiveFeatureDistribution,
    LivePerformancePublic,
    RunDriftPublic,
    TriggerPublic,
    TriggersPublic,
)
from cncwear_api.schemas.errors import ErrorResponse, Problem
from cncwear_api.schemas.model import Histogram
from cncwear_api.schemas.predict import PredictRequest
from cncwear_api.schemas.runs import RunDriftSummary, RunPerformancePublic
from cncwear_api.serving.holder import ServedModel
from cncwear_api.serving.live_monitoring import LiveMonitoring
from cncwear_api.serving.runs import Runs

logger = logging.getLogger(__name__)

router = APIRouter(tags=["monitoring"])

MONITORING_OFF = "monitoring is switched off on this server (CNCWEAR_MONITORING=false)"


def _monitoring(request: Request) -> LiveMonitoring:
    monitoring: LiveMonitoring = request.state.monitoring
    if not monitoring.enabled:
        raise ServiceOffError(MONITORING_OFF)
    return monitoring


@router.get(
    "/drift",
    response_model=DriftPublic | RunDriftPublic,
    summary="Drift of live traffic and live performance of the served model",
    description=(
        "Per selected feature over the window of recent served rows (this replica's): a "
        "population stability index and a drift test chosen like Evidently's defaults; the share "
        "of drifted features; drift of the predicted wear probability; live accuracy, precision "
        "and recall from feedback, beside the holdout figures; the same over labelled runs "
        "(shared by every replica); the reference compared against; the retrain triggers. "
        "With `run`: that run's active-cutting rows (from the shared store, so any replica "
        "answers alike) against the normal band of the served model's training runs."
    ),
    responses={
        404: {"model": ErrorResponse, "description": "No such run"},
        422: {"model": ErrorResponse, "description": "A malformed run id"},
        503: {"model": ErrorResponse, "description": "No champion, or monitoring off"},
    },
)
async def get_drift(
    request: Request,
    served: CurrentModel,
    run: Annotated[str | None, Query(description="A labelled-runs id: judge that run")] = None,
) -> DriftPublic | RunDriftPublic:
    monitoring = _monitoring(request)
    if run is not None:
        return await run_in_threadpool(_run_drift, monitoring, request.state.runs, served, run)
    report = await run_in_threadpool(monitoring.report, served)
    runs_performance = await run_in_threadpool(_runs_performance, request.state.runs, served)
    runs_drift = await run_in_threadpool(_runs_drift, monitoring, request.state.runs, served)
    settings = monitoring.settings
    return DriftPublic(
        model=ModelRef(name=served.name, version=served.version),
        window_rows=report.window_rows,
        window_capacity=report.config.window_rows,
        min_rows=report.config.min_rows,
        rows_seen=report.rows_seen,
        enough_rows=report.enough_rows,
        drift_share=report.drift_share,
        drift_share_threshold=report.config.drift_share,
        drift_detected=report.drift_detected,
        drifted_features=report.drifted,
        features=[FeatureDriftPublic.of(f) for f in report.features],
        prediction=None if report.prediction is None else FeatureDriftPublic.of(report.prediction),
        performance=LivePerformancePublic.of(report.performance),
        runs_performance=runs_performance,
        reference=report.reference,
        triggers=TriggersPublic(
            retrain_on_drift=settings.retrain_on_drift,
            retrain_on_accuracy_drop=settings.retrain_on_accuracy_drop,
            sustain_seconds=settings.trigger_sustain_seconds,
            drift_since=monitoring.drift_condition.since,
            accuracy_drop_since=monitoring.accuracy_condition.since,
            recent=[TriggerPublic.model_validate(t.as_dict()) for t in monitoring.triggers],
        ),
        runs=runs_drift,
    )


def _run_drift(
    monitoring: LiveMonitoring, runs: Runs, served: ServedModel, run: str
) -> RunDriftPublic:
    verdict = monitoring.judge_and_keep(served, runs.store, run)
    monitor = monitoring.monitor_for(served)
    calibrated = monitor.null is not None
    return RunDriftPublic(
        run=run,
        model=ModelRef(name=served.name, version=served.version),
        rows=verdict.rows,
        min_rows=monitoring.settings.drift_run_min_rows,
        enough_rows=verdict.enough_rows,
        calibrated=calibrated,
        margin=monitor.margin if calibrated else None,
        drift_detected=verdict.drift_detected,
        drifted_features=verdict.drifted,
        features=[FeatureDriftPublic.of(f) for f in verdict.features],
        prediction=None
        if verdict.prediction is None
        else FeatureDriftPublic.of(verdict.prediction),
    )


def _runs_drift(
    monitoring: LiveMonitoring, runs: Runs, served: ServedModel
) -> list[RunDriftSummary] | None:
    try:
        recent = runs.store.recent_drift(served.version, monitoring.settings.drift_runs_window)
    except Exception as error:  # the drift report stands without it
        logger.warning("run drift verdicts unavailable: %s", error)
        return None
    return [RunDriftSummary.model_validate(d.as_dict()) for d in recent]


def _runs_performance(runs: Runs, served: ServedModel) -> RunPerformancePublic | None:
    try:
        performance = runs.store.live_performance(served.version)
    except Exception as error:  # the drift report stands without it
        logger.warning("live performance of labelled runs unavailable: %s", error)
        return None
    return RunPerformancePublic.of(performance)


@router.get(
    "/drift/distributions",
    response_model=LiveDistributions,
    summary="Live traffic binned like the training distributions",
    description=(
        "Histograms of the monitored features over this replica's window of recent served rows, "
        "on the bin edges of `GET /model/distributions`, to overlay live traffic on training data."
    ),
    responses={503: {"model": ErrorResponse, "description": "No champion, or monitoring off"}},
)
async def get_live_distributions(request: Request, served: CurrentModel) -> LiveDistributions:
    monitor = _monitoring(request).monitor_for(served)
    window = await run_in_threadpool(monitor.window_features)
    training = {f.feature: f.histogram.edges for f in served.distributions.features}
    return LiveDistributions(
        model=ModelRef(name=served.name, version=served.version),
        window_rows=min((len(v) for v in window.values()), default=0),
        features=[
            LiveFeatureDistribution(feature=name, histogram=_binned(values, training[name]))
            for name, values in window.items()
            if name in training
        ],
    )


def _binned(values: np.ndarray, edges: list[float]) -> Histogram:
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=np.asarray(edges))
    return Histogram(edges=edges, counts=[int(c) for c in counts])


@router.post(
    "/feedback",
    response_model=FeedbackAccepted,
    dependencies=[WriteAccess, NoDuplicateKeys],
    summary="Ground truth for earlier predictions",
    description=(
        "The real state of the tool for an earlier `/predict` request (by its `request_id`; "
        "recent requests are remembered by the replica that served them, up to "
        "`CNCWEAR_FEEDBACK_MEMORY_ROWS` rows) or for raw rows sent with their labels (scored "
        "here). Adds to the window live accuracy, precision and recall are computed over. A "
        "request's ground truth counts once. Needs the API token."
    ),
    responses={
        401: {"model": ErrorResponse, "description": "Missing or invalid API token"},
        404: {"model": ErrorResponse, "description": "Request id unknown or forgotten"},
        409: {"model": ErrorResponse, "description": "Predicted by another model version"},
        422: {"model": ErrorResponse, "description": "Bad body, rows or labels"},
        503: {"model": ErrorResponse, "description": "No champion, or monitoring off"},
    },
)
async def post_feedback(
    request: Request, served: CurrentModel, body: FeedbackRequest
) -> FeedbackAccepted:
    monitoring = _monitoring(request)
    metrics: ApiMetrics = request.state.metrics
    if body.request_id is not None:
        predicted, source = _remembered(monitoring, served, body), "request_id"
        actual = _labels(body, len(predicted))
        if monitoring.recent.take(body.request_id) is None:  # taken meanwhile by another call
            raise NotFoundError(f"the feedback for request {body.request_id!r} was just given")
    else:
        predicted = await run_in_threadpool(_scored, served, body)
        source = "rows"
        actual = _labels(body, len(predicted))
    monitor = monitoring.monitor_for(served)
    monitor.add_feedback(predicted, actual)
    metrics.feedback_rows.labels(source=source).inc(len(actual))
    report = await run_in_threadpool(monitoring.report, served)
    return FeedbackAccepted(
        model=ModelRef(name=served.name, version=served.version),
        rows=len(actual),
        source=source,  # type: ignore[arg-type]
        performance=LivePerformancePublic.of(report.performance),
    )


def _remembered(monitoring: LiveMonitoring, served: ServedModel, body: FeedbackRequest) -> Any:
    assert body.request_id is not None
    found = monitoring.recent.peek(body.request_id)
    if found is None:
        raise NotFoundError(
            f"no recent prediction with request id {body.request_id!r} on this server: ids are "
            "remembered by the replica that served them, for the most recent "
            f"{monitoring.settings.feedback_memory_rows} rows; send the rows with their labels "
            "instead"
        )
    version, predicted = found
    if version != served.version:
        raise ConflictError(
            f"request {body.request_id!r} was answered by version {version}; version "
            f"{served.version} is served now, and live performance describes the served version"
        )
    return predicted


def _scored(served: ServedModel, body: FeedbackRequest) -> np.ndarray:
    payload = PredictRequest(rows=body.rows, columns=body.columns, data=body.data)
    batch = to_batch(payload, served.input_columns)
    result: np.ndarray = served.probability_worn(batch) >= THRESHOLD
    return result


def _labels(body: FeedbackRequest, rows: int) -> np.ndarray:
    if body.labels is None:
        return np.full(rows, body.label == "worn")
    if len(body.labels) != rows:
        problem = f"has {len(body.labels)} labels for {rows} predicted rows"
        raise InvalidRequestError([Problem(column="labels", problem=problem)])
    return np.asarray([label == "worn" for label in body.labels])
