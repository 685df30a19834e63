"""The ``cncwear-trainer`` worker: a Celery worker that runs retrain jobs from Redis, one at a time.

It is the only process that trains. Start several on one Redis to have more capacity; each takes one
job at a time, and a job whose worker dies is delivered again to another after the visibility
timeout.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from celery import Celery

from cncwear.queue import make_celery
from cncwear.settings import Settings, get_settings

logger = logging.getLogger(__name__)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def create_worker_app(settings: Settings) -> Celery:
    # Imported here: the tasks import prometheus_client, which must come after
    # use_multiprocess_metrics() in main().
    from cncwear_trainer.tasks import register_tasks  # noqa: PLC0415

    app = make_celery(settings)
    register_tasks(app, settings)
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


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    settings = get_settings()
    use_multiprocess_metrics()
    app = create_worker_app(settings)
    if settings.worker_metrics_port:
        from cncwear_trainer.metrics import serve_metrics  # noqa: PLC0415 (after the line above)

        serve_metrics(settings.worker_metrics_host, settings.worker_metrics_port)
    argv = sys.argv[1:] or ["worker"]
    if argv[0] == "worker":  # defaults first, so that the command line overrides them
        defaults = ["--pool=prefork", "--concurrency=1", "--loglevel=INFO", "--without-gossip"]
        argv = ["worker", *defaults, *argv[1:]]
    app.worker_main(argv=argv)
