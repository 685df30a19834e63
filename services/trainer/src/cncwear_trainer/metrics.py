"""The worker's Prometheus metrics: retrains by outcome, their duration in total and per stage, and
when one last succeeded.

A Celery worker runs each task in a child process (the prefork pool), while the endpoint is served
by the parent, so the metrics use prometheus_client's multiprocess mode: every process writes its
values to files in ``PROMETHEUS_MULTIPROC_DIR`` and the endpoint adds them up. The directory must be
set before prometheus_client is first imported: :func:`cncwear_trainer.worker.main` does that, and
only then imports this module.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from cncwear.registry.tags import PromotionOutcome

logger = logging.getLogger(__name__)

SKIPPED = "skipped"

DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 10800, 14400)
"""Seconds: a fast retrain takes a minute or two, a full one up to hours."""

RETRAINS = Counter(
    "cncwear_worker_retrains",
    "Retrain jobs finished by this worker, by outcome: promoted, not promoted (the winner did not "
    "beat the champion), skipped (asked only if there is new data, and there was none), failed.",
    ["outcome"],
)
FAILURES = Counter(
    "cncwear_worker_retrain_failures",
    "Retrain jobs that failed, by kind: error (bad data, a domain error), time_limit, unexpected, "
    "gave_up (too many interrupted attempts).",
    ["kind"],
)
DURATION = Histogram(
    "cncwear_worker_retrain_duration_seconds",
    "Wall time of one retrain delivery, start to outcome.",
    buckets=DURATION_BUCKETS,
)
STAGE_DURATION = Histogram(
    "cncwear_worker_retrain_stage_duration_seconds",
    "Wall time of each stage of a retrain (loading data, training <candidate>, registering, "
    "deciding promotion).",
    ["stage"],
    buckets=DURATION_BUCKETS,
)
LAST_SUCCESS = Gauge(
    "cncwear_worker_last_success_timestamp_seconds",
    "When a retrain last succeeded on this worker (Unix time).",
    multiprocess_mode="mostrecent",
)


class StageTimer:
    """Times the stages a retrain reports through its progress callback."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.stage: str | None = None
        self.started = clock()

    def enter(self, stage: str) -> None:
        if stage == self.stage:
            return
        self.close()
        self.stage, self.started = stage, self.clock()

    def close(self) -> None:
        if self.stage is not None and self.stage != "done":
            STAGE_DURATION.labels(stage=self.stage).observe(self.clock() - self.started)
        self.stage = None


def record_success(outcome: PromotionOutcome, seconds: float) -> None:
    RETRAINS.labels(outcome=outcome.value).inc()
    DURATION.observe(seconds)
    LAST_SUCCESS.set(time.time())


def record_skipped(seconds: float) -> None:
    """A job that asked to train only on new data and found none: finished, nothing trained (not a
    success of a retrain: the last-success time stays)."""
    RETRAINS.labels(outcome=SKIPPED).inc()
    DURATION.observe(seconds)


def record_failure(kind: str, seconds: float | None) -> None:
    RETRAINS.labels(outcome="failed").inc()
    FAILURES.labels(kind=kind).inc()
    if seconds is not None:
        DURATION.observe(seconds)


def serve_metrics(host: str, port: int) -> bool:
    """Serve the metrics of this worker's processes on ``host:port``; False when the port is
    taken (logged: the worker runs on without an endpoint)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        logger.warning("worker metrics not served on %s:%d: %s", host, port, error)
        return False
    logger.info("worker metrics on http://%s:%d/metrics", host, port)
    return True
