"""``/model``: what is being served, and a way to make the server look for a new champion now."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from cncwear_api.deps import CurrentModel, HolderDep, WriteAccess
from cncwear_api.errors import ModelNotReadyError
from cncwear_api.models import ErrorResponse, ModelPublic

router = APIRouter(prefix="/model", tags=["model"])


@router.get(
    "",
    response_model=ModelPublic,
    summary="The champion being served",
    description=(
        "Version, runs, training date, engine, the features the model uses, its metrics on "
        "held-out experiments (the ones to trust) and, labelled as leaky, the random row split "
        "figure; and how it is served (onnxruntime or scikit-learn, with the measured parity)."
    ),
    responses={503: {"model": ErrorResponse, "description": "No champion model loaded yet"}},
)
async def get_model(served: CurrentModel) -> ModelPublic:
    return served.card


@router.post(
    "/refresh",
    response_model=ModelPublic,
    dependencies=[WriteAccess],
    summary="Look for a new champion now",
    description=(
        "Reads the champion alias from the registry and swaps to it if it changed, as the "
        "periodic poll and promotion announcements do. Needs the API token."
    ),
    responses={
        401: {"model": ErrorResponse, "description": "Missing or invalid API token"},
        503: {"model": ErrorResponse, "description": "Still no champion model"},
    },
)
async def refresh_model(holder: HolderDep) -> ModelPublic:
    served = await run_in_threadpool(holder.refresh)
    if served is None:
        raise ModelNotReadyError("the registry has no champion that could be loaded")
    return served.card
