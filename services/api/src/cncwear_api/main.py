"""The app factory, its lifespan, and the ``cncwear-api`` console entry point."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE

from cncwear.core.settings import PromotionPolicy
from cncwear.jobs.queue import make_celery
from cncwear.jobs.store import JobStore
from cncwear.registry.store import ModelStore
from cncwear_api.api.deps import WriteAccess
from cncwear_api.api.errors import add_exception_handlers
from cncwear_api.api.middleware import RequestMiddleware
from cncwear_api.api.routes import (
    dashboard,
    data,
    drift,
    explain,
    health,
    invocations,
    jobs,
    model,
    predict,
    runs,
    v2,
)
from cncwear_api.api.routes import metrics as metrics_route
from cncwear_api.core.log import configure_logging
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.core.security import resolve_api_token
from cncwear_api.core.settings import ApiSettings, get_settings
from cncwear_api.schemas.errors import ErrorResponse, ProblemsResponse
from cncwear_api.serving.explaining import ExplainRunner
from cncwear_api.serving.holder import ModelHolder
from cncwear_api.serving.live_monitoring import LiveMonitoring, watch_drift
from cncwear_api.serving.runs import Runs, checkpoint_runs, expire_runs
from cncwear_api.serving.shadow import ShadowScorer, watch_shadow
from cncwear_api.serving.watch import listen_for_promotions, watch_registry

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Tool-wear classification for CNC mills, served from the champion of the MLflow registry.

Stateless: all it knows comes from the registry and its settings, so any number of replicas can
run behind a load balancer. It notices a new champion without a restart and swaps to it like a
rolling deployment.
"""


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    settings = settings if settings is not None else get_settings()
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        token = resolve_api_token(settings)
        store = await asyncio.to_thread(ModelStore, settings)
        holder = ModelHolder(store, metrics)
        challenger = (
            ModelHolder(store, metrics, role="challenger")
            if settings.promotion_policy is PromotionPolicy.SHADOW
            else None
        )
        job_store = JobStore(settings)
        celery = make_celery(settings)
        labelled = Runs(settings)  # its store and base data made on first use: startup stays fast
        live = LiveMonitoring(
            settings,
            metrics,
            enqueue=lambda request: job_store.enqueue(request, celery),
            runs=lambda: labelled.store,
        )
        runner = ExplainRunner(settings, metrics)
        shadow = (
            None if challenger is None else ShadowScorer(settings, challenger, labelled, metrics)
        )
        metrics.run_store.source = labelled.stats
        wake = asyncio.Event()
        tasks = [
            asyncio.create_task(
                watch_registry(holder, settings.poll_interval_seconds, wake, challenger),
                name="registry",
            ),
            asyncio.create_task(listen_for_promotions(settings, wake), name="promotions"),
            asyncio.create_task(asyncio.to_thread(labelled.warm), name="runs-warm-up"),
            asyncio.create_task(expire_runs(labelled), name="runs-expiry"),
            asyncio.create_task(checkpoint_runs(labelled), name="runs-checkpoint"),
        ]
        if shadow is not None:
            decide = watch_shadow(
                shadow, lambda: holder.current, settings.shadow_check_interval_seconds, wake
            )
            tasks.append(asyncio.create_task(decide, name="shadow"))
        if live.enabled:
            check = watch_drift(live, lambda: holder.current, settings.drift_check_interval_seconds)
            tasks.append(asyncio.create_task(check, name="drift"))
        for task in tasks:
            task.add_done_callback(_report_crash)
        logger.info(
            "watching %r@%s in the registry every %.0f s",
            settings.model_name, settings.champion_alias, settings.poll_interval_seconds,
        )  # fmt: skip
        try:
            yield {
                "settings": settings,
                "holder": holder,
                "challenger": challenger,
                "shadow": shadow,
                "wake": wake,
                "metrics": metrics,
                "api_token": token,
                "jobs": job_store,
                "celery": celery,
                "monitoring": live,
                "explain": runner,
                "runs": labelled,
            }
        finally:
            job_store.close()
            runner.close()
            await stop(tasks)
            metrics.run_store.source = None

    app = FastAPI(
        title="cncwear prediction service",
        version=version("cncwear-api"),
        description=DESCRIPTION,
        lifespan=lifespan,
        # Every bad request, whichever route, is answered in one shape (cncwear_api.api.errors).
        responses={
            413: {"model": ErrorResponse, "description": "Body over the size limit"},
            415: {"model": ErrorResponse, "description": "Body not declared as JSON"},
            422: {"model": ProblemsResponse, "description": "Bad request: each problem"},
        },
    )
    app.add_middleware(RequestMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    add_exception_handlers(app)
    # Reads are open unless closed by setting; then the token guards them like the mutating ones.
    reads = [WriteAccess] if settings.protect_reads else []
    routers = (
        predict.router,
        v2.router,
        invocations.router,
        explain.router,
        model.router,
        runs.router,
        data.router,
        jobs.router,
        drift.router,
        metrics_route.router,
    )
    for router in routers:
        app.include_router(router, dependencies=reads)
    app.include_router(health.router)
    app.include_router(v2.probes)
    app.include_router(invocations.probes)
    app.include_router(dashboard.router)
    app.mount(dashboard.ASSETS_PATH, dashboard.assets(), name="dashboard")
    return app


async def stop(tasks: Collection[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait until each has ended, cancelling again those still running: a
    cancellation can be lost (Python 3.11's ``asyncio.wait_for``, which redis-py's subscribe uses,
    drops one that arrives as the call it waits for completes), and one lost kept the promotion
    listener running and the shutdown waiting for ever."""
    running = set(tasks)
    while running:
        for task in running:
            task.cancel()
        _, running = await asyncio.wait(running, timeout=1.0)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("background task %s stopped", task.get_name(), exc_info=task.exception())


def bind(host: str, port: int) -> socket.socket:
    """The service's socket, bound (as uvicorn binds it) before the app starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def main() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    # The port first: a service that cannot listen stops at once, before it loads anything.
    try:
        listening = bind(settings.host, settings.port)
    except OSError as error:
        logger.error("cannot listen on %s:%d: %s", settings.host, settings.port, error.strerror)
        sys.exit(1)
    logger.info("bound to %s:%d", settings.host, settings.port)
    config = uvicorn.Config(
        create_app(settings),
        log_config=None,
        access_log=False,  # the app logs one line per request itself
        server_header=False,
    )
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn has shut the app down
        server.run(sockets=[listening])
    if not server.started:  # the app's startup failed, and logged why
        sys.exit(STARTUP_FAILURE)
