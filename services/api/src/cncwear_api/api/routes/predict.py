"""``POST /predict``: wear of the tool behind a batch of raw sensor rows."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from cncwear.core.errors import SchemaError
from cncwear.core.schema import CLASS_NAMES, MAX_PROBLEMS_LISTED
from cncwear.serving.batch import Batch, to_batch
from cncwear.serving.scoring import THRESHOLD
from cncwear_api.api.deps import CurrentModel
from cncwear_api.api.errors import (
    InvalidRequestError,
    PayloadTooLargeError,
    problems_from_validation,
)
from cncwear_api.api.json_body import parse_json
from cncwear_api.api.responses import FastJSONResponse
from cncwear_api.api.routes import NO_CHAMPION
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.core.settings import ApiSettings
from cncwear_api.schemas.errors import ErrorResponse, Problem, ProblemsResponse
from cncwear_api.schemas.predict import REQUEST_EXAMPLES, PredictRequest, PredictResponse
from cncwear_api.serving.holder import ServedModel
from cncwear_api.serving.live_monitoring import LiveMonitoring

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
        "`data` (faster for large batches). Rows are numbered from 0 in error reports."
    ),
    responses={
        401: {"model": ErrorResponse, "description": "Token required (when reads are closed)"},
        413: {"model": ErrorResponse, "description": "Body or batch over the size limit"},
        422: {"model": ProblemsResponse, "description": "Bad rows: every problem by row/column"},
        **NO_CHAMPION,
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
    payload = _parse(body, settings.max_batch_rows, FIELDS_PER_COLUMN * len(served.input_columns))
    try:
        if served.compiled is not None and payload.row_count <= INLINE_ROWS:
            batch, probability = _score(served, payload, metrics)
        else:
            batch, probability = await run_in_threadpool(_score, served, payload, metrics)
    except SchemaError:
        metrics.schema_refusals.inc()
        raise
    request_id: str = request.state.request_id
    worn = probability >= THRESHOLD
    monitoring: LiveMonitoring = request.state.monitoring
    if monitoring.enabled:
        monitoring.observe(served, batch.numeric, probability, worn, request_id)
    return FastJSONResponse(_answer(served, probability, worn, request_id, metrics))


def _score(
    served: ServedModel, payload: PredictRequest, metrics: ApiMetrics
) -> tuple[Batch, np.ndarray]:
    batch = to_batch(payload, served.input_columns)
    with metrics.time_inference(served.runtime, served.version):
        return batch, served.probability_worn(batch)


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


def _parse(body: bytes, max_rows: int, max_fields: int) -> PredictRequest:
    """JSON (a fast parser; NaN and Infinity are let through, to be named by row and column; a key
    given twice in one object is refused: which value was meant?), then the sizes, then the shape
    of the request. Cells are checked later, against the model's schema:
    the work done on a bad body stays bounded by the limits."""
    parsed = parse_json(body)
    columns = None
    if isinstance(parsed, dict):
        _check_sizes(parsed, max_rows, max_fields)
        given = parsed.get("columns")
        if isinstance(given, list) and all(isinstance(c, str) for c in given):
            columns = given
    try:
        return PredictRequest.model_validate(parsed)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False, include_context=False)
        problems = problems_from_validation(errors, columns)
        raise InvalidRequestError(problems[:MAX_PROBLEMS_LISTED], total=len(problems)) from None


def _check_sizes(parsed: dict[str, Any], max_rows: int, max_fields: int) -> None:
    for key in ("rows", "data"):
        records = parsed.get(key)
        if isinstance(records, list) and len(records) > max_rows:
            raise PayloadTooLargeError(
                f"the batch has {len(records)} rows, more than the limit of {max_rows}: split it"
            )
    columns = parsed.get("columns")
    if isinstance(columns, list) and len(columns) > max_fields:
        problem = Problem(column="columns", problem=f"more than {max_fields} columns")
        raise InvalidRequestError([problem])
    wide = [
        Problem(row=i, column="*", problem=f"more than {max_fields} fields")
        for key in ("rows", "data")
        if isinstance(parsed.get(key), list)
        for i, record in enumerate(parsed[key])
        if isinstance(record, dict | list) and len(record) > max_fields
    ]
    if wide:
        raise InvalidRequestError(wide[:MAX_PROBLEMS_LISTED], total=len(wide))
