"""``POST /predict``: wear of the tool behind a batch of raw sensor rows."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from cncwear.core.errors import CncwearError, SchemaError
from cncwear.core.schema import CLASS_NAMES
from cncwear.serving.batch import Batch, to_batch
from cncwear.serving.scoring import THRESHOLD
from cncwear_api.api.deps import CurrentModel
from cncwear_api.api.errors import RunStoreUnavailableError
from cncwear_api.api.json_body import parse_rows_body
from cncwear_api.api.responses import FastJSONResponse
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.core.settings import ApiSettings
from cncwear_api.schemas.errors import ErrorResponse, ProblemsResponse
from cncwear_api.schemas.predict import REQUEST_EXAMPLES, PredictRequest, PredictResponse
from cncwear_api.serving.holder import ServedModel
from cncwear_api.serving.live_monitoring import LiveMonitoring
from cncwear_api.serving.runs import Runs

logger = logging.getLogger(__name__)

router = APIRouter(tags=["predict"])

FIELDS_PER_COLUMN = 2
"""A request may name at most twice as many columns as the model takes, a row have at most twice
as many fields: room to report unknown ones, and a bound on the work a bad body causes."""

INLINE_ROWS = 64
"""Batches up to this size through the compiled model are scored on the event loop (tens of
microseconds); larger ones, and scikit-learn, in a worker thread so other requests go on."""

UNWORN, WORN = CLASS_NAMES


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Wear of the tool behind a batch of raw sensor rows",
    description=(
        "Scores each row with the champion and reads the batch as readings of one tool "
        "(`verdict`: mean wear probability). Send rows as records (`rows`) or as `columns` + "
        "`data` (faster for large batches). Rows are numbered from 0 in error reports. With "
        "`run`, the rows and what was predicted for them are stored in that run before the "
        "answer is sent."
    ),
    responses={
        401: {"model": ErrorResponse, "description": "Token required (when reads are closed)"},
        409: {"model": ProblemsResponse, "description": "The run is closed (labelled, withdrawn)"},
        413: {"model": ErrorResponse, "description": "Body or batch over the size limit"},
        422: {"model": ProblemsResponse, "description": "Bad rows: every problem by row/column"},
        503: {
            "model": ErrorResponse,
            "description": "No champion model loaded yet, or (with `run`) the runs' store "
            "could not keep the rows",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": PredictRequest.model_json_schema(),
                    "examples": REQUEST_EXAMPLES,
                }
            },
        }
    },
)
async def predict(request: Request, served: CurrentModel) -> FastJSONResponse:
    # Settings and metrics straight from the lifespan state: every dependency costs on this path.
    settings: ApiSettings = request.state.settings
    metrics: ApiMetrics = request.state.metrics
    body = await request.body()  # its size limited by the request middleware
    payload = parse_rows_body(
        body, PredictRequest, settings.max_batch_rows, FIELDS_PER_COLUMN * len(served.input_columns)
    )
    request_id: str = request.state.request_id
    # A run's append is blocking database I/O: it goes to the worker thread with the scoring, one
    # hop for both. Only small batches without a run are scored on the event loop.
    runs: Runs | None = None if payload.run is None else request.state.runs
    try:
        if served.compiled is not None and payload.row_count <= INLINE_ROWS:
            batch, probability = _serve(served, payload, metrics)
        else:
            batch, probability = await run_in_threadpool(_serve, served, payload, metrics)
    except SchemaError:
        metrics.schema_refusals.inc()
        raise
    kept = None
    if runs is not None and payload.run is not None:
        kept = await _append(
            runs, payload.run, served, batch, probability=probability, request_id=request_id,
            metrics=metrics,
        )  # fmt: skip
    worn = probability >= THRESHOLD
    monitoring: LiveMonitoring = request.state.monitoring
    if monitoring.enabled:
        monitoring.observe(served, batch.numeric, probability, worn, request_id)
    answer = _answer(served, probability, worn, request_id, metrics)
    if kept is not None:
        answer["run"] = kept
    return FastJSONResponse(answer)


def _serve(
    served: ServedModel, payload: PredictRequest, metrics: ApiMetrics
) -> tuple[Batch, np.ndarray]:
    """Validate and score the batch."""
    batch = to_batch(payload, served.input_columns)
    with metrics.time_inference(served.runtime, served.version):
        probability = served.probability_worn(batch)
    return batch, probability


def _answer(
    served: ServedModel,
    probability: np.ndarray,
    worn: np.ndarray,
    request_id: str,
    metrics: ApiMetrics,
) -> dict[str, Any]:
    worn_rows = int(worn.sum())
    mean = float(probability.mean())
    metrics.observe_predictions(served.version, probability, worn_rows)
    labels = np.where(worn, WORN, UNWORN).tolist()
    return {
        "model": {"name": served.name, "version": served.version},
        "predictions": [
            {"label": label, "probability_worn": p}
            for label, p in zip(labels, probability.tolist(), strict=True)
        ],
        "verdict": {
            "label": WORN if mean >= THRESHOLD else UNWORN,
            "mean_probability_worn": mean,
            "rows": len(labels),
            "worn_rows": worn_rows,
        },
        "request_id": request_id,
    }


async def _append(
    runs: Runs,
    run: str,
    served: ServedModel,
    batch: Batch,
    *,
    probability: np.ndarray,
    request_id: str,
    metrics: ApiMetrics,
) -> dict[str, Any]:
    """The batch appended to its run, and what became of it, once committed. The event loop
    waits for the store's writer (no worker thread blocks on it, so none waits to get the GIL
    back to say so)."""
    try:
        outcome = await asyncio.wrap_future(
            runs.store.submit(
                run,
                batch,
                input_columns=served.input_columns,
                probability=probability,
                model_version=served.version,
                request_id=request_id,
            )
        )
    except CncwearError:  # a closed run: the client's to act on (409)
        raise
    except Exception as error:
        metrics.run_append_failures.inc()
        logger.error("could not append to run %r: %s", run, error)
        raise RunStoreUnavailableError(
            f"the rows could not be stored in run {run!r} ({type(error).__name__}); nothing was "
            "kept: send the request again"
        ) from error
    metrics.run_rows_appended.inc(outcome.rows_kept)
    if outcome.truncated:
        metrics.run_truncated_appends.inc()
    return {
        "id": run,
        "rows": outcome.rows_kept,
        "run_rows": outcome.run_rows,
        "truncated": outcome.truncated,
    }
