"""What starts a retrain besides a person: a schedule, and new data.

Both go through the one de-duplicated queue (``JobStore.enqueue``): a trigger that fires while a
retrain is queued or running gets that job back instead of queueing a second one.

* Schedule: ``CNCWEAR_RETRAIN_SCHEDULE``, five cron fields (``"0 3 * * 0"``: Sundays at 03:00),
  empty for off (``cncwear.core.schedule.parse_schedule``). Celery beat (``cncwear-trainer beat``)
  fires it.
* New data: the training data folder (``CNCWEAR_DATA_DIR``, or one given) whose content hash differs
  from the hash of the data the champion was trained on (the ``cncwear.data_hash`` tag of its
  registry version). Beat checks every ``CNCWEAR_NEW_DATA_CHECK_SECONDS``; ``cncwear retrain
  --if-new-data`` checks once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from cncwear.core.choices import Budget
from cncwear.core.settings import Settings
from cncwear.data.dataset import load_dataset
from cncwear.jobs.store import Job, JobStore, RetrainRequest, resolve_data_dir
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag

logger = logging.getLogger(__name__)

NEW_DATA_REASON = "new data"


def scheduled_reason(settings: Settings) -> str:
    return f"schedule ({settings.retrain_schedule.strip()})"


def queue_scheduled_retrain(settings: Settings, celery: Celery) -> tuple[Job, bool]:
    """Queue the scheduled retrain (or get back the one queued or running)."""
    jobs = JobStore(settings)
    try:
        return jobs.enqueue(RetrainRequest(reason=scheduled_reason(settings)), celery)
    finally:
        jobs.close()


@dataclass(frozen=True)
class NewDataCheck:
    data_dir: Path
    data_hash: str
    champion_hash: str | None
    """Hash of the champion's training data; None when there is no champion (or no tag)."""
    job: Job | None = None
    created: bool = False

    @property
    def new(self) -> bool:
        return self.data_hash != self.champion_hash


def champion_data_hash(settings: Settings) -> str | None:
    champion = ModelStore(settings).champion_version()
    if champion is None:
        return None
    return champion.tags.get(Tag.DATA_HASH)


def queue_if_new_data(
    settings: Settings,
    celery: Celery,
    data_dir: Path | None = None,
    *,
    budget: Budget | None = None,
) -> NewDataCheck:
    """Queue a retrain on ``data_dir`` (default ``CNCWEAR_DATA_DIR``) with reason "new data" when
    its content differs from the champion's training data; nothing when it is the same. Raises
    ``DataError`` for an unreadable folder, ValueError for one outside the data roots."""
    folder = (data_dir or settings.data_dir).resolve()
    resolve_data_dir(settings, str(folder))  # refuse a folder outside the roots before reading it
    data_hash = load_dataset(folder).content_hash
    check = NewDataCheck(folder, data_hash, champion_data_hash(settings))
    if not check.new:
        logger.info("new-data check: %s unchanged (hash %s)", folder, data_hash)
        return check
    jobs = JobStore(settings)
    try:
        request = RetrainRequest(data_dir=str(folder), reason=NEW_DATA_REASON, budget=budget)
        job, created = jobs.enqueue(request, celery)
    finally:
        jobs.close()
    logger.info(
        "new-data check: %s has hash %s, the champion's data %s: %s job %s",
        folder, data_hash, check.champion_hash, "queued" if created else "already", job.job_id,
    )  # fmt: skip
    return NewDataCheck(folder, data_hash, check.champion_hash, job, created)
