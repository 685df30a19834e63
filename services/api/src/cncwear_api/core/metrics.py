"""The service's Prometheus metrics, defined once, in a registry of their own (one per app).

Names follow the Prometheus conventions: ``cncwear_`` prefix, base units (seconds), ``_total`` on
counters (added by the client library), labels of low cardinality: route *templates*, status
classes, classes, the runtime and the model version (few live at a time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from cncwear.data.runs.ids import RunState
from cncwear.data.runs.records import StoreStats

logger = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
)  # fmt: skip
"""Seconds, dense around the targets: single rows in a few milliseconds, p99 at most 10 ms."""

PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
BATCH_ROWS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
EXPLAIN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
"""Seconds, around the targets: SHAP tens of milliseconds, LIME under 1 s, anchors capped at a
few seconds, a global view once per version in seconds to tens of seconds."""


class BatchHistogram(Collector):
    """A histogram fed a whole array at once (numpy), for per-row distributions of large batches,
    where one ``observe`` call per row would cost more than the prediction."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Iterable[float],
        label: str,
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self._upper = np.asarray([*buckets, np.inf], dtype=np.float64)
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, label_value: str, values: np.ndarray) -> None:
        counts = np.bincount(
            np.searchsorted(self._upper, values, side="left"), minlength=len(self._upper)
        )
        total = float(np.sum(values))
        with self._lock:
            if label_value not in self._counts:
                self._counts[label_value] = np.zeros(len(self._upper), dtype=np.int64)
                self._sums[label_value] = 0.0
            self._counts[label_value] += counts
            self._sums[label_value] += total

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            snapshot = [(k, np.cumsum(v), self._sums[k]) for k, v in self._counts.items()]
        for label_value, cumulative, total in snapshot:
            buckets = [
                (_go_float(upper), float(count))
                for upper, count in zip(self._upper, cumulative, strict=True)
            ]
            family.add_metric([label_value], buckets, sum_value=total)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=[self.label])


class RunStoreCollector(Collector):
    """The labelled runs' store as Prometheus sees it: read from the store at scrape time
    (``RunStore.stats``: every replica reports the same shared figures), at most once every
    ``cache_seconds``. Until a source is given, and while the store cannot be read, only
    ``cncwear_run_store_up`` is exported (0)."""

    def __init__(self, registry: CollectorRegistry, cache_seconds: float = 5.0) -> None:
        self.source: Callable[[], StoreStats] | None = None
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, StoreStats | None] | None = None
        self._lock = threading.Lock()
        registry.register(self)

    def _stats(self) -> StoreStats | None:
        source = self.source
        if source is None:
            return None
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            try:
                stats: StoreStats | None = source()
            except Exception as error:
                logger.warning("the labelled runs' store cannot be read for metrics: %s", error)
                stats = None
            self._cached = (now, stats)
            return stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        up = GaugeMetricFamily(
            "cncwear_run_store_up", "1 when the labelled runs' store answered the last scrape."
        )
        up.add_metric([], 0.0 if stats is None else 1.0)
        yield up
        if stats is None:
            return
        runs = GaugeMetricFamily(
            "cncwear_runs", "Labelled runs in the shared store, by state.", labels=["state"]
        )
        for state in RunState:
            runs.add_metric([state.value], float(stats.runs.get(state, 0)))
        yield runs
        yield GaugeMetricFamily(
            "cncwear_run_store_rows", "Rows of every run in the shared store.", value=stats.rows
        )
        if stats.bytes is not None:
            yield GaugeMetricFamily(
                "cncwear_run_store_bytes", "Size of the shared store on disk.", value=stats.bytes
            )
        yield CounterMetricFamily(
            "cncwear_runs_expired",
            "Runs dropped because they were still collecting, unlabelled, after "
            "CNCWEAR_RUN_TTL_SECONDS (counted in the shared store, every replica alike).",
            value=stats.expired_total,
        )
        yield GaugeMetricFamily(
            "cncwear_runs_truncated",
            "Runs in the store that reached CNCWEAR_RUN_MAX_ROWS and kept no more rows.",
            value=stats.truncated_runs,
        )

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected at scrape time only: the store is not read on registration


def _go_float(value: float) -> str:
    """A bucket bound as Prometheus writes it (``+Inf``, ``0.5``)."""
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        http_labels = ["protocol", "method", "route", "status_class"]
        self.http_requests = Counter(
            "cncwear_http_requests",
            "HTTP requests answered, by protocol (cncwear, v2, mlflow), route template and status "
            "class (probes and scrapes left out).",
            http_labels,
            registry=r,
        )
        self.http_duration = Histogram(
            "cncwear_http_request_duration_seconds",
            "Time from request to the end of the response, by protocol, route template and status "
            "class.",
            http_labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "cncwear_predictions",
            "Rows scored, by model version and predicted class.",
            ["version", "label"],
            registry=r,
        )
        self.probability = BatchHistogram(
            "cncwear_prediction_probability_worn",
            "Predicted wear probability of each row scored, by model version.",
            PROBABILITY_BUCKETS,
            "version",
            r,
        )
        self.batch_rows = Histogram(
            "cncwear_prediction_batch_rows",
            "Rows per accepted /predict request.",
            buckets=BATCH_ROWS_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "cncwear_inference_duration_seconds",
            "Time spent scoring one validated batch, by runtime (onnxruntime or scikit-learn) and "
            "model version.",
            ["runtime", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_failures = Counter(
            "cncwear_inference_failures",
            "Batches whose scoring raised, by model version.",
            ["version"],
            registry=r,
        )
        self.model_loads = Counter(
            "cncwear_model_loads",
            "Champion versions loaded and swapped in, by runtime.",
            ["runtime"],
            registry=r,
        )
        self.model_load_failures = Counter(
            "cncwear_model_load_failures",
            "Attempts to load a champion version (or to read the registry) that failed.",
            registry=r,
        )
        self.model_load_duration = Histogram(
            "cncwear_model_load_duration_seconds",
            "Time to load a champion version, compiled form and checks included.",
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "cncwear_model_info",
            "The model versions loaded (value 1), with their runtime, by role: the champion "
            "(serves /predict) and, under the shadow policy, the challenger.",
            ["name", "version", "runtime", "role"],
            registry=r,
        )
        self.model_ready = Gauge(
            "cncwear_model_ready", "1 when a champion is loaded and served, else 0.", registry=r
        )
        self.schema_refusals = Counter(
            "cncwear_schema_refusals",
            "/predict requests refused because their rows do not fit the model's schema (missing "
            "or unknown columns, bad values): schema skew between senders and the model.",
            registry=r,
        )
        self.drift_feature_psi = Gauge(
            "cncwear_drift_feature_psi",
            "Population stability index of each selected feature, served window against the "
            "reference (NaN until the window holds enough rows).",
            ["feature"],
            registry=r,
        )
        self.drift_feature_statistic = Gauge(
            "cncwear_drift_feature_statistic",
            "The drift test of each selected feature: KS p-value or normed Wasserstein distance.",
            ["feature", "test"],
            registry=r,
        )
        self.drift_feature_drifted = Gauge(
            "cncwear_drift_feature_drifted",
            "1 when the feature's drift test says it drifted, else 0.",
            ["feature"],
            registry=r,
        )
        self.drift_share = Gauge(
            "cncwear_drift_share",
            "Share of the selected features that drifted (NaN until the window holds enough rows).",
            registry=r,
        )
        self.drift_detected = Gauge(
            "cncwear_drift_detected",
            "1 when the window drifted (a check beyond its normal band, or, for a model without "
            "a drift null, the drift share at its threshold), else 0.",
            registry=r,
        )
        self.drift_runs_drifted = Gauge(
            "cncwear_drift_runs_drifted",
            "Drifted runs among the latest CNCWEAR_DRIFT_RUNS_WINDOW judged by the served version "
            "(from the shared store).",
            registry=r,
        )
        self.drift_runs_judged = Gauge(
            "cncwear_drift_runs_judged",
            "Runs judged among those (at most CNCWEAR_DRIFT_RUNS_WINDOW).",
            registry=r,
        )
        self.drift_window_rows = Gauge(
            "cncwear_drift_window_rows", "Served rows in the drift window.", registry=r
        )
        self.prediction_drift_psi = Gauge(
            "cncwear_prediction_drift_psi",
            "PSI of the predicted wear probability, served window against the holdout's.",
            registry=r,
        )
        self.prediction_drift_statistic = Gauge(
            "cncwear_prediction_drift_statistic",
            "Drift test of the predicted wear probability (KS p-value or normed Wasserstein).",
            ["test"],
            registry=r,
        )
        self.prediction_drift_detected = Gauge(
            "cncwear_prediction_drift_detected",
            "1 when the predicted wear probability drifted from the holdout's, else 0.",
            registry=r,
        )
        self.live_metric = Gauge(
            "cncwear_live_performance",
            "Accuracy, precision and recall on the labelled feedback window (NaN until enough "
            "labels).",
            ["metric"],
            registry=r,
        )
        self.holdout_metric = Gauge(
            "cncwear_holdout_performance",
            "The served version's accuracy, precision and recall on its held-out experiments.",
            ["metric"],
            registry=r,
        )
        self.live_labelled_rows = Gauge(
            "cncwear_live_labelled_rows", "Labelled rows in the feedback window.", registry=r
        )
        self.feedback_rows = Counter(
            "cncwear_feedback_rows",
            "Rows whose ground truth was received, by how they were matched (request id or rows).",
            ["source"],
            registry=r,
        )
        self.model_promoted = Gauge(
            "cncwear_model_promoted_timestamp_seconds",
            "When the served version was registered as champion (Unix time).",
            registry=r,
        )
        self.seconds_since_promotion = Gauge(
            "cncwear_seconds_since_promotion",
            "Seconds since the served version was registered as champion.",
            registry=r,
        )
        self._promoted_at: float | None = None
        self.seconds_since_promotion.set_function(self._since_promotion)
        self.retrain_triggers = Counter(
            "cncwear_retrain_triggers",
            "Retrains asked for by this replica's monitoring, by reason (drift, accuracy) and "
            "outcome (queued; joined: one was already queued or running; failed).",
            ["reason", "outcome"],
            registry=r,
        )
        self.explanation_duration = Histogram(
            "cncwear_explanation_duration_seconds",
            "Time to compute one explanation (explainers' build included when it happens), by "
            "method: shap, lime, anchor, or global for the global view.",
            ["method"],
            buckets=EXPLAIN_BUCKETS,
            registry=r,
        )
        self.explanation_failures = Counter(
            "cncwear_explanation_failures",
            "Explanations that raised, by method.",
            ["method"],
            registry=r,
        )
        self.explanations_running = Gauge(
            "cncwear_explanations_running",
            "Explanations being computed now (at most CNCWEAR_EXPLAIN_CONCURRENCY).",
            registry=r,
        )
        self.explanations_rejected = Counter(
            "cncwear_explanations_rejected",
            "Explanation requests refused with 503 because every slot and waiting place was taken.",
            registry=r,
        )
        self.partial_anchors = Counter(
            "cncwear_explanation_anchor_partial",
            "Anchor explanations whose search hit its cap (time or samples) and returned the best "
            "rule found so far.",
            registry=r,
        )
        self._run_metrics(r)
        self.run_store = RunStoreCollector(r)
        self._info: dict[str, tuple[str, str, str]] = {}
        # Labelled children, looked up once: ``labels()`` costs more than the update itself.
        self._http: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
        self._by_version: dict[str, tuple[Any, Any]] = {}

    def _run_metrics(self, r: CollectorRegistry) -> None:
        """The labelled runs' appends, and the challenger in shadow's
        (``cncwear_api.serving.shadow``)."""
        self.run_rows_appended = Counter(
            "cncwear_run_rows_appended",
            "Rows of /predict requests naming a run, kept in the run (this replica).",
            registry=r,
        )
        self.run_truncated_appends = Counter(
            "cncwear_run_truncated_appends",
            "/predict requests naming a run that had reached CNCWEAR_RUN_MAX_ROWS: answered, "
            "but some or all of their rows were not kept.",
            registry=r,
        )
        self.run_append_failures = Counter(
            "cncwear_run_append_failures",
            "/predict requests naming a run whose rows could not be stored (answered 503; a "
            "closed run's 409 is not counted).",
            registry=r,
        )
        self.shadow_rows = Counter(
            "cncwear_shadow_rows",
            "Rows of /predict requests with a run handed to the challenger in shadow, by outcome: "
            "scored (and stored), dropped (its queue was full, or no challenger was loaded by "
            "then) or failed (it could not score or store them).",
            ["outcome"],
            registry=r,
        )
        self.shadow_decisions = Counter(
            "cncwear_shadow_decisions",
            "Shadow decisions taken by this replica: promote, reject, inconclusive, or "
            "superseded (another replica moved the challenger first).",
            ["decision"],
            registry=r,
        )
        self.shadow_agreement = Gauge(
            "cncwear_shadow_agreement",
            "Share of the rows of labelled runs both the champion and the challenger scored that "
            "they gave the same label (NaN until there is one).",
            registry=r,
        )
        self.live_accuracy = Gauge(
            "cncwear_live_accuracy",
            "Row accuracy on the labelled runs both models scored, by role (champion, "
            "challenger): each over the rows it scored (NaN until there is one).",
            ["role"],
            registry=r,
        )
        self.shadow_labelled_runs = Gauge(
            "cncwear_shadow_labelled_runs",
            "Labelled runs both the champion and the challenger scored: the shadow decision's "
            "evidence.",
            registry=r,
        )
        self.challenger_age = Gauge(
            "cncwear_challenger_age_seconds",
            "How long the challenger this replica has loaded has been in shadow, at the last "
            "shadow decision (NaN with none loaded).",
            registry=r,
        )
        self.challenger_age.set(float("nan"))
        self.shadow_max_age = Gauge(
            "cncwear_shadow_max_age_seconds",
            "CNCWEAR_SHADOW_MAX_AGE_SECONDS: past it, a challenger without a significant win is "
            "rejected.",
            registry=r,
        )
        self.shadow_p_value = Gauge(
            "cncwear_shadow_p_value",
            "Exact McNemar p-value of the run verdicts of champion and challenger (1 with no run "
            "where only one was right).",
            registry=r,
        )

    @contextmanager
    def time_inference(self, runtime: str, version: str) -> Iterator[None]:
        """Times one scoring call and counts it as failed if it raises."""
        started = time.perf_counter()
        try:
            yield
        except Exception:
            self.inference_failures.labels(version=version).inc()
            raise
        finally:
            seconds = time.perf_counter() - started
            self.inference_duration.labels(runtime=runtime, version=version).observe(seconds)

    @contextmanager
    def time_explanation(self, method: str) -> Iterator[None]:
        """Times one explanation, counts it as running meanwhile and as failed if it raises."""
        started = time.perf_counter()
        self.explanations_running.inc()
        try:
            yield
        except Exception:
            self.explanation_failures.labels(method=method).inc()
            raise
        finally:
            self.explanations_running.dec()
            seconds = time.perf_counter() - started
            self.explanation_duration.labels(method=method).observe(seconds)

    def observe_predictions(self, version: str, probability: np.ndarray, worn: int) -> None:
        counters = self._by_version.get(version)
        if counters is None:
            counters = (
                self.predictions.labels(version=version, label="worn"),
                self.predictions.labels(version=version, label="unworn"),
            )
            self._by_version[version] = counters
        self.batch_rows.observe(len(probability))
        counters[0].inc(worn)
        counters[1].inc(len(probability) - worn)
        self.probability.observe_many(version, probability)

    def observe_request(
        self, protocol: str, method: str, route: str, status: int, seconds: float
    ) -> None:
        key = (protocol, method, route, f"{status // 100}xx")
        children = self._http.get(key)
        if children is None:
            children = (self.http_requests.labels(*key), self.http_duration.labels(*key))
            self._http[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def serving(self, name: str, version: str, runtime: str) -> None:
        """Mark the model now served (and no other)."""
        self.loaded("champion", name, version, runtime)
        self.model_ready.set(1)

    def loaded(self, role: str, name: str | None, version: str = "", runtime: str = "") -> None:
        """Mark the version now holding ``role`` in this replica (None: none any more)."""
        previous = self._info.pop(role, None)
        if previous is not None:
            self.model_info.remove(*previous, role)
        if name is not None:
            self._info[role] = (name, version, runtime)
            self.model_info.labels(name=name, version=version, runtime=runtime, role=role).set(1)

    def promoted_at(self, timestamp: float) -> None:
        self._promoted_at = timestamp
        self.model_promoted.set(timestamp)

    def _since_promotion(self) -> float:
        if self._promoted_at is None:
            return float("nan")
        return time.time() - self._promoted_at

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
