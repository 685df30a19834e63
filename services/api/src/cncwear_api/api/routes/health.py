"""Probes: liveness (``/health``) and readiness (``/ready``: a champion is loaded)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from cncwear_api.api.deps import HolderDep
from cncwear_api.schemas.common import ModelRef
from cncwear_api.schemas.health import Health, Readiness

router = APIRouter(tags=["probes"])


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health() -> Health:
    return Health()


@router.get(
    "/ready",
    response_model=Readiness,
    summary="Readiness: a champion is loaded",
    responses={503: {"model": Readiness, "description": "No champion loaded yet"}},
)
async def ready(holder: HolderDep, response: Response) -> Readiness:
    served = holder.current
    if served is None:
        response.status_code = 503
        return Readiness(ready=False, detail="no champion model loaded yet")
    return Readiness(ready=True, model=ModelRef(name=served.name, version=served.version))
