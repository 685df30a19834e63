"""Retrain jobs over Redis, run by real Celery worker processes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from mlflow.tracking import MlflowClient

from cncwear.core.choices import CandidateName
from cncwear.core.errors import QueueUnavailableError
from cncwear.core.settings import Settings
from cncwear.jobs.queue import RETRAIN_QUEUE, make_celery
from cncwear.jobs.store import JobState, JobStore, RetrainRequest
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag

from .conftest import Worker, wait_for

TREE_ONLY = RetrainRequest(reason="test", candidates=[CandidateName.DECISION_TREE])


def finished(jobs: JobStore, job_id: str) -> bool:
    return jobs.get(job_id).state in {JobState.SUCCEEDED, JobState.FAILED}


def test_a_queued_retrain_reports_progress_registers_and_promotes(
    queue_settings: Settings, start_worker: Callable[[Settings], Worker]
) -> None:
    start_worker(queue_settings)
    jobs = JobStore(queue_settings)
    job, created = jobs.enqueue(TREE_ONLY, make_celery(queue_settings))
    assert created and job.state is JobState.QUEUED
    stages: set[str] = set()

    def done() -> bool:
        current = jobs.get(job.job_id)
        stages.add(current.stage or "")
        return current.state in {JobState.SUCCEEDED, JobState.FAILED}

    wait_for(done, timeout=180, what="the retrain")
    result = jobs.get(job.job_id)
    assert result.state is JobState.SUCCEEDED, result.error
    assert "training decision_tree" in stages
    assert result.result is not None
    assert result.result["promoted"] is True and result.result["version"] == "1"
    assert result.result["candidates"][0]["holdout"]["accuracy"] > 0.5
    champion = ModelStore(queue_settings).champion_version()
    assert champion is not None and str(champion.version) == "1"
    assert jobs.active() is None


def test_two_requests_at_once_make_one_job(queue_settings: Settings) -> None:
    jobs, celery = JobStore(queue_settings), make_celery(queue_settings)
    barrier = threading.Barrier(6)
    answers: list[tuple[str, bool]] = []

    def request() -> None:
        barrier.wait()
        job, created = JobStore(queue_settings).enqueue(TREE_ONLY, celery)
        answers.append((job.job_id, created))

    threads = [threading.Thread(target=request) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({job_id for job_id, _ in answers}) == 1
    assert sum(created for _, created in answers) == 1
    assert redis.Redis.from_url(queue_settings.redis_url).llen(RETRAIN_QUEUE) == 1
    assert [j.job_id for j in jobs.recent()] == [answers[0][0]]


def test_a_worker_killed_mid_job_leaves_it_to_another_which_registers_once(
    queue_settings: Settings, start_worker: Callable[[Settings], Worker]
) -> None:
    first = start_worker(queue_settings)
    jobs = JobStore(queue_settings)
    job, _ = jobs.enqueue(TREE_ONLY, make_celery(queue_settings))
    wait_for(
        lambda: (jobs.get(job.job_id).stage or "").startswith("training"),
        timeout=120,
        what="training to start",
    )
    first.kill()
    assert jobs.get(job.job_id).state is JobState.RUNNING
    assert ModelStore(queue_settings).champion_version() is None
    start_worker(queue_settings)
    wait_for(lambda: finished(jobs, job.job_id), timeout=240, what="the redelivered job")
    done = jobs.get(job.job_id)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.attempts == 2
    client = MlflowClient(
        tracking_uri=queue_settings.tracking_uri(), registry_uri=queue_settings.tracking_uri()
    )
    versions = client.search_model_versions(f"name = '{queue_settings.model_name}'")
    assert [v.tags[Tag.JOB_ID] for v in versions] == [job.job_id]
    champion = ModelStore(queue_settings).champion_version()
    assert champion is not None and str(champion.version) == str(versions[0].version)


def test_a_failing_retrain_marks_the_job_failed_and_frees_the_slot(
    queue_settings: Settings, start_worker: Callable[[Settings], Worker]
) -> None:
    empty = queue_settings.home / "data" / "empty"
    empty.mkdir(parents=True)
    start_worker(queue_settings)
    jobs, celery = JobStore(queue_settings), make_celery(queue_settings)
    job, _ = jobs.enqueue(RetrainRequest(data_dir=str(empty), reason="bad data"), celery)
    wait_for(lambda: finished(jobs, job.job_id), timeout=120, what="the job to fail")
    failed = jobs.get(job.job_id)
    assert failed.state is JobState.FAILED
    assert failed.error is not None and "train.csv" in failed.error
    again, created = jobs.enqueue(TREE_ONLY, celery)
    assert created and again.job_id != job.job_id


def test_a_data_folder_outside_the_data_roots_is_refused(queue_settings: Settings) -> None:
    jobs = JobStore(queue_settings)
    with pytest.raises(ValueError, match="data root"):
        jobs.enqueue(RetrainRequest(data_dir="/etc"), make_celery(queue_settings))
    with pytest.raises(ValueError, match="data root"):
        jobs.enqueue(
            RetrainRequest(data_dir=str(queue_settings.home / "data" / ".." / "..")),
            make_celery(queue_settings),
        )
    assert jobs.active() is None


def test_without_redis_queueing_fails_fast_with_a_clear_error(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(QueueUnavailableError, match="Redis is unavailable"):
        JobStore(settings).enqueue(TREE_ONLY, make_celery(settings))
