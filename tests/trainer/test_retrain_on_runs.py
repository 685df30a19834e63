"""Retrains through a real worker learn from the accepted labelled runs: an accepted run queues a
retrain that uses it, a withdrawn one is left out, and a triggered retrain with nothing new to learn
is skipped ("no new data")."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import redis
from mlflow.tracking import MlflowClient

from cncwear.core.choices import CandidateName
from cncwear.data.runs.base import BaseData
from cncwear.data.runs.ids import RunState
from cncwear.data.runs.store import RunStore
from cncwear.jobs.queue import RETRAIN_QUEUE, make_celery
from cncwear.jobs.store import Job, JobState, JobStore, RetrainRequest
from cncwear.jobs.triggers import NO_NEW_DATA, queue_after_accepted_runs
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from cncwear.training.retrain import RetrainReport
from cncwear_trainer.settings import TrainerSettings
from cncwear_trainer.tasks import queue_for_runs_accepted_meanwhile
from tests.cncwear.runs_helpers import LEFT_OUT, all_but, base_folder, upload_experiment

from .conftest import Worker, wait_for

TREE = [CandidateName.DECISION_TREE]
RUN = "mill-3/2026-12-01/job-1842"


def run_to_end(jobs: JobStore, job: Job) -> Job:
    wait_for(
        lambda: jobs.get(job.job_id).state in {JobState.SUCCEEDED, JobState.FAILED},
        timeout=300,
        what=f"job {job.job_id} ({job.request.reason})",
    )
    done = jobs.get(job.job_id)
    assert done.state is JobState.SUCCEEDED, done.error
    assert done.result is not None
    return done


def enqueue(settings: TrainerSettings, request: RetrainRequest) -> Job:
    job, created = JobStore(settings).enqueue(request, make_celery(settings))
    assert created
    return job


def dataset_input_runs(settings: TrainerSettings, run_id: str) -> tuple[str, list[str]]:
    """The digest of a retrain run's dataset input and the labelled runs its source lists."""
    client = MlflowClient(tracking_uri=settings.tracking_uri())
    (dataset_input,) = client.get_run(run_id).inputs.dataset_inputs
    return dataset_input.dataset.digest, json.loads(dataset_input.dataset.source)["runs"]


def test_accepted_runs_queue_a_retrain_that_uses_them_and_a_withdrawn_run_is_left_out(
    queue_settings: TrainerSettings,
    tmp_path: Path,
    start_worker: Callable[[TrainerSettings], Worker],
) -> None:
    base = base_folder(tmp_path / "base", all_but(*LEFT_OUT))
    settings = queue_settings.model_copy(
        update={
            "data_dir": base,
            "retrain_after_runs": 1,
            # Four retrains one after the other on a shared machine: time enough for each.
            "retrain_time_limit": 300,
            "retrain_visibility_timeout": 400,
        }
    )
    start_worker(settings)
    jobs, store, models = JobStore(settings), RunStore(settings), ModelStore(settings)
    base_data = BaseData.load(settings)

    # A champion on the base data alone.
    first = run_to_end(jobs, enqueue(settings, RetrainRequest(reason="first", candidates=TREE)))
    assert first.result is not None and first.result["promoted"] is True
    base_only = store.current_version(base_data)
    assert first.result["data_version"] == base_only.id and base_only.runs == []

    # A triggered retrain (drift, say) with nothing new: skipped, no model registered.
    drift = RetrainRequest(reason="drift: 40% of features", candidates=TREE, if_new_data=True)
    skipped = run_to_end(jobs, enqueue(settings, drift))
    assert skipped.result is not None
    assert skipped.result["skipped"] is True and skipped.result["reason"] == NO_NEW_DATA
    assert skipped.result["data_version"] == base_only.id
    assert models.versions_trained_on(base_only.id) == ["1"]

    # One accepted run: a retrain is queued (if new data), and it trains on the run.
    assert upload_experiment(settings, RUN, LEFT_OUT[1]).state is RunState.ACCEPTED
    queued = queue_after_accepted_runs(settings, make_celery(settings), store)
    assert queued is not None and queued.request.reason == "1 new labelled run"
    assert queued.request.if_new_data
    trained = run_to_end(jobs, queued)
    assert trained.result is not None and not trained.result.get("skipped")
    with_run = store.current_version(base_data)
    assert [r.run for r in with_run.runs] == [RUN]
    assert trained.result["data_version"] == with_run.id
    digest, runs = dataset_input_runs(settings, trained.result["run_id"])
    assert (digest, runs) == (with_run.id, [RUN])
    version = trained.result["version"]
    assert models.version_tags(version)[Tag.DATA_VERSION] == with_run.id
    assert with_run.id in store.get(RUN).dataset_versions

    # Withdrawn: the next dataset version leaves it out, and so does the retrain after.
    assert store.withdraw(RUN).state is RunState.WITHDRAWN
    without = store.current_version(base_data)
    assert without.id != with_run.id and RUN not in [r.run for r in without.runs]
    after = run_to_end(jobs, enqueue(settings, RetrainRequest(reason="after", candidates=TREE)))
    assert after.result is not None and after.result["data_version"] == without.id
    digest, runs = dataset_input_runs(settings, after.result["run_id"])
    assert digest == without.id and RUN not in runs
    assert models.version_tags(after.result["version"])[Tag.DATA_VERSION] == without.id


def test_accepted_runs_queue_one_retrain_once_there_are_enough(
    queue_settings: TrainerSettings, tmp_path: Path
) -> None:
    base = base_folder(tmp_path / "base", all_but(*LEFT_OUT))
    settings = queue_settings.model_copy(update={"data_dir": base, "retrain_after_runs": 2})
    store, celery = RunStore(settings), make_celery(settings)
    assert upload_experiment(settings, "mill-1/job-17", LEFT_OUT[0]).state is RunState.ACCEPTED
    assert queue_after_accepted_runs(settings, celery, store) is None  # 1 of 2
    assert upload_experiment(settings, "mill-1/job-18", LEFT_OUT[1]).state is RunState.ACCEPTED
    job = queue_after_accepted_runs(settings, celery, store)
    assert job is not None and job.state is JobState.QUEUED
    assert job.request.reason == "2 new labelled runs" and job.request.if_new_data
    again = queue_after_accepted_runs(settings, celery, store)  # the same job, not a second
    assert again is not None and again.job_id == job.job_id
    assert redis.Redis.from_url(settings.redis_url).llen(RETRAIN_QUEUE) == 1
    off = settings.model_copy(update={"retrain_after_runs": 0})
    assert queue_after_accepted_runs(off, celery, store) is None


def test_a_run_accepted_while_a_retrain_ran_gets_the_next_retrain_when_it_ends(
    queue_settings: TrainerSettings, tmp_path: Path
) -> None:
    """The run joined the running job (one at a time), which trained on the version fixed at its
    start; when the job ends, the worker queues the next retrain for the run."""
    base = base_folder(tmp_path / "base", all_but(*LEFT_OUT))
    settings = queue_settings.model_copy(update={"data_dir": base, "retrain_after_runs": 1})
    store, celery = RunStore(settings), make_celery(settings)
    trained_on = store.current_version(BaseData.load(settings))  # what the finished retrain had
    assert upload_experiment(settings, RUN, LEFT_OUT[0]).state is RunState.ACCEPTED
    with_run = store.current_version(BaseData.load(settings))

    queue_for_runs_accepted_meanwhile(settings, finished(with_run.id), celery)
    assert JobStore(settings).recent() == []  # the run was in it: nothing to do
    queue_for_runs_accepted_meanwhile(settings, finished(trained_on.id), celery)
    (job,) = JobStore(settings).recent()
    assert (job.state, job.request.reason) == (JobState.QUEUED, "1 new labelled run")


def finished(data_version: str) -> RetrainReport:
    """What the worker knows of a finished retrain, as far as this trigger reads it."""
    return cast(RetrainReport, SimpleNamespace(data_version=data_version))
