"""Scoring the raw rows of a request, the same way whichever protocol brought them (``/predict``,
the Open Inference Protocol's ``infer``, MLflow's ``/invocations``): validated by
:func:`cncwear.serving.batch.to_batch` (so a bad cell is named the same way everywhere), scored by
the served version, counted, watched for drift and, with a run, appended to it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from cncwear.core.errors import CncwearError, SchemaError
from cncwear.serving.batch import Batch, RawRows, to_batch
from cncwear.serving.scoring import THRESHOLD
from cncwear_api.api.errors import RunStoreUnavailableError
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.serving.holder import ServedModel
from cncwear_api.serving.live_monitoring import LiveMonitoring
from cncwear_api.serving.runs import Runs
from cncwear_api.serving.shadow import ShadowScorer

logger = logging.getLogger(__name__)

INLINE_ROWS = 64
"""Batches up to this size through the compiled model are scored on the event loop (tens of
microseconds); larger ones, and scikit-learn, in a worker thread so other requests go on."""


@dataclass(frozen=True)
class Scored:
    batch: Batch
    probability: np.ndarray
    """Wear probability of each row."""
    worn: np.ndarray
    """Rows whose probability reaches the decision threshold."""
    run: dict[str, Any] | None
    """What became of the rows in the request's run, when it named one."""
    classes: np.ndarray | None
    """Each class's probability through the pipeline, when asked for (MLflow's answer)."""


async def score_rows(
    request: Request,
    served: ServedModel,
    rows: RawRows,
    run: str | None,
    *,
    classes: bool = False,
) -> Scored:
    """Validate, score, count and monitor the rows of one request; with ``run``, store them in it
    (committed before this returns). ``classes``: score through the pipeline and keep each class's
    probability, as MLflow's pyfunc gives them."""
    metrics: ApiMetrics = request.state.metrics
    request_id: str = request.state.request_id
    inline = not classes and served.compiled is not None and _row_count(rows) <= INLINE_ROWS
    work = partial(_serve, served, rows, metrics=metrics, classes=classes)
    try:
        scored = work() if inline else await run_in_threadpool(work)
    except SchemaError:
        metrics.schema_refusals.inc()
        raise
    if run is not None:
        kept = await _append(
            request.state.runs, run, served, scored.batch, probability=scored.probability,
            request_id=request_id, metrics=metrics,
        )  # fmt: skip
        scored = replace(scored, run=kept)
        shadow: ShadowScorer | None = request.state.shadow
        if shadow is not None and shadow.challenger.current is not None:
            _to_challenger(shadow, run, served, scored.batch, kept)
    monitoring: LiveMonitoring = request.state.monitoring
    if monitoring.enabled:
        batch = scored.batch
        monitoring.observe(served, batch.numeric, scored.probability, scored.worn, request_id)
    metrics.observe_predictions(served.version, scored.probability, int(scored.worn.sum()))
    return scored


def _row_count(rows: RawRows) -> int:
    return len(rows.rows) if rows.rows is not None else len(rows.data or [])


def _serve(served: ServedModel, rows: RawRows, *, metrics: ApiMetrics, classes: bool) -> Scored:
    batch = to_batch(rows, served.input_columns)
    by_class: np.ndarray | None = None
    with metrics.time_inference(served.runtime, served.version):
        if classes:
            by_class = served.class_probabilities(batch)
            probability = np.ascontiguousarray(by_class[:, 1])
        else:
            probability = served.probability_worn(batch)
    return Scored(batch, probability, probability >= THRESHOLD, None, by_class)


def _to_challenger(
    shadow: ShadowScorer, run: str, served: ServedModel, batch: Batch, kept: dict[str, Any]
) -> None:
    """The rows the run kept, handed to the challenger in shadow (or dropped, counted): nothing
    here waits, and the answer does not depend on it."""
    rows = kept["rows"]
    if rows < len(batch.numeric):
        batch = Batch(batch.numeric[:rows], batch.process[:rows])
    shadow.offer(run, kept["run_rows"] - rows, batch, served.input_columns)


async def _append(
    runs: Runs,
    run: str,
    served: ServedModel,
    batch: Batch,
    *,
    probability: np.ndarray,
    request_id: str,
    metrics: ApiMetrics,
) -> dict[str, Any]:
    """The batch appended to its run, and what became of it, once committed. The event loop
    waits for the store's writer, which commits the batches that arrive together at once: no
    worker thread blocks on it (and then waits to get the GIL back to say so)."""
    try:
        outcome = await asyncio.wrap_future(
            runs.store.submit(
                run,
                batch,
                input_columns=served.input_columns,
                probability=probability,
                model_version=served.version,
                request_id=request_id,
            )
        )
    except CncwearError:  # a closed run: the client's to act on (409)
        raise
    except Exception as error:
        metrics.run_append_failures.inc()
        logger.error("could not append to run %r: %s", run, error)
        raise RunStoreUnavailableError(
            f"the rows could not be stored in run {run!r} ({type(error).__name__}); nothing was "
            "kept: send the request again"
        ) from error
    metrics.run_rows_appended.inc(outcome.rows_kept)
    if outcome.truncated:
        metrics.run_truncated_appends.inc()
    return {
        "id": run,
        "rows": outcome.rows_kept,
        "run_rows": outcome.run_rows,
        "truncated": outcome.truncated,
    }
