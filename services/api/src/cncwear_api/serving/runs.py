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
from typing import Any

from celery import Celery

from cncwear.data.runs.base import BaseData
from cncwear.data.runs.records import StoreStats
from cncwear.data.runs.store import RunStore
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

    def accepted(self, celery: Celery) -> None:
        """After a run was accepted: queue a retrain through the one de-duplicated queue once
        ``CNCWEAR_RETRAIN_AFTER_RUNS`` accepted runs are missing from the champion's dataset
        version. A failure is logged, never fails the label (which is stored by then)."""
        if self.settings.retrain_after_runs <= 0:
            return
        try:
            queued = _queue_after_accepted_runs(self.settings, celery, self.store)
        except Exception as error:
            logger.error("could not check for a retrain after accepted runs: %s", error)
            return
        if queued is not None:
            logger.info("after accepted runs: %s", queued)

    def close(self) -> None:
        store = self._store
        if store is not None:
            close = getattr(store, "close", None)
            if callable(close):
                close()


def _queue_after_accepted_runs(settings: ApiSettings, celery: Celery, store: RunStore) -> Any:
    """The library's trigger (``cncwear.jobs.triggers.queue_after_accepted_runs``), called from
    this one place."""
    return None  # TODO(issue 17): queue_after_accepted_runs(settings, celery, store) once it lands


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
