"""Retrains started by a schedule and by new data: real Celery beat and worker processes on a real
Redis, through the one de-duplicated queue.

The workers here consume only the trigger queue, so the retrain a trigger queues stays queued where
the test can count it (and no training runs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import redis
from pydantic import ValidationError

from cncwear.core.schedule import parse_schedule
from cncwear.core.settings import BUNDLED_DATA_DIR, Settings
from cncwear.jobs.queue import RETRAIN_QUEUE, TRIGGER_QUEUE, make_celery
from cncwear.jobs.store import JobState, JobStore, RetrainRequest
from cncwear.jobs.triggers import NEW_DATA_REASON, queue_if_new_data
from cncwear.training.retrain import retrain
from cncwear_trainer.worker import beat_schedule

from .conftest import Worker, wait_for, worker_environment

TRIGGERS_ONLY = f"--queues={TRIGGER_QUEUE}"
CLI = Path(sys.executable).parent / "cncwear"


def queued_retrains(settings: Settings) -> int:
    return int(redis.Redis.from_url(settings.redis_url).llen(RETRAIN_QUEUE))


def logged(process: Worker, text: str) -> int:
    return process.log.read_text(errors="replace").count(text)


def test_the_schedule_is_five_cron_fields_and_off_when_empty(tmp_path: Path) -> None:
    assert Settings.model_fields["retrain_schedule"].default == ""
    assert Settings.model_fields["new_data_check_seconds"].default == 0
    off = Settings(home=tmp_path, retrain_schedule="", new_data_check_seconds=0)
    assert parse_schedule(off.retrain_schedule) is None and not off.triggers_enabled()
    assert beat_schedule(off) == {}
    weekly = Settings(home=tmp_path, retrain_schedule="0 3 * * 0", new_data_check_seconds=0)
    schedule = parse_schedule(weekly.retrain_schedule)
    assert schedule is not None
    assert (schedule.minute, schedule.hour, schedule.day_of_week) == ({0}, {3}, {0})
    assert schedule.day_of_month == set(range(1, 32))
    entries = beat_schedule(weekly)
    assert list(entries) == ["scheduled retrain"]
    assert entries["scheduled retrain"]["schedule"] == schedule
    with pytest.raises(ValidationError, match="five cron fields"):
        Settings(home=tmp_path, retrain_schedule="0 3 * *")
    with pytest.raises(ValidationError, match="not a valid cron schedule"):
        Settings(home=tmp_path, retrain_schedule="61 3 * * 0")


def test_a_due_schedule_queues_exactly_one_retrain(
    queue_settings: Settings,
    start_worker: Callable[..., Worker],
    start_beat: Callable[[Settings], Worker],
) -> None:
    settings = queue_settings.model_copy(update={"retrain_schedule": "* * * * *"})  # every minute
    worker = start_worker(settings, TRIGGERS_ONLY)
    start_beat(settings)
    jobs = JobStore(settings)
    wait_for(jobs.recent, timeout=90, what="the schedule to fire")
    wait_for(lambda: logged(worker, "scheduled retrain: queued"), timeout=30, what="the log")
    (job,) = jobs.recent()
    assert job.state is JobState.QUEUED
    assert job.request.reason == "schedule (* * * * *)"
    assert queued_retrains(settings) == 1


def with_one_experiment_altered(folder: Path) -> None:
    """Experiment 1 re-measured: its spindle readings a little higher, the file no longer
    compressed (the same rows compressed or not hash the same, so this is what changes it)."""
    source = folder / "experiment_01.csv.xz"
    rows = pd.read_csv(source)
    rows["S1_OutputPower"] += 0.001
    rows.to_csv(folder / "experiment_01.csv", index=False)
    source.unlink()


def test_new_data_queues_one_retrain_and_unchanged_data_none(
    queue_settings: Settings,
    start_worker: Callable[..., Worker],
    start_beat: Callable[[Settings], Worker],
) -> None:
    champion = retrain(queue_settings, candidates=["baseline"], reason="trained on the bundle")
    assert champion.decision.promoted
    copy = queue_settings.home / "data" / "incoming"
    shutil.copytree(BUNDLED_DATA_DIR, copy)  # the same data in another folder: not new
    settings = queue_settings.model_copy(update={"data_dir": copy, "new_data_check_seconds": 1.0})
    jobs = JobStore(settings)

    on_demand = subprocess.run(
        [str(CLI), "retrain", "--if-new-data"],
        env=worker_environment(settings),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "no new data" in on_demand.stderr and "nothing queued" in on_demand.stderr

    worker = start_worker(settings, TRIGGERS_ONLY)
    start_beat(settings)
    wait_for(lambda: logged(worker, "unchanged") >= 2, timeout=120, what="two unchanged checks")
    assert jobs.recent() == [] and queued_retrains(settings) == 0

    with_one_experiment_altered(copy)
    wait_for(jobs.recent, timeout=120, what="a retrain for the new data")
    wait_for(lambda: logged(worker, ": already job") >= 2, timeout=120, what="two more checks")
    (job,) = jobs.recent()
    assert job.state is JobState.QUEUED
    assert job.request.reason == NEW_DATA_REASON
    assert job.request.data_dir == str(copy.resolve())
    assert queued_retrains(settings) == 1


def test_new_data_while_a_retrain_is_queued_gets_that_job_back(queue_settings: Settings) -> None:
    celery = make_celery(queue_settings)
    jobs = JobStore(queue_settings)
    queued, created = jobs.enqueue(RetrainRequest(reason="on demand"), celery)
    assert created
    check = queue_if_new_data(queue_settings, celery)  # no champion yet: any data is new
    assert check.new and check.champion.data_version is None
    assert check.job is not None and check.job.job_id == queued.job_id
    assert not check.created
    assert [j.job_id for j in jobs.recent()] == [queued.job_id]
    assert queued_retrains(queue_settings) == 1
