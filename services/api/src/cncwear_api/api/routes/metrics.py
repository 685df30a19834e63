"""``/metrics``: Prometheus exposition."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from cncwear_api.api.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    response_model=None,
    summary="Prometheus metrics",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text exposition"}},
)
async def metrics(metrics: MetricsDep) -> Response:
    # In a worker thread: the labelled runs' figures are read from their store (database I/O).
    return Response(await run_in_threadpool(metrics.exposition), media_type=CONTENT_TYPE_LATEST)
