"""The Open Inference Protocol v2 (REST) routes: server and model health and metadata, and
``infer``, scoring through the same path as ``/predict``
(:func:`cncwear_api.api.scoring.score_rows`).

The model is the registered model served (``CNCWEAR_MODEL_NAME``), its one version the champion:
another name or version is 404. Errors are ``{"error": "..."}`` (the spec's error object)."""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

from cncwear_api.api.errors import InvalidRequestError, ModelNotReadyError, NotFoundError
from cncwear_api.api.responses import FastJSONResponse
from cncwear_api.api.scoring import score_rows
from cncwear_api.core.settings import ApiSettings
from cncwear_api.protocols import oip
from cncwear_api.schemas.common import body_schema
from cncwear_api.schemas.errors import Problem
from cncwear_api.schemas.oip import (
    REQUEST_EXAMPLES,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
    V2Error,
)
from cncwear_api.serving.holder import ServedModel

SERVER_NAME = "cncwear"

probes = APIRouter(tags=["open inference protocol v2"])
"""Server metadata, liveness and readiness: open, as ``/health`` and ``/ready`` are."""
router = APIRouter(tags=["open inference protocol v2"])
"""Model metadata and inference: reads, closed with ``CNCWEAR_PROTECT_READS``."""

ModelName = Annotated[str, PathParam(min_length=1, max_length=256, description="The model")]
Version = Annotated[str, PathParam(min_length=1, max_length=64, description="Its version")]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "Bad request: the input and what is wrong with it",
        401: "Token required (when reads are closed)",
        404: "Unknown model, or a version not served",
        409: "The run is closed (labelled, withdrawn)",
        413: "Body or batch over the size limit",
        415: "Body not declared as JSON",
        503: "No champion model loaded yet, or the runs' store could not keep the rows",
    }
    return {s: {"model": V2Error, "description": described[s]} for s in statuses}


@probes.get("/v2", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name=SERVER_NAME, version=package_version("cncwear-api"), extensions=[])


@probes.get("/v2/health/live", response_model=ServerLive, summary="Server liveness")
async def server_live() -> ServerLive:
    return ServerLive(live=True)


@probes.get(
    "/v2/health/ready",
    response_model=ServerReady,
    summary="Server readiness: a champion is loaded",
    responses={503: {"model": ServerReady, "description": "No champion loaded yet"}},
)
async def server_ready(request: Request) -> FastJSONResponse:
    ready = request.state.holder.current is not None
    return FastJSONResponse({"ready": ready}, 200 if ready else 503)


def _served(request: Request, name: str, version: str | None) -> ServedModel:
    """The model a path names: 404 for another model or version, 503 before there is one."""
    settings: ApiSettings = request.state.settings
    if name != settings.model_name:
        raise NotFoundError(f"unknown model {name!r}: this server serves {settings.model_name!r}")
    served: ServedModel | None = request.state.holder.current
    if served is None:
        raise ModelNotReadyError(f"no version of model {name!r} is loaded yet")
    if version is not None and version != served.version:
        raise NotFoundError(
            f"version {version!r} of model {name!r} is not served; versions served: "
            f"{served.version}"
        )
    request.state.model_version = served.version
    return served


async def _model_ready(request: Request, name: str, version: str | None) -> FastJSONResponse:
    settings: ApiSettings = request.state.settings
    if name != settings.model_name:
        raise NotFoundError(f"unknown model {name!r}: this server serves {settings.model_name!r}")
    served: ServedModel | None = request.state.holder.current
    if served is not None and version is not None and version != served.version:
        _served(request, name, version)  # 404 naming the versions served
    ready = served is not None
    return FastJSONResponse({"name": name, "ready": ready}, 200 if ready else 503)


READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_errors(400, 404),
    503: {"model": ModelReady, "description": "No champion loaded yet"},
}


@probes.get(
    "/v2/models/{name}/ready",
    response_model=ModelReady,
    summary="Model readiness",
    responses=READY_RESPONSES,
)
async def model_ready(request: Request, name: ModelName) -> FastJSONResponse:
    return await _model_ready(request, name, None)


@probes.get(
    "/v2/models/{name}/versions/{version}/ready",
    response_model=ModelReady,
    summary="Model version readiness",
    responses=READY_RESPONSES,
)
async def model_version_ready(
    request: Request, name: ModelName, version: Version
) -> FastJSONResponse:
    return await _model_ready(request, name, version)


@router.get(
    "/v2/models/{name}",
    response_model=ModelMetadata,
    summary="Model metadata: its inputs (one per raw column) and outputs",
    responses=_errors(400, 401, 404, 503),
)
async def model_metadata(request: Request, name: ModelName) -> FastJSONResponse:
    return FastJSONResponse(oip.model_metadata(_served(request, name, None)))


@router.get(
    "/v2/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    summary="Model version metadata",
    responses=_errors(400, 401, 404, 503),
)
async def model_version_metadata(
    request: Request, name: ModelName, version: Version
) -> FastJSONResponse:
    return FastJSONResponse(oip.model_metadata(_served(request, name, version)))


INFER = {
    "response_model": InferenceResponse,
    "responses": _errors(400, 401, 404, 409, 413, 415, 503),
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": body_schema(InferenceRequest),
                    "examples": REQUEST_EXAMPLES,
                }
            },
        }
    },
}


@router.post("/v2/models/{name}/infer", summary="Wear of each row", **INFER)  # type: ignore[arg-type]
async def infer(request: Request, name: ModelName) -> FastJSONResponse:
    return await _infer(request, name, None)


@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    summary="Wear of each row, by a given version",
    **INFER,  # type: ignore[arg-type]
)
async def infer_version(request: Request, name: ModelName, version: Version) -> FastJSONResponse:
    return await _infer(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> FastJSONResponse:
    served = _served(request, name, version)
    if oip.BINARY_HEADER in request.headers:
        problem = "binary tensor data is not supported: send JSON data (binary_data=False)"
        raise InvalidRequestError(
            [Problem(column="Inference-Header-Content-Length", problem=problem)]
        )
    settings: ApiSettings = request.state.settings
    body = await request.body()  # its size limited by the request middleware
    inference, rows = oip.decode(body, served, settings.max_batch_rows)
    parameters = inference.parameters or {}
    scored = await score_rows(request, served, rows, parameters.get("run"))
    request_id: str = request.state.request_id
    answer_parameters: dict[str, Any] = {"request_id": request_id}
    if scored.run is not None:
        answer_parameters.update(
            run=scored.run["id"],
            run_rows_kept=scored.run["rows"],
            run_rows=scored.run["run_rows"],
            run_truncated=scored.run["truncated"],
        )
    return FastJSONResponse(
        {
            "model_name": served.name,
            "model_version": served.version,
            "id": inference.id if inference.id is not None else request_id,
            "parameters": answer_parameters,
            "outputs": oip.outputs(inference, scored.probability, scored.worn),
        }
    )
