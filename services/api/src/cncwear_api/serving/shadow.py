"""The challenger in shadow, live: it scores the rows ``/predict`` answered for a run, off the
request path, and is promoted or rejected on the labelled runs both models scored.

The request path only hands the validated batch over (a ``put_nowait``): one worker thread per
replica scores it with the challenger and keeps the probabilities in the shared store, keyed by run
and row. The queue is bounded in rows (``CNCWEAR_SHADOW_QUEUE_ROWS``); a batch that would go past
the bound is dropped for the challenger and counted, so the champion's answer never waits for it.
The decision (``docs/promotion.md``) is taken when a run is labelled and every
``CNCWEAR_SHADOW_CHECK_INTERVAL_SECONDS`` (the max-age rule needs no label).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cncwear.core.queues import take_waiting
from cncwear.core.schema import PROCESS_COLUMN, numeric_columns
from cncwear.monitoring.shadow import ShadowComparison, compare_runs
from cncwear.monitoring.shadow_decider import ChallengerVerdict, decide_challenger
from cncwear.serving.batch import Batch
from cncwear_api.core.metrics import ApiMetrics
from cncwear_api.core.settings import ApiSettings
from cncwear_api.serving.holder import ModelHolder, ServedModel
from cncwear_api.serving.runs import Runs

logger = logging.getLogger(__name__)

SCORED, DROPPED, FAILED = "scored", "dropped", "failed"


@dataclass(frozen=True)
class ShadowBatch:
    """A batch ``/predict`` answered and stored in a run, for the challenger."""

    run: str
    first_row: int
    """Where the batch starts among the run's rows."""
    batch: Batch
    input_columns: list[str]
    """The champion's input columns, the order of ``batch.numeric``."""


@dataclass(frozen=True)
class ShadowReport:
    """The latest decision this replica took, with its evidence."""

    comparison: ShadowComparison
    verdict: ChallengerVerdict
    at: float


class ShadowScorer:
    def __init__(
        self, settings: ApiSettings, challenger: ModelHolder, runs: Runs, metrics: ApiMetrics
    ) -> None:
        self.settings = settings
        self.challenger = challenger
        self.runs = runs
        self.metrics = metrics
        self.limit = settings.shadow_queue_rows
        self._queue: queue.Queue[ShadowBatch] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self._counted = {
            o: metrics.shadow_rows.labels(outcome=o) for o in (SCORED, DROPPED, FAILED)
        }
        self.last: ShadowReport | None = None
        metrics.shadow_max_age.set(settings.shadow_max_age_seconds)

    # -- rows in (the request path) --------------------------------------------------------------

    def offer(self, run: str, first_row: int, batch: Batch, input_columns: list[str]) -> bool:
        """Hand a stored batch to the challenger, or drop it when the queue is full. Never
        blocks: a lock held for an addition, and a ``put_nowait``."""
        rows = len(batch.numeric)
        if rows == 0:
            return True
        with self._idle:
            if self._pending + rows > self.limit:
                self._counted[DROPPED].inc(rows)
                return False
            self._pending += rows
        self._ensure_worker()
        self._queue.put_nowait(ShadowBatch(run, first_row, batch, input_columns))
        return True

    def _ensure_worker(self) -> None:
        """The worker running: without a lock when it is (the request path's case)."""
        if self._thread is None or not self._thread.is_alive():
            self._start()

    def _start(self) -> None:
        """Start the worker, or start it again if it died: the batches queued behind the dead
        one are scored by the next."""
        with self._starting:
            if self._thread is not None and self._thread.is_alive():
                return
            if self._thread is not None:
                logger.warning("the challenger's scoring worker had stopped; starting it again")
            thread = threading.Thread(target=self._score_forever, name="shadow-scoring")
            thread.daemon = True  # what it has not scored yet is only the challenger's loss
            thread.start()
            self._thread = thread

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every batch handed over so far is scored (or ``timeout``): a label's
        decision then sees the run's last rows."""
        with self._idle:
            waiting = self._pending > 0
        if waiting:
            self._ensure_worker()  # batches queued behind a killed worker
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    # -- the worker ------------------------------------------------------------------------------

    def _score_forever(self) -> None:
        while True:
            group = take_waiting(self._queue)  # one call and one write for them all
            outcomes = [FAILED] * len(group)  # also when the thread itself is killed: the next
            try:  # offer restarts it
                outcomes = self._score(group)
            except Exception as error:  # the next batches are scored all the same
                logger.warning("challenger could not score %d batch(es): %s", len(group), error)
            finally:
                rows = 0
                for item, outcome in zip(group, outcomes, strict=True):
                    self._counted[outcome].inc(len(item.batch.numeric))
                    rows += len(item.batch.numeric)
                with self._idle:
                    self._pending -= rows
                    self._idle.notify_all()

    def _score(self, group: list[ShadowBatch]) -> list[str]:
        """Each batch's outcome: scored and kept, failed, or dropped (no challenger now). The
        group is scored in one call: each call takes the GIL back from the request path, which
        then waits for it (up to the 5 ms switch interval) more often than it needs to."""
        challenger = self.challenger.current
        if challenger is None:
            return [DROPPED] * len(group)
        batches = [_for_model(i.batch, i.input_columns, challenger.input_columns) for i in group]
        together = Batch(
            np.concatenate([b.numeric for b in batches]),
            [step for b in batches for step in b.process],
        )
        probability = challenger.probability_worn(together)
        ends = np.cumsum([len(b.numeric) for b in batches])[:-1]
        written = [
            self.runs.store.submit_shadow(item.run, challenger.version, item.first_row, scores)
            for item, scores in zip(group, np.split(probability, ends), strict=True)
        ]
        outcomes = []
        for item, future in zip(group, written, strict=True):
            try:
                future.result()
            except Exception as error:
                logger.warning("challenger's scores of run %s not kept: %s", item.run, error)
                outcomes.append(FAILED)
            else:
                outcomes.append(SCORED)
        return outcomes

    # -- the decision ----------------------------------------------------------------------------

    def decide(self, champion: ServedModel | None, now: float | None = None) -> ShadowReport | None:
        """Compare champion and challenger on the labelled runs both scored, export the figures,
        and let :func:`decide_challenger` promote, reject or wait. None when this replica has no
        champion or no challenger loaded. Blocking: call it from a thread."""
        challenger = self.challenger.current
        if champion is None or challenger is None:
            return None
        comparison = compare_runs(self.runs.store.shadow_rows(champion.version, challenger.version))
        verdict = decide_challenger(
            self.challenger.store, challenger.version, comparison.runs, now=now
        )
        decision = verdict.decision
        outcome = str(decision.outcome)
        if verdict.move is None and decision.moves:
            outcome = "superseded"
        self.metrics.shadow_decisions.labels(decision=outcome).inc()
        self._export(comparison, decision.p_value)
        report = ShadowReport(comparison, verdict, time.time())
        self.last = report
        if verdict.move is not None:
            self.metrics.challenger_age.set(float("nan"))
            logger.info("shadow decision on version %s: %s", verdict.version, decision.reason)
        return report

    def _export(self, comparison: ShadowComparison, p_value: float) -> None:
        nan = float("nan")
        self.metrics.shadow_agreement.set(_or(comparison.agreement, nan))
        self.metrics.live_accuracy.labels(role="champion").set(
            _or(comparison.champion_accuracy, nan)
        )
        self.metrics.live_accuracy.labels(role="challenger").set(
            _or(comparison.challenger_accuracy, nan)
        )
        self.metrics.shadow_labelled_runs.set(len(comparison.runs))
        self.metrics.shadow_p_value.set(p_value)


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _for_model(batch: Batch, columns: list[str], wanted: list[str]) -> Batch:
    """The batch in another model's columns (a challenger may take other ones than the
    champion): the same object when they are the same."""
    if wanted == columns:
        return batch
    have, need = numeric_columns(columns), numeric_columns(wanted)
    missing = [c for c in need if c not in have]
    if missing or (PROCESS_COLUMN in wanted and PROCESS_COLUMN not in columns):
        raise ValueError(f"the champion's rows lack the challenger's column(s) {missing}")
    positions = [have.index(c) for c in need]
    process = batch.process if PROCESS_COLUMN in wanted else []
    return Batch(np.ascontiguousarray(batch.numeric[:, positions]), process)


async def watch_shadow(
    scorer: ShadowScorer,
    champion: Callable[[], ServedModel | None],
    interval: float,
    wake: asyncio.Event,
) -> None:
    """Take the shadow decision every ``interval`` seconds (a challenger past its max age is
    rejected without a label); a move wakes the registry watch, which swaps the holders."""
    while True:
        await asyncio.sleep(interval)
        try:
            report = await asyncio.to_thread(scorer.decide, champion())
        except Exception:  # the next pass decides
            logger.exception("the shadow decision failed")
            continue
        if report is not None and report.verdict.move is not None:
            wake.set()
