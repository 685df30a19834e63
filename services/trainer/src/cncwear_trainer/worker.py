"""The ``cncwear-trainer`` worker: a Celery worker that runs retrain jobs from Redis, one at a time.

It is the only process that trains. Start several on one Redis to have more capacity; each takes one
job at a time, and a job whose worker dies is delivered again to another after the visibility
timeout.
"""

from __future__ import annotations

import logging
import sys

from celery import Celery

from cncwear.queue import make_celery
from cncwear.settings import Settings, get_settings
from cncwear_trainer.tasks import register_tasks


def create_worker_app(settings: Settings) -> Celery:
    app = make_celery(settings)
    register_tasks(app, settings)
    return app


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    settings = get_settings()
    app = create_worker_app(settings)
    argv = sys.argv[1:] or ["worker"]
    if argv[0] == "worker":  # defaults first, so that the command line overrides them
        defaults = ["--pool=prefork", "--concurrency=1", "--loglevel=INFO", "--without-gossip"]
        argv = ["worker", *defaults, *argv[1:]]
    app.worker_main(argv=argv)
