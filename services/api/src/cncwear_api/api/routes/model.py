"""``/model``: what is being served, and a way to make the server look for a new champion now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from cncwear_api.api.deps import CurrentModel, HolderDep, SettingsDep, WriteAccess
from cncwear_api.api.errors import ModelNotReadyError
from cncwear_api.api.routes import NO_CHAMPION
from cncwear_api.schemas.common import ModelRef
from cncwear_api.schemas.errors import ErrorResponse
from cncwear_api.schemas.model import (
    ExampleRows,
    ModelEvaluation,
    ModelPublic,
    RetrainPublic,
    TrainingDistributions,
)
from cncwear_api.serving.insight import example_rows, recent_retrains

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
    responses=NO_CHAMPION,
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


@router.get(
    "/evaluation",
    response_model=ModelEvaluation,
    summary="The champion on its held-out experiments: metrics, confusion matrix, curves",
    description=(
        "Confusion matrix, ROC and precision-recall curves and per-experiment accuracy, as scored "
        "on the held-out experiments when the version was trained; the leaky row-split figure "
        "beside them for comparison. Curves are null for versions trained before they were "
        "recorded."
    ),
    responses=NO_CHAMPION,
)
async def get_evaluation(served: CurrentModel) -> ModelEvaluation:
    return served.evaluation


@router.get(
    "/distributions",
    response_model=TrainingDistributions,
    summary="Training distributions of the features the champion sees",
    description=(
        "Histograms of each engineered feature over the training data (from the reference "
        "profile logged with the model, the one drift monitoring compares against), the class "
        "balance and the predicted wear probability on the held-out experiments."
    ),
    responses=NO_CHAMPION,
)
async def get_distributions(served: CurrentModel) -> TrainingDistributions:
    return served.distributions


@router.get(
    "/examples",
    response_model=ExampleRows,
    summary="Real rows of the champion's held-out experiments",
    description=(
        "Raw sensor rows spread through each held-out experiment, with the experiment and its "
        "true label: ready to send to `/predict` or `/explain`. Read from the training data "
        "folder (`CNCWEAR_DATA_DIR`) once, then cached."
    ),
    responses=NO_CHAMPION,
)
async def get_examples(
    served: CurrentModel,
    settings: SettingsDep,
    per_experiment: Annotated[int, Query(ge=1, le=50)] = 5,
) -> ExampleRows:
    examples = await run_in_threadpool(
        example_rows,
        settings.data_dir,
        tuple(served.card.metrics.holdout_experiments),
        tuple(served.input_columns),
        per_experiment,
    )
    return ExampleRows(
        model=ModelRef(name=served.name, version=served.version), examples=list(examples)
    )


@router.get(
    "/retrains",
    response_model=list[RetrainPublic],
    summary="The latest retrains and their candidates, newest first",
    description=(
        "From the MLflow runs: each retrain's candidates with their held-out metrics (and the "
        "leaky row-split figure for comparison), the winner, the version it registered and the "
        "promotion decision with its reason."
    ),
)
async def get_retrains(
    holder: HolderDep, limit: Annotated[int, Query(ge=1, le=50)] = 5
) -> list[RetrainPublic]:
    return await run_in_threadpool(recent_retrains, holder.store, limit)
