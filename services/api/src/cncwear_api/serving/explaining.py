"""Explanations off the event loop, a bounded number at a time.

Explanations are CPU-bound: SHAP takes milliseconds, LIME up to a second, an anchor search up to
its cap (seconds), a global view seconds to tens of seconds once per version. They run in a thread
pool of their own with ``explain_concurrency`` threads, so the event loop (and ``/predict``, which
scores small batches on it) keeps going, and at most that many cores are busy explaining. Up to
``explain_max_waiting`` more requests wait for a thread; beyond that a request is refused at once
(503 with ``Retry-After``) rather than queueing minutes of work behind a burst of clicks.

The explainers of the served version are built on first use and kept (``ExplainerCache``); when the
champion changes, the next explanation builds those of the new version.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from cncwear.explain import (
    AnchorExplanation,
    ExplainerCache,
    Explainers,
    ExplainMethod,
    Explanation,
    GlobalView,
)
from cncwear.serving.batch import Batch
from cncwear_api.api.errors import ExplainerBusyError
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.core.settings import ApiSettings
from cncwear_api.serving.holder import ServedModel

T = TypeVar("T")

GLOBAL = "global"
"""The method label of global views in the metrics."""


class ExplainRunner:
    def __init__(self, settings: ApiSettings, metrics: ApiMetrics) -> None:
        self.metrics = metrics
        self.cache = ExplainerCache(settings)
        self.concurrency = settings.explain_concurrency
        self.places = settings.explain_concurrency + settings.explain_max_waiting
        self._admitted = 0
        """Explanations running or waiting; a place is freed when its work ends, not when its
        request does (a client that hangs up does not stop the thread)."""
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=settings.explain_concurrency, thread_name_prefix="explain"
        )

    async def explain(
        self, served: ServedModel, batch: Batch, method: ExplainMethod
    ) -> Explanation:
        """Explain the one row of a validated batch with the served model, which gives the
        probability reported (the one ``/predict`` answers)."""

        def work() -> Explanation:
            with self.metrics.time_explanation(method.value):
                explainers = self._explainers(served)
                answer = explainers.explain(batch, method, score=served.probability_worn)
            if isinstance(answer, AnchorExplanation) and answer.partial:
                self.metrics.partial_anchors.inc()
            return answer

        return await self._run(work)

    async def global_view(self, served: ServedModel) -> GlobalView:
        def work() -> GlobalView:
            with self.metrics.time_explanation(GLOBAL):
                return self._explainers(served).global_view()

        return await self._run(work)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _explainers(self, served: ServedModel) -> Explainers:
        return self.cache.get(served.pipeline, served.profile, served.version)

    async def _run(self, work: Callable[[], T]) -> T:
        with self._lock:
            admitted = self._admitted < self.places
            if admitted:
                self._admitted += 1
        if not admitted:
            self.metrics.explanations_rejected.inc()
            raise ExplainerBusyError(
                f"{self.concurrency} explanation(s) running and "
                f"{self.places - self.concurrency} waiting, the most this server takes: "
                "try again shortly"
            )
        future = self._executor.submit(work)
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _: Future[Any]) -> None:
        with self._lock:
            self._admitted -= 1
