"""``/retrain`` and ``/jobs``: retrain jobs as the API shows them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from cncwear.jobs.store import Job


class RetrainAccepted(BaseModel):
    job_id: str
    state: str = Field(description="queued, running, succeeded or failed")
    created: bool = Field(description="False when a retrain was already queued or running")


class JobPublic(BaseModel):
    job_id: str
    state: str = Field(description="queued, running, succeeded or failed")
    stage: str | None = Field(default=None, description="What a running job is doing")
    percent: float | None = None
    attempts: int = Field(description="Deliveries so far (more than one after a worker died)")
    request: dict[str, Any]
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = Field(
        default=None, description="Candidates' metrics and the promotion decision, on success"
    )
    error: str | None = None

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        return cls.model_validate(job.as_dict())
