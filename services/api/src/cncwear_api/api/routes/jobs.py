"""``/retrain`` and ``/jobs``: queue a retrain for the trainer workers and follow it.

The API never trains: it puts a job on the Redis queue by task name and reads the job's state,
which the worker keeps in Redis, so every replica answers the same."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from cncwear.jobs.store import JobStore, RetrainRequest
from cncwear_api.api.deps import NoDuplicateKeys, WriteAccess
from cncwear_api.api.errors import InvalidRequestError
from cncwear_api.schemas.errors import ErrorResponse, Problem, ProblemsResponse
from cncwear_api.schemas.jobs import JobPublic, RetrainAccepted
from cncwear_api.serving.runs import Runs

router = APIRouter(tags=["retraining"])


def get_jobs(request: Request) -> JobStore:
    jobs: JobStore = request.state.jobs
    return jobs


JobsDep = Annotated[JobStore, Depends(get_jobs)]
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "Redis (the queue) is unavailable"}
}


@router.post(
    "/retrain",
    status_code=202,
    response_model=RetrainAccepted,
    dependencies=[WriteAccess, NoDuplicateKeys],
    summary="Queue a retrain",
    description=(
        "Queues a retrain for the trainer workers and answers at once with the job id; "
        "`Location` names where to follow it. At most one retrain is queued or running: while "
        "one is, its job is returned instead of a new one. It trains on the latest dataset "
        "version, or on the one named by `data_version`. Needs the API token."
    ),
    responses={
        401: {"model": ErrorResponse, "description": "Missing or invalid API token"},
        404: {"model": ErrorResponse, "description": "No such dataset version"},
        422: {"model": ProblemsResponse, "description": "Invalid parameters, by name"},
        **UNAVAILABLE,
    },
)
async def queue_retrain(
    request: Request,
    response: Response,
    jobs: JobsDep,
    body: Annotated[RetrainRequest | None, Body()] = None,
) -> RetrainAccepted:
    body = body or RetrainRequest()
    data_version: str | None = getattr(body, "data_version", None)
    if data_version is not None:  # an unknown version: 404 now, not a job failing later
        runs: Runs = request.state.runs
        await run_in_threadpool(lambda: runs.store.version(data_version))
    try:
        job, created = await run_in_threadpool(jobs.enqueue, body, request.state.celery)
    except ValueError as error:  # a data folder outside the configured data roots
        raise InvalidRequestError([Problem(column="data_dir", problem=str(error))]) from error
    response.headers["Location"] = f"/jobs/{job.job_id}"
    return RetrainAccepted(job_id=job.job_id, state=job.state.value, created=created)


@router.get(
    "/jobs",
    response_model=list[JobPublic],
    summary="Recent retrain jobs, newest first",
    responses=UNAVAILABLE,
)
async def list_jobs(
    jobs: JobsDep, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> list[JobPublic]:
    return [JobPublic.of(job) for job in await run_in_threadpool(jobs.recent, limit)]


@router.get(
    "/jobs/{job_id}",
    response_model=JobPublic,
    summary="One retrain job: its state, progress and outcome",
    responses={404: {"model": ErrorResponse, "description": "No such job"}, **UNAVAILABLE},
)
async def get_job(
    jobs: JobsDep, job_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
) -> JobPublic:
    return JobPublic.of(await run_in_threadpool(jobs.get, job_id))
