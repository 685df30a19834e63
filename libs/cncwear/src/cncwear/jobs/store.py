"""Retrain jobs: their requests, their state in Redis, and queueing them without duplicates.

Job state lives in Redis, not in a process, so every API replica answers ``GET /jobs/{id}`` the same
and a job survives the worker that ran it. At most one retrain is queued or running at a time: a
second request gets the existing job back.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from pydantic import BaseModel, Field, field_validator

from cncwear.core.choices import AutoMLEngineName, Budget, CandidateName
from cncwear.core.errors import JobNotFoundError, QueueUnavailableError
from cncwear.core.settings import Settings
from cncwear.jobs.queue import RETRAIN_TASK

JOBS_INDEX = "cncwear:jobs"
ACTIVE_JOB = "cncwear:active-job"
REDIS_TIMEOUT_SECONDS = 2.0
KEPT_JOBS = 200


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RetrainRequest(BaseModel):
    """What a retrain job is asked to do; every field has the setting's default."""

    budget: Budget | None = None
    automl_engine: AutoMLEngineName | None = None
    data_dir: str | None = Field(
        default=None, description="Training data folder; must lie under a configured data root."
    )
    reason: str = Field(default="on demand", max_length=200)
    candidates: list[CandidateName] | None = Field(
        default=None, description="Candidates to compare; default: decision tree, forest, AutoML."
    )
    data_version: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[0-9a-f]+$",
        description="Dataset version to train on (GET /data/versions); default: the latest.",
    )
    if_new_data: bool = Field(
        default=False,
        description="Skip the retrain (the job succeeds, its result says skipped: 'no new data') "
        "when the latest dataset version is the champion's or a model was already trained on it. "
        "Set by the automatic triggers.",
    )

    @field_validator("reason")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("reason must be printable text")
        return value


@dataclass
class Job:
    job_id: str
    state: JobState
    request: RetrainRequest
    created_at: float
    stage: str | None = None
    percent: float | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state.value,
            "stage": self.stage,
            "percent": self.percent,
            "attempts": self.attempts,
            "request": self.request.model_dump(mode="json"),
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "result": self.result,
            "error": self.error,
        }


def resolve_data_dir(settings: Settings, data_dir: str | None) -> Path | None:
    """The data folder of a request, refused unless it lies under a configured data root: a
    caller must not make the trainer read arbitrary paths."""
    if data_dir is None:
        return None
    path = Path(data_dir).resolve()
    for root in settings.data_roots():
        if path == root or path.is_relative_to(root):
            return path
    roots = ", ".join(str(r) for r in settings.data_roots())
    raise ValueError(f"data_dir must lie under a configured data root ({roots})")


class JobStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = redis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            decode_responses=True,
        )

    def close(self) -> None:
        self.redis.close()

    # -- reading ----------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        with _unavailable_as_domain_error():
            fields = _strings(self.redis.hgetall(_key(job_id)))
        if not fields:
            raise JobNotFoundError(f"no job {job_id!r}")
        return _job_from_fields(fields)

    def recent(self, limit: int = 20) -> list[Job]:
        with _unavailable_as_domain_error():
            ids = self.redis.zrevrange(JOBS_INDEX, 0, max(limit, 1) - 1)
            found = [_strings(self.redis.hgetall(_key(str(i)))) for i in ids]
        return [_job_from_fields(f) for f in found if f]

    def active(self) -> Job | None:
        with _unavailable_as_domain_error():
            job_id = self.redis.get(ACTIVE_JOB)
        if job_id is None:
            return None
        try:
            return self.get(str(job_id))
        except JobNotFoundError:
            return None

    # -- queueing ---------------------------------------------------------------------------------

    def enqueue(self, request: RetrainRequest, celery: Celery) -> tuple[Job, bool]:
        """Queue a retrain unless one is already queued or running; returns the job and whether it
        is new. Raises ValueError for a data folder outside the data roots."""
        resolve_data_dir(self.settings, request.data_dir)
        with _unavailable_as_domain_error():
            for _ in range(3):
                job = Job(
                    job_id=uuid.uuid4().hex,
                    state=JobState.QUEUED,
                    request=request,
                    created_at=time.time(),
                )
                # The record is written before the job may take the slot: a request that finds the
                # slot taken always finds its holder's record, and never frees the slot of a job
                # still being created (which let two concurrent requests make two jobs).
                self._write(job)
                if self.redis.set(ACTIVE_JOB, job.job_id, nx=True, ex=self._active_ttl()):
                    return self._index_and_send(job, celery), True
                self.redis.delete(_key(job.job_id))
                existing = self.active()
                if existing is not None and existing.state in {JobState.QUEUED, JobState.RUNNING}:
                    return existing, False
                leftover = self.redis.get(ACTIVE_JOB)  # the slot of a job that has finished
                self._release_if(None if leftover is None else str(leftover))
        raise QueueUnavailableError("could not reserve the retrain slot; try again")

    def _index_and_send(self, job: Job, celery: Celery) -> Job:
        self._index(job)
        try:
            celery.send_task(
                RETRAIN_TASK,
                kwargs={"job_id": job.job_id},
                task_id=job.job_id,
                retry=False,
            )
        except Exception as error:
            self.finish(job.job_id, error=f"could not queue the job: {type(error).__name__}")
            raise QueueUnavailableError(
                f"the retrain queue is unavailable ({type(error).__name__})"
            ) from error
        return job

    # -- the worker's side ------------------------------------------------------------------------

    def start(self, job_id: str) -> Job:
        """Mark a delivery of the job as started; counts attempts across redeliveries."""
        with _unavailable_as_domain_error():
            attempts = self.redis.hincrby(_key(job_id), "attempts", 1)
            self.redis.hset(
                _key(job_id),
                mapping={"state": JobState.RUNNING.value, "started_at": time.time()},
            )
            # Refresh the slot: a redelivered job keeps it while it runs again.
            self.redis.set(ACTIVE_JOB, job_id, ex=self._active_ttl())
        job = self.get(job_id)
        job.attempts = int(attempts)
        return job

    def progress(self, job_id: str, stage: str, percent: float) -> None:
        with _unavailable_as_domain_error():
            self.redis.hset(_key(job_id), mapping={"stage": stage, "percent": round(percent, 1)})

    def finish(
        self, job_id: str, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        state = JobState.FAILED if error is not None else JobState.SUCCEEDED
        fields: dict[Any, Any] = {"state": state.value, "finished_at": time.time()}
        if result is not None:
            fields["result"] = json.dumps(result)
            fields.update({"stage": "done", "percent": 100.0})
        if error is not None:
            fields["error"] = error[:2000]
        with _unavailable_as_domain_error():
            self.redis.hset(_key(job_id), mapping=fields)
            self._release_if(job_id)

    # -- internals --------------------------------------------------------------------------------

    def _write(self, job: Job) -> None:
        fields: dict[Any, Any] = {
            "job_id": job.job_id,
            "state": job.state.value,
            "request": job.request.model_dump_json(),
            "created_at": job.created_at,
            "attempts": job.attempts,
        }
        pipe = self.redis.pipeline()
        pipe.hset(_key(job.job_id), mapping=fields)
        pipe.expire(_key(job.job_id), self.settings.job_retention_seconds)
        pipe.execute()

    def _index(self, job: Job) -> None:
        """List the job among the recent ones (``GET /jobs``), keeping the newest only."""
        pipe = self.redis.pipeline()
        pipe.zadd(JOBS_INDEX, {job.job_id: job.created_at})
        pipe.zremrangebyrank(JOBS_INDEX, 0, -KEPT_JOBS - 1)
        pipe.execute()

    def _release_if(self, job_id: str | None) -> None:
        """Free the retrain slot if ``job_id`` holds it (compare-and-delete, atomically)."""
        if job_id is None:
            return
        self.redis.eval(
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end "
            "return 0",
            1,
            ACTIVE_JOB,
            job_id,
        )

    def _active_ttl(self) -> int:
        # Outlives a redelivery after the visibility timeout, then frees the slot by itself.
        return 2 * self.settings.retrain_visibility_timeout


def _strings(fields: Any) -> dict[str, str]:
    """A Redis hash as text (the client decodes responses)."""
    return {str(k): str(v) for k, v in dict(fields).items()}


def _key(job_id: str) -> str:
    return f"cncwear:job:{job_id}"


def _job_from_fields(fields: dict[str, str]) -> Job:
    def number(name: str) -> float | None:
        return float(fields[name]) if name in fields else None

    return Job(
        job_id=fields["job_id"],
        state=JobState(fields["state"]),
        request=RetrainRequest.model_validate_json(fields["request"]),
        created_at=float(fields["created_at"]),
        stage=fields.get("stage"),
        percent=number("percent"),
        attempts=int(fields.get("attempts", 0)),
        started_at=number("started_at"),
        finished_at=number("finished_at"),
        result=json.loads(fields["result"]) if "result" in fields else None,
        error=fields.get("error"),
    )


@contextmanager
def _unavailable_as_domain_error() -> Iterator[None]:
    """Turns a Redis connection failure into :class:`QueueUnavailableError`."""
    try:
        yield
    except redis.RedisError as error:
        raise QueueUnavailableError(f"Redis is unavailable ({type(error).__name__})") from error
