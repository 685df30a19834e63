"""Settings of the training worker: the shared cncwear settings plus the worker's own."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from cncwear.core.settings import Settings


class TrainerSettings(Settings):
    retrain_max_attempts: int = Field(default=3, ge=1)
    """Deliveries of one job (after worker crashes) before it is marked failed."""

    worker_metrics_port: int = Field(default=9102, ge=0, le=65535)
    """Port of a trainer worker's Prometheus endpoint (``/metrics``); 0 serves none. Several
    workers on one machine need a port each: a worker whose port is taken logs a warning and runs
    without one."""

    worker_metrics_host: str = "127.0.0.1"
    """Interface the worker's metrics endpoint listens on (``0.0.0.0`` in a container)."""


@lru_cache
def get_settings() -> TrainerSettings:
    return TrainerSettings()
