"""The labelled runs of this process: the shared store (one per process, its engine pooled), the
base data runs are checked against, and the periodic expiry of runs nobody labelled.

Nothing here is kept in the replica: rows, labels, dataset versions and live performance are in
the store every replica and worker shares (SQLite under ``CNCWEAR_HOME`` on one machine,
PostgreSQL scaled out). The store and the base data are made on first use (and warmed in the
background at startup), so the API binds and answers at once; every call here blocks (database
I/O): the routes call it from the thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from celery import Celery

from cncwear.data.runs.base import BaseData
from cncwear.data.runs.records import RunRecord, StoreStats
from cncwear.data.runs.store import RunStore
from cncwear.jobs.triggers import queue_after_accepted_runs
from cncwear_api.core.settings import ApiSettings

logger = logging.getLogger(__name__)

MIN_EXPIRY_INTERVAL_SECONDS = 0.5
MAX_EXPIRY_INTERVAL_SECONDS = 300.0


class Runs:
    """The store and base data of the labelled runs, made once per process on first use."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._store: RunStore | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> RunStore:
        store = self._store
        if store is None:
            with self._lock:
                if self._store is None:
                    self._store = RunStore(self.settings)
                store = self._store
        return store

    def base(self) -> BaseData:
        """The base data (``CNCWEAR_DATA_DIR``, else the bundled experiments): read and checked
        once, then cached by the library until a file of the folder changes."""
        return BaseData.load(self.settings)

    def stats(self) -> StoreStats:
        return self.store.stats()

    def expire(self) -> int:
        return self.store.expire()

    def warm(self) -> None:
        """Make the store and read the base data now, so the first request finds them ready."""
        try:
            self.store.stats()
            self.base()
        except Exception as error:  # the first request that needs them will say why
            logger.warning("labelled runs not ready yet: %s", error)

    def expiry_interval(self) -> float:
        """A tenth of the TTL, within bounds: a run is dropped at most 10% later than due."""
        tenth = self.settings.run_ttl_seconds / 10
        return min(MAX_EXPIRY_INTERVAL_SECONDS, max(MIN_EXPIRY_INTERVAL_SECONDS, tenth))

    def accepted(self, run: str, celery: Celery) -> RunRecord:
        """After a run was accepted: the dataset version holding it, then the retrain trigger
        (``CNCWEAR_RETRAIN_AFTER_RUNS``). The run's record, with that version. Neither may fail
        the label, stored by then: a failure is logged."""
        self.new_version()
        if self.settings.retrain_after_runs > 0:
            try:
                queued = queue_after_accepted_runs(self.settings, celery, self.store)
            except Exception as error:
                logger.error("could not check for a retrain after accepted runs: %s", error)
            else:
                if queued is not None:
                    logger.info("retrain job %s after accepted runs", queued.job_id)
        return self.store.get(run)

    def new_version(self) -> None:
        """The dataset version of the base data and the runs accepted now, made if it is new (a
        run was accepted or withdrawn): ``GET /data/versions`` shows it at once."""
        try:
            self.store.current_version(self.base())
        except Exception as error:  # the next retrain makes it, if this could not
            logger.error("could not make the current dataset version: %s", error)


CHECKPOINT_INTERVAL_SECONDS = 1.0


async def checkpoint_runs(runs: Runs) -> None:
    """Every second, the embedded store's write-ahead log copied into its database off the request
    path (``RunStore.checkpoint``; PostgreSQL needs none)."""
    if runs.settings.data_store_uri().startswith("sqlite"):
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_SECONDS)
            try:
                await asyncio.to_thread(runs.store.checkpoint)
            except Exception as error:  # the next pass, or a commit, will checkpoint
                logger.warning("checkpoint of the runs' store failed: %s", error)


async def expire_runs(runs: Runs) -> None:
    """Drop the runs still collecting after ``CNCWEAR_RUN_TTL_SECONDS`` without a label, every
    :meth:`Runs.expiry_interval` (each replica; the store counts each run once)."""
    interval = runs.expiry_interval()
    while True:
        await asyncio.sleep(interval)
        try:
            expired = await asyncio.to_thread(runs.expire)
        except Exception:  # a failed pass must not stop the next ones
            logger.exception("expiring unlabelled runs failed")
            continue
        if expired:
            logger.info(
                "dropped %d run(s) left unlabelled for %d s", expired, runs.settings.run_ttl_seconds
            )
