"""The retrain task. Thin by design: it reads the job, calls :func:`cncwear.training.retrain` and
reports progress and the outcome in the job store, where every API replica can read them.

A job asked for ``if_new_data`` (the automatic triggers) first checks that there is something new
to learn (:func:`cncwear.jobs.triggers.check_new_data`); when there is not, it succeeds without
training, its result saying ``skipped`` with the reason "no new data"."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from cncwear.core.choices import DEFAULT_CANDIDATES
from cncwear.core.errors import CncwearError
from cncwear.core.settings import Settings
from cncwear.data.runs.store import RunStore
from cncwear.jobs.queue import NEW_DATA_TASK, RETRAIN_TASK, SCHEDULED_RETRAIN_TASK
from cncwear.jobs.store import Job, JobStore, resolve_data_dir
from cncwear.jobs.triggers import (
    NO_NEW_DATA,
    NewDataCheck,
    check_new_data,
    queue_after_accepted_runs,
    queue_if_new_data,
    queue_scheduled_retrain,
)
from cncwear.registry.store import ModelStore
from cncwear.training.retrain import RetrainReport, retrain
from cncwear_trainer.metrics import StageTimer, record_failure, record_skipped, record_success
from cncwear_trainer.settings import TrainerSettings

logger = logging.getLogger(__name__)


def register_tasks(app: Celery, settings: TrainerSettings) -> None:
    @app.task(name=RETRAIN_TASK)  # type: ignore[untyped-decorator]
    def run_retrain(job_id: str) -> None:
        run_job(settings, job_id, app)

    # Beat's triggers: they only queue a retrain (through the de-duplicated queue) when due.
    @app.task(name=SCHEDULED_RETRAIN_TASK, acks_late=False)  # type: ignore[untyped-decorator]
    def scheduled_retrain() -> str:
        job, created = queue_scheduled_retrain(settings, app)
        logger.info("scheduled retrain: %s job %s", "queued" if created else "already", job.job_id)
        return job.job_id

    @app.task(name=NEW_DATA_TASK, acks_late=False)  # type: ignore[untyped-decorator]
    def check_new_data() -> str | None:
        check = queue_if_new_data(settings, app)
        return None if check.job is None else check.job.job_id


def run_job(settings: TrainerSettings, job_id: str, celery: Celery) -> None:
    """Run one delivery of a retrain job. Safe to run again for the same job after a crash: the
    retrain registers at most one model version per job."""
    jobs = JobStore(settings)
    timer = StageTimer()
    started = time.monotonic()
    try:
        job = jobs.start(job_id)
        if job.attempts > settings.retrain_max_attempts:
            jobs.finish(job_id, error=f"gave up after {job.attempts - 1} interrupted attempts")
            record_failure("gave_up", None)
            return
        logger.info("retrain %s: attempt %d, reason %r", job_id, job.attempts, job.request.reason)
        try:
            check = _check_new_data(settings, job, jobs)
            if check is not None and not check.new:
                jobs.finish(job_id, result=skipped(check))
                record_skipped(time.monotonic() - started)
                logger.info("retrain %s skipped: %s", job_id, check.explain())
                return
            data_version = None if check is None else check.data_version
            report = _retrain(settings, job, jobs, timer, data_version)
        except SoftTimeLimitExceeded:
            jobs.finish(job_id, error=f"time limit of {settings.retrain_time_limit} s exceeded")
            record_failure("time_limit", time.monotonic() - started)
            return
        except (CncwearError, ValueError) as error:
            jobs.finish(job_id, error=f"{type(error).__name__}: {error}")
            record_failure("error", time.monotonic() - started)
            return
        except Exception as error:
            logger.exception("retrain %s failed", job_id)
            jobs.finish(job_id, error=f"unexpected {type(error).__name__}: {error}")
            record_failure("unexpected", time.monotonic() - started)
            return
        jobs.finish(job_id, result=summarise(report))
        record_success(report.decision.outcome, time.monotonic() - started)
        logger.info("retrain %s: %s", job_id, report.decision.reason)
        queue_for_runs_accepted_meanwhile(settings, report, celery)
    finally:
        timer.close()
        jobs.close()


def queue_for_runs_accepted_meanwhile(
    settings: Settings, report: RetrainReport, celery: Celery
) -> None:
    """A run accepted while this retrain ran found it queued and joined it, but the retrain learnt
    from the dataset version fixed at its start: the after-runs trigger looks again now, so that
    the run is not left waiting for the next one."""
    try:
        store = RunStore(settings)
        if store.accepted_since(report.data_version):
            queue_after_accepted_runs(settings, celery, store)
    except Exception as error:  # the next accepted run, the beat check or the schedule will
        logger.error("could not queue a retrain for runs accepted meanwhile: %s", error)


def _check_new_data(settings: Settings, job: Job, jobs: JobStore) -> NewDataCheck | None:
    """For a job asked for ``if_new_data``: whether its data is new to the champion. None when
    there is nothing to check: not asked, or a redelivered job that already registered a model (it
    did train; the retrain finishes it with that model)."""
    request = job.request
    if not request.if_new_data or ModelStore(settings).versions_for_job(job.job_id):
        return None
    jobs.progress(job.job_id, "checking for new data", 0.0)
    return check_new_data(
        settings,
        resolve_data_dir(settings, request.data_dir),
        data_version=request.data_version,
    )


def _retrain(
    settings: Settings, job: Job, jobs: JobStore, timer: StageTimer, data_version: str | None
) -> RetrainReport:
    """The retrain of a job, on ``data_version`` when the new-data check fixed it (the version it
    checked, so that the check and the training agree), else the request's."""
    request = job.request
    overrides: dict[str, Any] = {}
    if request.automl_engine is not None:
        overrides["automl_engine"] = request.automl_engine
    job_settings = settings.model_copy(update=overrides)
    return retrain(
        job_settings,
        data_version=data_version or request.data_version,
        budget=request.budget,
        candidates=[c.value for c in request.candidates or DEFAULT_CANDIDATES],
        data_dir=resolve_data_dir(settings, request.data_dir),
        reason=request.reason,
        job_id=job.job_id,
        progress=lambda stage, percent: _progress(jobs, job.job_id, timer, stage, percent),
    )


def _progress(jobs: JobStore, job_id: str, timer: StageTimer, stage: str, percent: float) -> None:
    timer.enter(stage)
    jobs.progress(job_id, stage, percent)


def summarise(report: RetrainReport) -> dict[str, Any]:
    """What a job reports when it succeeds: the candidates' figures and the promotion decision."""
    return {
        "run_id": report.run_id,
        "seconds": round(report.seconds, 1),
        "budget": report.budget.value,
        "data_hash": report.data_hash,
        "data_version": report.data_version,
        "data_runs": len(report.data_runs),
        "holdout_experiments": report.split.holdout_experiments,
        "candidates": [
            {
                "name": c.name,
                "error": c.error,
                "cv_grouped_accuracy": c.cv_accuracy,
                "holdout": None if c.holdout is None else c.holdout.metrics(),
                "experiments_right": None if c.holdout is None else c.holdout.experiments_right,
                "leaky_row_split_accuracy": c.leaky_accuracy,
                "fit_seconds": round(c.fit_seconds, 1),
            }
            for c in report.candidates
        ],
        "winner": report.winner,
        "version": report.version,
        "promoted": report.decision.promoted,
        "challenger": report.decision.challenger,
        "decision": report.decision.reason,
        "warnings": report.warnings,
    }


def skipped(check: NewDataCheck) -> dict[str, Any]:
    """What a job skipped for want of new data reports (``GET /jobs``): ``skipped`` and the reason
    "no new data", with the dataset version and the champion it compared. It also carries the keys
    a finished retrain's result has (no candidates, the champion's version, not promoted), so that
    readers of those (the dashboard, ``cncwear retrain --wait``) keep working."""
    return {
        "skipped": True,
        "reason": NO_NEW_DATA,
        "detail": check.explain(),
        "data_version": check.data_version,
        "champion_version": check.champion.version,
        "champion_data_version": check.champion.data_version,
        "candidates": [],
        "winner": None,
        "version": check.champion.version,
        "promoted": False,
        "challenger": False,
        "decision": f"skipped: {NO_NEW_DATA} ({check.explain()})",
        "warnings": [],
    }
