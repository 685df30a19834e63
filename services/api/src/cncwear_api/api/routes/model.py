"""``/model``: what is being served, and a way to make the server look for a new champion now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from cncwear.registry.challenger import ChallengerMove, promote_challenger, reject_challenger
from cncwear.registry.tags import Decider, ShadowState
from cncwear_api.api.deps import (
    ChallengerHolderDep,
    CurrentModel,
    HolderDep,
    NoDuplicateKeys,
    SettingsDep,
    WriteAccess,
)
from cncwear_api.api.errors import ModelNotReadyError
from cncwear_api.api.routes import NO_CHAMPION
from cncwear_api.schemas.common import ModelRef
from cncwear_api.schemas.errors import ErrorResponse
from cncwear_api.schemas.model import (
    ChallengerDecisionCreate,
    ChallengerDecisionPublic,
    ChallengerLoad,
    ChallengerPublic,
    ExampleRows,
    ModelEvaluation,
    ModelPublic,
    RetrainPublic,
    ShadowEvidencePublic,
    TrainingDistributions,
)
from cncwear_api.serving.holder import ModelHolder
from cncwear_api.serving.insight import challenger, example_rows, recent_retrains
from cncwear_api.serving.shadow import ShadowReport, ShadowScorer

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
async def get_model(served: CurrentModel, shadow: ChallengerHolderDep) -> ModelPublic:
    if shadow is None:
        return served.card
    held = shadow.current
    load = ChallengerLoad(
        version=None if held is None else held.version,
        load_error=shadow.load_error,
        load_failures=shadow.load_failures,
    )
    return served.card.model_copy(update={"challenger": load})


@router.post(
    "/refresh",
    response_model=ModelPublic,
    dependencies=[WriteAccess],
    summary="Look for a new champion now",
    description=(
        "Reads the champion alias (and, under the shadow policy, the challenger alias) from the "
        "registry and swaps to it if it changed, as the periodic poll and promotion "
        "announcements do. Needs the API token."
    ),
    responses={
        401: {"model": ErrorResponse, "description": "Missing or invalid API token"},
        503: {"model": ErrorResponse, "description": "Still no champion model"},
    },
)
async def refresh_model(holder: HolderDep, shadow: ChallengerHolderDep) -> ModelPublic:
    served = await run_in_threadpool(holder.refresh)
    if shadow is not None:
        await run_in_threadpool(shadow.refresh)
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


NO_CHALLENGER: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No version holds the challenger alias"}
}
TOKEN: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or invalid API token"}
}


@router.get(
    "/challenger",
    response_model=ChallengerPublic,
    summary="The version in shadow",
    description=(
        "The version holding the challenger alias (`CNCWEAR_PROMOTION_POLICY=shadow`: a "
        "retrain's winner that passed the holdout gate, awaiting live evidence), since when, and "
        "its held-out metrics. Read from the registry."
    ),
    responses=NO_CHALLENGER,
)
async def get_challenger(
    request: Request, holder: HolderDep, shadow: ChallengerHolderDep
) -> ChallengerPublic:
    found = await run_in_threadpool(challenger, holder.store)
    if shadow is None:
        return found
    held = shadow.current
    scorer: ShadowScorer | None = request.state.shadow
    last = None if scorer is None else scorer.last
    return found.model_copy(
        update={
            "loaded": held is not None and held.version == found.version,
            "load_error": shadow.load_error,
            "load_failures": shadow.load_failures,
            "evidence": _evidence(last) if last and last.verdict.version == found.version else None,
        }
    )


def _evidence(report: ShadowReport) -> ShadowEvidencePublic:
    decision, comparison = report.verdict.decision, report.comparison
    return ShadowEvidencePublic(
        decided_at=datetime.fromtimestamp(report.at, tz=UTC),
        outcome=str(decision.outcome),
        reason=decision.reason,
        runs=decision.runs,
        runs_by_label=decision.runs_by_label,
        challenger_wins=decision.challenger_wins,
        champion_wins=decision.champion_wins,
        p_value=decision.p_value,
        needs=decision.needs,
        champion_accuracy=comparison.champion_accuracy,
        challenger_accuracy=comparison.challenger_accuracy,
        agreement=comparison.agreement,
    )


@router.post(
    "/challenger/promote",
    response_model=ChallengerDecisionPublic,
    dependencies=[WriteAccess, NoDuplicateKeys],
    summary="Promote the challenger to champion by hand",
    description=(
        "Moves the champion alias to the challenger and removes the challenger alias, under the "
        "promotion lock; recorded on the version and its retrain run as a manual decision, with "
        "the reason given. This replica swaps at once, the others at the announcement or their "
        "next poll. Needs the API token."
    ),
    responses={**TOKEN, **NO_CHALLENGER},
)
async def promote(
    holder: HolderDep, shadow: ChallengerHolderDep, body: ChallengerDecisionCreate | None = None
) -> ChallengerDecisionPublic:
    reason = body.reason if body else "promoted by hand"
    move = await run_in_threadpool(promote_challenger, holder.store, reason, Decider.MANUAL)
    return await _answer(holder, shadow, move)


@router.post(
    "/challenger/reject",
    response_model=ChallengerDecisionPublic,
    dependencies=[WriteAccess, NoDuplicateKeys],
    summary="Reject the challenger by hand",
    description=(
        "Removes the challenger alias, under the promotion lock; the version stays in the "
        "registry, tagged with the reason, recorded as a manual decision. The champion is not "
        "touched. Needs the API token."
    ),
    responses={**TOKEN, **NO_CHALLENGER},
)
async def reject(
    holder: HolderDep, shadow: ChallengerHolderDep, body: ChallengerDecisionCreate | None = None
) -> ChallengerDecisionPublic:
    reason = body.reason if body else "rejected by hand"
    move = await run_in_threadpool(reject_challenger, holder.store, reason, Decider.MANUAL)
    return await _answer(holder, shadow, move)


async def _answer(
    holder: ModelHolder, shadow: ModelHolder | None, move: ChallengerMove
) -> ChallengerDecisionPublic:
    served = await run_in_threadpool(holder.refresh)
    if shadow is not None:
        await run_in_threadpool(shadow.refresh)
    return ChallengerDecisionPublic(
        decision="promoted" if move.state is ShadowState.PROMOTED else "rejected",
        version=move.version,
        previous_champion=move.previous_champion,
        reason=move.reason,
        decided_by="manual" if move.decided_by is Decider.MANUAL else "automatic",
        serving_version=None if served is None else served.version,
    )
