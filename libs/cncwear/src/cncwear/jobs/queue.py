"""The retrain queue: Celery on Redis, configured once for the API (which only sends) and the
trainer (which runs). The API sends by task name, so it never imports the trainer or its heavy
dependencies.

Retrains are long, so the configuration follows Celery's advice for long tasks: late
acknowledgement, prefetch of one, a Redis visibility timeout longer than the longest retrain (a task
unacknowledged for longer is delivered again), and time limits below it.
"""

from __future__ import annotations

from celery import Celery

from cncwear.core.settings import Settings

RETRAIN_TASK = "cncwear.retrain"
RETRAIN_QUEUE = "cncwear-retrain"
SCHEDULED_RETRAIN_TASK = "cncwear.scheduled_retrain"
NEW_DATA_TASK = "cncwear.check_new_data"
TRIGGER_QUEUE = "cncwear-triggers"
"""Beat's trigger tasks (short: they only queue a retrain when due), apart from the retrains."""


def make_celery(settings: Settings) -> Celery:
    app = Celery("cncwear", broker=settings.redis_url)
    app.conf.update(
        task_default_queue=RETRAIN_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # job state lives in cncwear.jobs, readable by every replica
        task_soft_time_limit=settings.retrain_soft_time_limit(),
        task_time_limit=settings.retrain_time_limit,
        broker_transport_options={
            "visibility_timeout": settings.retrain_visibility_timeout,
            # Look for abandoned deliveries (a worker killed mid-job) every few seconds.
            "unacked_restore_interval": max(1, min(10, settings.retrain_visibility_timeout // 10)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_routes={
            SCHEDULED_RETRAIN_TASK: {"queue": TRIGGER_QUEUE},
            NEW_DATA_TASK: {"queue": TRIGGER_QUEUE},
        },
        beat_schedule_filename=str(settings.home / "celerybeat-schedule"),
    )
    return app
