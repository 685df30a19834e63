"""MLflow's scoring protocol (``mlflow models serve``): ``/invocations``, ``/ping``, ``/version``,
answering as MLflow's own server does for the champion; scored through the same path as
``/predict`` (:func:`cncwear_api.api.scoring.score_rows`), by the pipeline itself, so the
probabilities are MLflow's to the last bit.

MLflow's server also answers ``GET /health`` as it answers ``/ping``; here ``/health`` stays
cncwear's own (liveness, a JSON status, whether or not a model is loaded)."""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from cncwear_api.api.deps import CurrentModel
from cncwear_api.api.responses import FastJSONResponse
from cncwear_api.api.scoring import score_rows
from cncwear_api.core.settings import ApiSettings
from cncwear_api.protocols import mlflow_scoring
from cncwear_api.schemas.mlflow_scoring import INVOCATIONS_BODY, MlflowError, Predictions

probes = APIRouter(tags=["mlflow scoring protocol"])
"""``/ping`` and ``/version``: open, as ``/health`` is."""
router = APIRouter(tags=["mlflow scoring protocol"])
"""``/invocations``: a read, closed with ``CNCWEAR_PROTECT_READS``."""


@probes.get(
    "/ping",
    summary="MLflow's health check: a champion is loaded",
    response_class=Response,
    responses={
        200: {"content": {"application/json": {}}, "description": "A champion is loaded"},
        503: {"content": {"application/json": {}}, "description": "No champion loaded yet"},
    },
)
async def ping(request: Request) -> Response:
    ready = request.state.holder.current is not None
    return Response("\n", 200 if ready else 503, media_type="application/json")


@probes.get(
    "/version",
    summary="The server's version (MLflow's server gives MLflow's)",
    response_class=PlainTextResponse,
)
async def version() -> PlainTextResponse:
    return PlainTextResponse(package_version("cncwear-api"))


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Bad body: what is wrong with it (bad cells by row and column)",
        401: "Token required (when reads are closed)",
        413: "Body or batch over the size limit",
        503: "No champion model loaded yet",
    }
    return {s: {"model": MlflowError, "description": described[s]} for s in statuses}


@router.post(
    "/invocations",
    summary="The champion's predict_proba of each row, as `mlflow models serve` answers",
    response_model=Predictions,
    responses={
        **_errors(400, 401, 413, 503),
        415: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Neither JSON nor CSV (UTF-8)",
        },
    },
    openapi_extra={"requestBody": INVOCATIONS_BODY},
)
async def invocations(request: Request, served: CurrentModel) -> Response:
    try:
        media = mlflow_scoring.media_type(request.headers.get("content-type", ""))
    except mlflow_scoring.UnsupportedContentType as refused:
        return PlainTextResponse(str(refused), 415)
    settings: ApiSettings = request.state.settings
    body = await request.body()  # its size limited by the request middleware
    rows = mlflow_scoring.decode(body, media, settings.max_batch_rows)
    scored = await score_rows(request, served, rows, None, classes=True)
    assert scored.classes is not None  # asked for
    return FastJSONResponse({"predictions": scored.classes.tolist()})
