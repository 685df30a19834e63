"""The ``cncwear-trainer`` command: a Celery worker that runs retrain jobs from Redis, one at a
time, or (``cncwear-trainer beat``) the Celery beat that fires the retrain triggers.

``cncwear-trainer ping`` exits 0 when a worker on this host answers over the broker (the health
check of a worker container).

The worker is the only process that trains. Start several on one Redis to have more capacity; each
takes one job at a time, and a job whose worker dies is delivered again to another after the
visibility timeout. Beat runs once per system (several would fire each trigger several times; the
queue's de-duplication would absorb it, but there is no need): ``scripts/run.sh`` starts it when a
trigger is set (``CNCWEAR_RETRAIN_SCHEDULE``, ``CNCWEAR_NEW_DATA_CHECK_SECONDS``).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery

from cncwear.core.schedule import parse_schedule
from cncwear.core.settings import Settings
from cncwear.jobs.queue import (
    NEW_DATA_TASK,
    RETRAIN_QUEUE,
    SCHEDULED_RETRAIN_TASK,
    TRIGGER_QUEUE,
    make_celery,
)
from cncwear_trainer.settings import TrainerSettings, get_settings

logger = logging.getLogger(__name__)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
SCHEDULED_EXPIRY_SECONDS = 3600
"""A scheduled trigger not picked up within this (the worker busy with a long retrain) is dropped:
the retrain it would queue is the one running, or one that has just finished."""


def create_worker_app(settings: TrainerSettings) -> Celery:
    # Imported here, not at the top: the tasks bring in the training stack (scikit-learn,
    # MLflow, FLAML), which the container health check (``cncwear-trainer ping``) must not wait for;
    # and prometheus_client (through the task metrics), which must come after
    # use_multiprocess_metrics() in main().
    from cncwear_trainer.tasks import register_tasks  # noqa: PLC0415

    app = make_celery(settings)
    register_tasks(app, settings)
    app.conf.beat_schedule = beat_schedule(settings)
    return app


def use_multiprocess_metrics() -> None:
    """Make prometheus_client keep values in files that the parent process adds up, so that the
    metrics of retrains run in pool children reach the parent's endpoint. A directory of the
    user's (``PROMETHEUS_MULTIPROC_DIR``) is emptied of old values; else a fresh one is made and
    removed at exit."""
    if "prometheus_client" in sys.modules:
        logger.warning("prometheus_client was imported early: retrain metrics may be incomplete")
    given = os.environ.get(MULTIPROC_DIR)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return
    folder = tempfile.mkdtemp(prefix="cncwear-worker-metrics-")
    os.environ[MULTIPROC_DIR] = folder
    parent = os.getpid()

    def remove() -> None:
        if os.getpid() == parent:  # not in pool children, which exit before the worker
            shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The triggers beat fires, from the settings: nothing when none is set."""
    entries: dict[str, dict[str, Any]] = {}
    schedule = parse_schedule(settings.retrain_schedule)
    if schedule is not None:
        entries["scheduled retrain"] = {
            "task": SCHEDULED_RETRAIN_TASK,
            "schedule": schedule,
            "options": {"expires": SCHEDULED_EXPIRY_SECONDS},
        }
    if settings.new_data_check_seconds > 0:
        interval = settings.new_data_check_seconds
        entries["new data check"] = {
            "task": NEW_DATA_TASK,
            "schedule": timedelta(seconds=interval),
            # Checks that waited longer than their interval are dropped: a newer one is coming.
            "options": {"expires": max(interval, 1.0)},
        }
    return entries


PING_TIMEOUT_SECONDS = 5.0


def ping_local_workers(app: Celery, timeout: float = PING_TIMEOUT_SECONDS) -> list[str]:
    """Names of the workers on this host that answer a ping over the broker: the health check of a
    worker container. The ping is answered by the worker's main process, so a worker busy with a
    long retrain still answers."""
    suffix = f"@{socket.gethostname()}"
    replies = app.control.ping(timeout=timeout) or []
    return sorted(name for reply in replies for name in reply if name.endswith(suffix))


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    settings = get_settings()
    argv = sys.argv[1:] or ["worker"]
    if argv[0] == "ping":
        alive = ping_local_workers(make_celery(settings))
        print(", ".join(alive) if alive else "no worker on this host answered", flush=True)
        raise SystemExit(0 if alive else 1)
    use_multiprocess_metrics()
    app = create_worker_app(settings)
    if argv[0] == "beat":
        if not app.conf.beat_schedule:
            logger.warning(
                "beat has nothing to fire: set CNCWEAR_RETRAIN_SCHEDULE or "
                "CNCWEAR_NEW_DATA_CHECK_SECONDS"
            )
        for name, entry in app.conf.beat_schedule.items():
            logger.info("beat fires %r on %s", name, entry["schedule"])
        settings.home.mkdir(parents=True, exist_ok=True)  # beat keeps its schedule state there
        app.start(argv=["beat", "--loglevel=INFO", *argv[1:]])
        return
    if argv[0] == "worker":  # defaults first, so that the command line overrides them
        defaults = [
            "--pool=prefork",
            "--concurrency=1",
            "--loglevel=INFO",
            "--without-gossip",
            f"--queues={RETRAIN_QUEUE},{TRIGGER_QUEUE}",
        ]
        argv = ["worker", *defaults, *argv[1:]]
        if settings.worker_metrics_port:
            from cncwear_trainer.metrics import serve_metrics  # noqa: PLC0415 (after the above)

            serve_metrics(settings.worker_metrics_host, settings.worker_metrics_port)
    app.worker_main(argv=argv)
