"""Live monitoring in each replica: the drift window of the model being served, feedback matched to
earlier predictions, the gauges Prometheus scrapes, and the triggers that queue a retrain.

The request path only appends to buffers (:meth:`LiveMonitoring.observe`); a background task
(:func:`watch_drift`) computes the statistics every ``drift_check_interval_seconds``, exports them
and checks the triggers. Each replica watches its own share of the traffic: Prometheus sees every
replica's figures, and the retrain queue's de-duplication keeps replicas that trigger together from
queueing more than one retrain.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cncwear.core.schema import ACTIVE_PROCESSES, PROCESS_COLUMN
from cncwear.data.runs.records import RunDrift
from cncwear.data.runs.store import RunStore
from cncwear.jobs.store import Job, RetrainRequest
from cncwear.monitoring.window import (
    PERFORMANCE_METRICS,
    DriftVerdict,
    Monitor,
    MonitorConfig,
    MonitorReport,
    RecentPredictions,
    SustainedCondition,
)
from cncwear.serving.batch import of_validated
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.core.settings import ApiSettings
from cncwear_api.serving.holder import ServedModel

logger = logging.getLogger(__name__)

Enqueue = Callable[[RetrainRequest], tuple[Job, bool]]
"""Queues a retrain through the de-duplicated job store; returns the job and whether it is new."""

MAX_REASON = 200


@dataclass(frozen=True)
class Trigger:
    """A retrain this replica asked for, and why."""

    kind: str
    reason: str
    at: float
    job_id: str | None
    outcome: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "at": self.at,
            "job_id": self.job_id,
            "outcome": self.outcome,
        }


class LiveMonitoring:
    def __init__(
        self,
        settings: ApiSettings,
        metrics: ApiMetrics,
        enqueue: Enqueue,
        runs: Callable[[], RunStore] | None = None,
    ) -> None:
        """``runs``: the shared store of labelled runs, whose drift verdicts the periodic check
        exports (None: no run verdicts exported)."""
        self.settings = settings
        self.runs = runs
        self.enabled = settings.monitoring
        self.metrics = metrics
        self.enqueue = enqueue
        self.config = MonitorConfig(
            window_rows=settings.drift_window_rows,
            min_rows=settings.drift_min_rows,
            drift_share=settings.drift_share_threshold,
            ks_alpha=settings.drift_ks_alpha,
            wasserstein_threshold=settings.drift_wasserstein_threshold,
            feedback_window_rows=settings.feedback_window_rows,
            feedback_min_rows=settings.feedback_min_rows,
            null_quantile=settings.drift_null_quantile,
            null_margin=settings.drift_null_margin,
        )
        self.recent = RecentPredictions(settings.feedback_memory_rows)
        self.drift_condition = SustainedCondition(settings.trigger_sustain_seconds)
        self.accuracy_condition = SustainedCondition(settings.trigger_sustain_seconds)
        self.triggers: list[Trigger] = []
        self._monitor: Monitor | None = None
        self._lock = threading.Lock()

    # -- the request path -------------------------------------------------------------------------

    def observe(
        self,
        served: ServedModel,
        numeric: np.ndarray,
        probability: np.ndarray,
        worn: np.ndarray,
        request_id: str,
    ) -> None:
        """Add a scored batch to the window and remember its predictions for feedback."""
        self.monitor_for(served).observe(numeric, probability)
        self.recent.remember(request_id, served.version, worn)

    def monitor_for(self, served: ServedModel) -> Monitor:
        """The window of the version being served; a new, empty one after a swap."""
        monitor = self._monitor
        if monitor is not None and monitor.version == served.version:
            return monitor
        with self._lock:
            if self._monitor is None or self._monitor.version != served.version:
                self._monitor = Monitor(served.reference, served.feature_map, self.config)
                self.drift_condition.since = self.accuracy_condition.since = None
                self._clear_feature_gauges()
                for name in PERFORMANCE_METRICS:
                    holdout = served.reference.holdout.get(name, math.nan)
                    self.metrics.holdout_metric.labels(metric=name).set(holdout)
            return self._monitor

    # -- statistics, gauges, triggers -------------------------------------------------------------

    def report(self, served: ServedModel) -> MonitorReport:
        """Drift and live performance now, exported to the gauges. Blocking (milliseconds)."""
        report = self.monitor_for(served).report()
        self._export(report)
        return report

    def judge_run(self, served: ServedModel, rows: pd.DataFrame) -> DriftVerdict:
        """Drift of one run's active-cutting rows (the null is built on active cutting), scored
        by the served version. Blocking (milliseconds to a second for a long run)."""
        active = rows[rows[PROCESS_COLUMN].isin(ACTIVE_PROCESSES)]
        monitor = self.monitor_for(served)
        min_rows = self.settings.drift_run_min_rows
        if active.empty:
            empty = np.zeros((0, len(monitor.feature_map.raw_columns)))
            return monitor.judge(empty, np.zeros(0), min_rows=min_rows)
        batch = of_validated(active[list(served.input_columns)], served.input_columns)
        return monitor.judge(batch.numeric, served.probability_worn(batch), min_rows=min_rows)

    def judge_and_keep(self, served: ServedModel, store: RunStore, run: str) -> DriftVerdict:
        """A stored run's drift verdict, kept with the run once there were rows enough to judge
        (the Runs view and the run-drift trigger read it back, on any replica)."""
        verdict = self.judge_run(served, store.rows(run))
        if verdict.enough_rows:
            store.record_drift(
                run,
                served.version,
                rows=verdict.rows,
                drifted=verdict.drift_detected,
                features=verdict.drifted,
            )
            recent = self._export_runs(served, store)
            if verdict.drift_detected and self.settings.retrain_on_drift:
                self._runs_trigger(served, recent)
        return verdict

    def _export_runs(self, served: ServedModel, store: RunStore) -> list[RunDrift]:
        recent = store.recent_drift(served.version, self.settings.drift_runs_window)
        self.metrics.drift_runs_judged.set(len(recent))
        self.metrics.drift_runs_drifted.set(sum(d.drifted for d in recent))
        return recent

    def _runs_trigger(self, served: ServedModel, recent: list[RunDrift]) -> None:
        """Queue a retrain when ``CNCWEAR_DRIFT_RUNS_TRIGGER`` of the last
        ``CNCWEAR_DRIFT_RUNS_WINDOW`` runs judged by the served version drifted: sustained drift
        of runs, not one unusual job (the queue joins a retrain already waiting)."""
        settings = self.settings
        drifted = [d for d in recent if d.drifted]
        if len(drifted) < settings.drift_runs_trigger:
            return
        features = sorted({f for d in drifted for f in d.drifted_features})
        reason = (
            f"drift: {len(drifted)} of the last {len(recent)} runs beyond the normal band of "
            f"version {served.version} ({', '.join(d.run for d in drifted)}): "
            f"{', '.join(features)}"
        )
        self._trigger("drift", reason, time.time())

    def check(self, served: ServedModel, now: float | None = None) -> MonitorReport:
        """One periodic check: report, export, and queue a retrain when a trigger condition has
        held long enough."""
        now = time.time() if now is None else now
        report = self.report(served)
        if self.runs is not None:
            try:
                self._export_runs(served, self.runs())
            except Exception as error:  # the window's check stands without it
                logger.warning("run drift verdicts unavailable: %s", error)
        settings = self.settings
        if self.drift_condition.update(report.drift_detected, now) and settings.retrain_on_drift:
            self._trigger("drift", _drift_reason(report, settings), now)
            self.drift_condition.restart(now)
        drop = _accuracy_drop(report)
        dropped = drop is not None and drop >= settings.accuracy_drop_threshold
        if self.accuracy_condition.update(dropped, now) and settings.retrain_on_accuracy_drop:
            assert drop is not None
            self._trigger("accuracy", _accuracy_reason(report, drop, settings), now)
            self.accuracy_condition.restart(now)
        return report

    def _trigger(self, kind: str, reason: str, now: float) -> None:
        request = RetrainRequest(reason=reason[:MAX_REASON], if_new_data=True)
        try:
            job, created = self.enqueue(request)
        except Exception as error:
            outcome, job_id = "failed", None
            logger.error("could not queue a retrain for %s: %s", kind, error)
        else:
            outcome, job_id = ("queued" if created else "joined"), job.job_id
            logger.warning("retrain %s (%s): %s", outcome, job.job_id, reason)
        self.metrics.retrain_triggers.labels(reason=kind, outcome=outcome).inc()
        self.triggers = [*self.triggers[-19:], Trigger(kind, reason, now, job_id, outcome)]

    def _export(self, report: MonitorReport) -> None:
        m = self.metrics
        m.drift_window_rows.set(report.window_rows)
        nan = math.nan
        m.drift_share.set(report.drift_share if report.enough_rows else nan)
        m.drift_detected.set(1.0 if report.drift_detected else 0.0)
        for drift in report.features:
            m.drift_feature_psi.labels(feature=drift.name).set(drift.psi)
            m.drift_feature_statistic.labels(feature=drift.name, test=drift.test.value).set(
                drift.statistic
            )
            m.drift_feature_drifted.labels(feature=drift.name).set(1.0 if drift.drifted else 0.0)
        prediction = report.prediction
        m.prediction_drift_psi.set(prediction.psi if prediction else nan)
        m.prediction_drift_detected.set(1.0 if prediction and prediction.drifted else 0.0)
        if prediction is not None:
            m.prediction_drift_statistic.labels(test=prediction.test.value).set(
                prediction.statistic
            )
        performance = report.performance
        m.live_labelled_rows.set(performance.labelled_rows)
        for name in PERFORMANCE_METRICS:
            value = performance.metrics.get(name)
            m.live_metric.labels(metric=name).set(nan if value is None else value)

    def _clear_feature_gauges(self) -> None:
        """A new version may select other features: drop the old version's series."""
        for gauge in (
            self.metrics.drift_feature_psi,
            self.metrics.drift_feature_statistic,
            self.metrics.drift_feature_drifted,
            self.metrics.prediction_drift_statistic,
        ):
            gauge.clear()


def _accuracy_drop(report: MonitorReport) -> float | None:
    """Holdout accuracy minus live accuracy, when both are known."""
    live = report.performance.metrics.get("accuracy")
    holdout = report.performance.holdout.get("accuracy")
    if live is None or holdout is None or not report.performance.enough_rows:
        return None
    return holdout - live


def _drift_reason(report: MonitorReport, settings: ApiSettings) -> str:
    drifted = report.drifted
    calibrated = any(f.calibrated for f in report.features)
    rule = (
        "beyond the normal band of the training runs"
        if calibrated
        else f"share {report.drift_share:.2f} >= {settings.drift_share_threshold:g}"
    )
    return (
        f"drift: {len(drifted)} of {len(report.features)} features drifted ({rule}) for "
        f"{settings.trigger_sustain_seconds:g} s in {report.window_rows} rows of version "
        f"{report.version}: {', '.join(drifted)}"
    )


def _accuracy_reason(report: MonitorReport, drop: float, settings: ApiSettings) -> str:
    live = report.performance.metrics["accuracy"]
    return (
        f"accuracy: live {live:.3f} on {report.performance.labelled_rows} labelled rows is "
        f"{drop:.3f} below the holdout's {report.performance.holdout['accuracy']:.3f} (limit "
        f"{settings.accuracy_drop_threshold:g}) for {settings.trigger_sustain_seconds:g} s, "
        f"version {report.version}"
    )


async def watch_drift(
    monitoring: LiveMonitoring, current: Callable[[], ServedModel | None], interval: float
) -> None:
    """Every ``interval`` seconds: statistics, gauges and triggers for the model being served."""
    while True:
        await asyncio.sleep(interval)
        served = current()
        if served is None:
            continue
        try:
            await asyncio.to_thread(monitoring.check, served)
        except Exception:  # a failed check must not stop the next ones
            logger.exception("drift check failed")
