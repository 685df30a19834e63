"""The ``cncwear-trainer`` worker: a Celery worker that runs retrain jobs from Redis, one at a time.

``cncwear-trainer ping`` exits 0 when a worker on this host answers over the broker (the health
check of a worker container).

It is the only process that trains. Start several on one Redis to have more capacity; each takes one
job at a time, and a job whose worker dies is delivered again to another after the visibility
timeout.
"""

from __future__ import annotations

import logging
import socket
import sys

from celery import Celery

from cncwear.queue import make_celery
from cncwear.settings import Settings, get_settings


def create_worker_app(settings: Settings) -> Celery:
    # Imported here, not at the top: the tasks bring in the training stack (scikit-learn,
    # MLflow, FLAML), which the container health check (``cncwear-trainer ping``) must not wait for.
    from cncwear_trainer.tasks import register_tasks  # noqa: PLC0415

    app = make_celery(settings)
    register_tasks(app, settings)
    return app


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
    app = create_worker_app(settings)
    if argv[0] == "worker":  # defaults first, so that the command line overrides them
        defaults = ["--pool=prefork", "--concurrency=1", "--loglevel=INFO", "--without-gossip"]
        argv = ["worker", *defaults, *argv[1:]]
    app.worker_main(argv=argv)
