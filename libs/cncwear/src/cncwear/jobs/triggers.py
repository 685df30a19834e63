"""What starts a retrain besides a person: a schedule, new data, and new labelled runs.

All go through the one de-duplicated queue (``JobStore.enqueue``): a trigger that fires while a
retrain is queued or running gets that job back instead of queueing a second one. All ask for
``if_new_data``: the trainer skips the job ("no new data") when, by the time it runs, there is
nothing new to learn from (:func:`check_new_data`).

* Schedule: ``CNCWEAR_RETRAIN_SCHEDULE``, five cron fields (``"0 3 * * 0"``: Sundays at 03:00),
  empty for off (``cncwear.core.schedule.parse_schedule``). Celery beat (``cncwear-trainer beat``)
  fires it.
* New data: the latest dataset version (the base data, ``CNCWEAR_DATA_DIR``, plus the accepted
  labelled runs; ``cncwear.data.runs``) differs from the one the champion was trained on (the
  ``cncwear.data_version`` tag of its registry version). Beat checks every
  ``CNCWEAR_NEW_DATA_CHECK_SECONDS``; ``cncwear retrain --if-new-data`` checks once.
* New labelled runs: ``CNCWEAR_RETRAIN_AFTER_RUNS`` accepted runs that the champion's dataset
  version does not have (:func:`queue_after_accepted_runs`, called where a run is accepted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from cncwear.core.choices import Budget
from cncwear.core.settings import Settings
from cncwear.data.runs.base import BaseData
from cncwear.data.runs.store import RunStore
from cncwear.jobs.store import Job, JobStore, RetrainRequest, resolve_data_dir
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag

logger = logging.getLogger(__name__)

NEW_DATA_REASON = "new data"
NO_NEW_DATA = "no new data"
"""The reason a job asked for ``if_new_data`` is skipped with."""


def scheduled_reason(settings: Settings) -> str:
    return f"schedule ({settings.retrain_schedule.strip()})"


def queue_scheduled_retrain(settings: Settings, celery: Celery) -> tuple[Job, bool]:
    """Queue the scheduled retrain (or get back the one queued or running)."""
    jobs = JobStore(settings)
    try:
        request = RetrainRequest(reason=scheduled_reason(settings), if_new_data=True)
        return jobs.enqueue(request, celery)
    finally:
        jobs.close()


@dataclass(frozen=True)
class Champion:
    """The champion's registry version and the dataset version it was trained on (None for a
    champion registered before dataset versions, or none at all)."""

    version: str | None
    data_version: str | None


def champion(settings: Settings) -> Champion:
    found = ModelStore(settings).champion_version()
    if found is None:
        return Champion(None, None)
    return Champion(str(found.version), found.tags.get(Tag.DATA_VERSION))


@dataclass(frozen=True)
class NewDataCheck:
    data_version: str
    """The dataset version a retrain would train on now (the latest, unless one was named)."""
    champion: Champion
    lost_to_champion: list[str]
    """Model versions trained on ``data_version`` after the champion was registered: they did not
    beat it, and a retrain on the same data would make the same model again."""
    job: Job | None = None
    created: bool = False

    @property
    def new(self) -> bool:
        return self.data_version != self.champion.data_version and not self.lost_to_champion

    def explain(self) -> str:
        """Why a retrain would (not) learn anything new, in a sentence."""
        if self.data_version == self.champion.data_version:
            return (
                f"dataset version {self.data_version} is the champion's "
                f"(model version {self.champion.version})"
            )
        if self.lost_to_champion:
            return (
                f"dataset version {self.data_version} was already trained on by model version "
                f"{', '.join(self.lost_to_champion)}, which did not beat the champion "
                f"(model version {self.champion.version})"
            )
        was = self.champion.data_version or "unknown"
        return f"dataset version {self.data_version} is not the champion's ({was})"


def check_new_data(
    settings: Settings, data_dir: Path | None = None, *, data_version: str | None = None
) -> NewDataCheck:
    """Whether a retrain on ``data_version`` (default: the latest dataset version, on the base
    data in ``data_dir`` or ``CNCWEAR_DATA_DIR``) would learn from data the champion has not seen.
    Reading the latest version makes it if the accepted runs or the base changed."""
    if data_version is None:
        base = BaseData.load(settings, data_dir)
        data_version = RunStore(settings).current_version(base).id
    else:
        data_version = RunStore(settings).version(data_version).id  # an unknown one is refused
    holder = champion(settings)
    lost: list[str] = []
    if holder.version is not None and data_version != holder.data_version:
        trained = ModelStore(settings).versions_trained_on(data_version)
        lost = sorted((v for v in trained if int(v) > int(holder.version)), key=int)
    return NewDataCheck(data_version, holder, lost)


def queue_if_new_data(
    settings: Settings,
    celery: Celery,
    data_dir: Path | None = None,
    *,
    budget: Budget | None = None,
) -> NewDataCheck:
    """Queue a retrain with reason "new data" when the latest dataset version (on the base data in
    ``data_dir``, default ``CNCWEAR_DATA_DIR``) is new to the champion (:func:`check_new_data`);
    nothing otherwise. Raises ``DataError`` for an unreadable folder, ValueError for one outside
    the data roots."""
    folder = (data_dir or settings.data_dir).resolve()
    resolve_data_dir(settings, str(folder))  # refuse a folder outside the roots before reading it
    check = check_new_data(settings, folder)
    if not check.new:
        logger.info("new-data check: unchanged: %s", check.explain())
        return check
    jobs = JobStore(settings)
    try:
        request = RetrainRequest(
            data_dir=str(folder), reason=NEW_DATA_REASON, budget=budget, if_new_data=True
        )
        job, created = jobs.enqueue(request, celery)
    finally:
        jobs.close()
    logger.info(
        "new-data check: %s: %s job %s",
        check.explain(), "queued" if created else "already", job.job_id,
    )  # fmt: skip
    return NewDataCheck(check.data_version, check.champion, check.lost_to_champion, job, created)


def new_runs_reason(count: int) -> str:
    return f"{count} new labelled run{'' if count == 1 else 's'}"


def queue_after_accepted_runs(settings: Settings, celery: Celery, store: RunStore) -> Job | None:
    """After a run is accepted: queue a retrain (or join the one queued or running) once at least
    ``CNCWEAR_RETRAIN_AFTER_RUNS`` accepted runs are missing from the champion's dataset version;
    None when fewer are, or the setting is 0."""
    if settings.retrain_after_runs <= 0:
        return None
    new = store.accepted_since(champion(settings).data_version)
    if len(new) < settings.retrain_after_runs:
        return None
    jobs = JobStore(settings)
    try:
        request = RetrainRequest(reason=new_runs_reason(len(new)), if_new_data=True)
        job, created = jobs.enqueue(request, celery)
    finally:
        jobs.close()
    logger.info(
        "%d accepted run(s) new to the champion: %s job %s",
        len(new), "queued" if created else "already", job.job_id,
    )  # fmt: skip
    return job
