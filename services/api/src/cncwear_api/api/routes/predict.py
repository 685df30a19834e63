"""``POST /predict``: wear of the tool behind a batch of raw sensor rows."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from cncwear.core.schema import CLASS_NAMES
from cncwear.serving.scoring import THRESHOLD
from cncwear_api.api.deps import CurrentModel
from cncwear_api.api.json_body import parse_rows_body
from cncwear_api.api.responses import FastJSONResponse
from cncwear_api.api.scoring import score_rows
from cncwear_api.core.settings import ApiSettings
from cncwear_api.schemas.common import body_schema
from cncwear_api.schemas.errors import ErrorResponse, ProblemsResponse
from cncwear_api.schemas.predict import REQUEST_EXAMPLES, PredictRequest, PredictResponse
from cncwear_api.serving.holder import ServedModel

router = APIRouter(tags=["predict"])

FIELDS_PER_COLUMN = 2
"""A request may name at most twice as many columns as the model takes, a row have at most twice
as many fields: room to report unknown ones, and a bound on the work a bad body causes."""

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
                    "schema": body_schema(PredictRequest),
                    "examples": REQUEST_EXAMPLES,
                }
            },
        }
    },
)
async def predict(request: Request, served: CurrentModel) -> FastJSONResponse:
    # Settings straight from the lifespan state: every dependency costs on this path.
    settings: ApiSettings = request.state.settings
    body = await request.body()  # its size limited by the request middleware
    payload = parse_rows_body(
        body, PredictRequest, settings.max_batch_rows, FIELDS_PER_COLUMN * len(served.input_columns)
    )
    scored = await score_rows(request, served, payload, payload.run)
    answer = _answer(served, scored.probability, scored.worn, request.state.request_id)
    if scored.run is not None:
        answer["run"] = scored.run
    return FastJSONResponse(answer)


def _answer(
    served: ServedModel, probability: np.ndarray, worn: np.ndarray, request_id: str
) -> dict[str, Any]:
    worn_rows = int(worn.sum())
    mean = float(probability.mean())
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
