"""Redis SIGKILLed and restarted under the trainer (a private redis-server with its append-only
file, as production would run it): a job queued before the crash is not lost, and a worker that was
connected when Redis died reconnects by itself and runs the next job.

(The API's side, /retrain 503 and /predict serving while Redis is down, is in
tests/trainer/test_retrain_over_http.py.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cncwear.core.choices import Budget, CandidateName
from cncwear.core.settings import Settings
from cncwear.jobs.queue import make_celery
from cncwear.jobs.store import JobState, JobStore, RetrainRequest
from cncwear.registry.store import ModelStore
from tests.trainer.conftest import Worker, start_worker  # noqa: F401  (fixture)

from .conftest import PrivateRedis, wait_for

BASELINE = RetrainRequest(reason="redis restart", candidates=[CandidateName.BASELINE])


def finished(jobs: JobStore, job_id: str) -> bool:
    try:
        return jobs.get(job_id).state in {JobState.SUCCEEDED, JobState.FAILED}
    except Exception:  # Redis still coming back
        return False


def test_jobs_survive_a_redis_crash_and_the_worker_reconnects_by_itself(
    private_redis: Callable[..., PrivateRedis],
    start_worker: Callable[[Settings], Worker],  # noqa: F811
    tmp_path: Path,
) -> None:
    server = private_redis(persist=True)
    settings = Settings(
        home=tmp_path / "home",
        budget=Budget.FAST,
        n_jobs=1,
        redis_url=server.url,
        retrain_time_limit=60,
        retrain_visibility_timeout=70,
    )
    jobs = JobStore(settings)
    queued, _ = jobs.enqueue(BASELINE, make_celery(settings))
    server.kill()
    server.start()  # same port, same append-only file
    assert JobStore(settings).get(queued.job_id).state is JobState.QUEUED

    start_worker(settings)
    wait_for(lambda: finished(jobs, queued.job_id), timeout=180, what="the job queued before")
    first = jobs.get(queued.job_id)
    assert first.state is JobState.SUCCEEDED, first.error

    server.kill()  # the worker is connected and idle
    server.start()
    wait_for(
        lambda: _enqueue_when_possible(settings),
        timeout=60,
        what="Redis to accept a job again",
    )
    second = JobStore(settings).recent(1)[0]
    assert second.job_id != first.job_id
    wait_for(lambda: finished(jobs, second.job_id), timeout=180, what="the job after the restart")
    done = jobs.get(second.job_id)
    assert done.state is JobState.SUCCEEDED, done.error
    versions = ModelStore(settings).client.search_model_versions(f"name = '{settings.model_name}'")
    assert len(versions) == 2


def _enqueue_when_possible(settings: Settings) -> bool:
    try:
        _, created = JobStore(settings).enqueue(BASELINE, make_celery(settings))
    except Exception:
        return False
    return created
