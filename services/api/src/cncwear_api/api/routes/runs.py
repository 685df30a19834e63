"""``/runs``: labelled runs. A mill streams a job's rows through ``/predict`` with a run id; once
the tool is inspected someone labels the run, which closes it and validates it: an accepted run is
training data of the next dataset version. Runs recorded elsewhere are uploaded whole.

Every run lives in the shared store (``cncwear.data.runs``), never in a replica: any replica
answers for any run."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from cncwear.core.schema import input_columns
from cncwear.data.runs.ids import RUN_ID_PATTERN, RunLabel, RunState, check_run_id
from cncwear.data.runs.records import RunRecord
from cncwear.serving.batch import to_batch
from cncwear_api.api.deps import NoDuplicateKeys, WriteAccess
from cncwear_api.api.json_body import parse_rows_body
from cncwear_api.api.routes.predict import FIELDS_PER_COLUMN
from cncwear_api.core.settings import ApiSettings
from cncwear_api.schemas.common import body_schema
from cncwear_api.schemas.errors import ErrorResponse, ProblemsResponse
from cncwear_api.schemas.runs import (
    UPLOAD_EXAMPLES,
    RunLabelCreate,
    RunPublic,
    RunsPage,
    RunStateName,
    RunUpload,
)
from cncwear_api.serving.holder import ServedModel
from cncwear_api.serving.live_monitoring import LiveMonitoring
from cncwear_api.serving.runs import Runs
from cncwear_api.serving.shadow import ShadowScorer

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/runs", tags=["runs"])

UPLOAD_COLUMNS = input_columns(use_identifying_columns=False)
"""What an uploaded run's rows hold: the schema's sensor columns and the machining step, as in the
bundled ``experiment_NN.csv`` files (whichever columns the champion happens to take)."""

TOKEN: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or invalid API token"}
}
NO_RUN: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such run (or dropped unlabelled)"},
    422: {"model": ProblemsResponse, "description": "Invalid run id, or a bad field, by name"},
}
CLOSED: dict[int | str, dict[str, Any]] = {
    409: {"model": ProblemsResponse, "description": "The run is not collecting any more"}
}


def get_runs(request: Request) -> Runs:
    runs: Runs = request.state.runs
    return runs


def run_id(
    run: Annotated[
        str,
        Path(
            description="The run id; it may hold `/` (`mill-3/job-1842`)",
            # Documented, not enforced here: check_run_id refuses it with a 422 naming ``run``.
            json_schema_extra={"pattern": RUN_ID_PATTERN, "maxLength": 128},
        ),
    ],
) -> str:
    """The run named by the path, checked like every run id (422 naming ``run``)."""
    return check_run_id(run)


RunsDep = Annotated[Runs, Depends(get_runs)]
RunIdDep = Annotated[str, Depends(run_id)]


@router.post(
    "",
    status_code=201,
    response_model=RunPublic,
    dependencies=[WriteAccess],
    summary="Upload a whole labelled run",
    description=(
        "For runs recorded elsewhere: the id, the label and the job's settings, and the raw rows "
        "in the order they were recorded (`rows`, or `columns` + `data`), checked like "
        "`/predict` rows. The run is validated at once and answered accepted or rejected (with "
        "reasons). Needs the API token."
    ),
    responses={
        **TOKEN,
        409: {"model": ProblemsResponse, "description": "A run with that id exists"},
        413: {"model": ErrorResponse, "description": "Body over the size limit"},
        422: {"model": ProblemsResponse, "description": "Bad rows, label or id, by name"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": body_schema(RunUpload),
                    "examples": UPLOAD_EXAMPLES,
                }
            },
        }
    },
)
async def upload_run(request: Request, runs: RunsDep) -> RunPublic:
    settings: ApiSettings = request.state.settings
    body = await request.body()  # its size limited by the request middleware
    payload = parse_rows_body(
        body, RunUpload, settings.run_max_rows, FIELDS_PER_COLUMN * len(UPLOAD_COLUMNS)
    )
    label = RunLabel.parse(payload.label_fields())
    record = await run_in_threadpool(_upload, runs, payload, label)
    return await _after_closing(request, runs, record)


def _upload(runs: Runs, payload: RunUpload, label: RunLabel) -> RunRecord:
    batch = to_batch(payload, UPLOAD_COLUMNS)
    return runs.store.upload(
        payload.run,
        batch,
        input_columns=UPLOAD_COLUMNS,
        label=label,
        reference=runs.base().reference,
    )


@router.get(
    "",
    response_model=RunsPage,
    summary="Labelled runs, newest first",
    description="Paged (`limit`, `offset`), optionally only those in one `state`.",
)
async def list_runs(
    runs: RunsDep,
    state: Annotated[RunStateName | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> RunsPage:
    wanted = None if state is None else RunState(state)
    page = await run_in_threadpool(
        lambda: runs.store.list(state=wanted, limit=limit, offset=offset)
    )
    return RunsPage.of(page, limit, offset)


@router.get(
    "/{run:path}",
    response_model=RunPublic,
    summary="One run",
    description=(
        "Its state, label, row counts (all, active cutting), when it was first and last seen, "
        "the model versions that served it and, once labelled, how their predictions did; why "
        "it was rejected; the dataset versions that include it."
    ),
    responses=NO_RUN,
)
async def get_run(runs: RunsDep, run: RunIdDep) -> RunPublic:
    return RunPublic.of(await run_in_threadpool(runs.store.get, run))


@router.post(
    "/{run:path}/label",
    response_model=RunPublic,
    dependencies=[WriteAccess, NoDuplicateKeys],
    summary="Label a run: the tool's state after the job",
    description=(
        "Closes the run and validates it: accepted (it is training data of the next dataset "
        "version, and may queue a retrain: `CNCWEAR_RETRAIN_AFTER_RUNS`) or rejected, with the "
        "reasons. The run's predictions then count in live accuracy. Needs the API token."
    ),
    responses={**TOKEN, **NO_RUN, **CLOSED},
)
async def label_run(
    request: Request, runs: RunsDep, run: RunIdDep, body: RunLabelCreate
) -> RunPublic:
    label = RunLabel.parse(body.label_fields())
    record = await run_in_threadpool(lambda: runs.store.label(run, label, runs.base().reference))
    return await _after_closing(request, runs, record)


@router.delete(
    "/{run:path}",
    response_model=RunPublic,
    dependencies=[WriteAccess],
    summary="Withdraw a run (mislabelled, say)",
    description=(
        "The run stays listed, as `withdrawn`, with its rows; the next dataset version leaves it "
        "out. Needs the API token."
    ),
    responses={**TOKEN, **NO_RUN},
)
async def withdraw_run(runs: RunsDep, run: RunIdDep) -> RunPublic:
    record = await run_in_threadpool(runs.store.withdraw, run)
    await run_in_threadpool(runs.new_version)  # the accepted runs without this one
    return RunPublic.of(record)


async def _after_closing(request: Request, runs: Runs, record: RunRecord) -> RunPublic:
    """A run just labelled or uploaded: when accepted, its dataset version and the after-runs
    retrain trigger; and its drift verdict by the served model, kept with it."""
    if record.state is RunState.ACCEPTED:
        record = await run_in_threadpool(runs.accepted, record.run, request.state.celery)
    monitoring: LiveMonitoring = request.state.monitoring
    served: ServedModel | None = request.state.holder.current
    if served is not None and monitoring.enabled:
        try:
            await run_in_threadpool(monitoring.judge_and_keep, served, runs.store, record.run)
            record = await run_in_threadpool(runs.store.get, record.run)
        except Exception as error:  # the label stands without it
            logger.error("could not judge the drift of run %s: %s", record.run, error)
    shadow: ShadowScorer | None = request.state.shadow
    if shadow is not None:
        await _decide_shadow(request, shadow, served)
    return RunPublic.of(record)


SHADOW_DRAIN_SECONDS = 5.0
"""How long a label waits for the challenger to score the rows handed to it so far."""


async def _decide_shadow(
    request: Request, shadow: ShadowScorer, served: ServedModel | None
) -> None:
    """A new label is new evidence: the shadow decision, once the challenger has scored what it
    was given. A move wakes the registry watch, which swaps the models (as an announcement
    does on the other replicas). Never fails the label."""
    try:
        await run_in_threadpool(shadow.wait_idle, SHADOW_DRAIN_SECONDS)
        report = await run_in_threadpool(shadow.decide, served)
    except Exception as error:
        logger.error("could not take the shadow decision: %s", error)
        return
    if report is not None and report.verdict.move is not None:
        wake: asyncio.Event = request.state.wake
        wake.set()
