"""Appends of ``/predict``'s batches to their runs, committed in groups.

Every request waits for its own rows to be committed, so an answered batch is in the store. But the
requests that arrive while one transaction commits share the next one: one writer thread per
process and database takes all that are waiting, opens or locks each run once, inserts the
batches in the order they came, counts each run's rows once, and commits once. Under load that is
one transaction for several requests instead of one each, and no request thread touches the
database or waits on another's lock.

A challenger's scores in shadow go through the same writer, in a transaction of their own after
the appends': a second writer would contend for SQLite's write lock, whose busy wait sleeps
whole milliseconds on ``/predict``'s path, and a score that cannot be kept must not undo a
request's rows.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import bindparam, insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from cncwear.core.errors import RunClosedError
from cncwear.core.queues import take_waiting
from cncwear.core.schema import ACTIVE_PROCESSES
from cncwear.data.runs import tables
from cncwear.data.runs.ids import RunState
from cncwear.data.runs.records import AppendOutcome

logger = logging.getLogger(__name__)

PREDICT, UPLOAD = "predict", "upload"
"""A run's source: streamed through ``/predict``, or sent whole."""

NEW_RUN_COLUMNS = (
    "run", "state", "source", "first_seen", "last_seen", "rows", "active_rows", "truncated",
    "reasons",
)  # fmt: skip
BATCH_COLUMNS = (
    "run", "received_at", "rows", "numeric", "process", "probability", "model_version",
    "request_id",
)  # fmt: skip


@dataclass
class PendingAppend:
    """One request's batch, waiting for the writer; ``done`` holds what became of it."""

    run: str
    numeric: np.ndarray
    """The schema's sensor columns, float64."""
    process: list[str]
    probability: np.ndarray
    model_version: str
    request_id: str
    max_rows: int
    """``CNCWEAR_RUN_MAX_ROWS`` of the store that sent it: past it, the rest is left out."""
    done: Future[AppendOutcome] = field(default_factory=Future)


@dataclass
class PendingScores:
    """What a challenger in shadow predicted for a stored batch, waiting for the writer."""

    run: str
    model_version: str
    first_row: int
    """Where the batch starts among the run's rows."""
    probability: np.ndarray
    done: Future[None] = field(default_factory=Future)


class GroupAppender:
    """The writer of one database in this process (see the module's docstring)."""

    def __init__(self, engine: Engine, *, fsync: bool) -> None:
        self.engine = engine
        self.sql = _APPEND_SQL[engine.dialect.name]
        self.flush_wait = fsync or self.sql.no_flush_wait is None
        self._queue: queue.SimpleQueue[PendingAppend | PendingScores] = queue.SimpleQueue()
        self._connection: Any = None
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def submit(self, pending: PendingAppend) -> Future[AppendOutcome]:
        """Hand the batch to the writer: the future is done once it is committed (or refused)."""
        self._put(pending)
        return pending.done

    def submit_scores(self, pending: PendingScores) -> Future[None]:
        """Hand a challenger's scores to the writer: done once committed (or refused)."""
        self._put(pending)
        return pending.done

    def _put(self, pending: PendingAppend | PendingScores) -> None:
        if self._thread is None:
            self._start()
        self._queue.put(pending)

    def _start(self) -> None:
        """On the first append, not before: a process that forks (a worker pool) before it
        appends gets a writer of its own, not a thread that did not survive the fork."""
        with self._starting:
            if self._thread is None:
                thread = threading.Thread(target=self._write_forever, name="run-appends")
                thread.daemon = True  # a request waiting for it is not answered: nothing is lost
                thread.start()
                self._thread = thread

    def _write_forever(self) -> None:
        while True:
            group = take_waiting(self._queue)
            appends = [p for p in group if isinstance(p, PendingAppend)]
            scores = [p for p in group if isinstance(p, PendingScores)]
            if appends:
                self._write(appends)
            if scores:
                self._write_scores(scores)

    def _write_scores(self, group: list[PendingScores]) -> None:
        """The scores in one statement; if it is refused (a run dropped meanwhile, say), each
        on its own, so that only the ones at fault fail."""
        try:
            self._insert_scores(group)
        except Exception as error:
            if len(group) == 1:
                group[0].done.set_exception(error)
                return
            for pending in group:
                try:
                    self._insert_scores([pending])
                except Exception as alone:
                    pending.done.set_exception(alone)
                else:
                    pending.done.set_result(None)
            return
        for pending in group:
            pending.done.set_result(None)

    def _insert_scores(self, group: list[PendingScores]) -> None:
        try:
            self._cursor().execute(
                self.sql.insert_scores(len(group)),
                {f"{c}_{i}": v for i, p in enumerate(group) for c, v in score_values(p).items()},
            )
            self._connection.commit()
        except Exception:
            self._rollback()
            raise

    def _write(self, group: list[PendingAppend]) -> None:
        outcomes: list[AppendOutcome | BaseException] = []
        try:
            outcomes = self._transaction(self._cursor(), group)
            self._connection.commit()
        except Exception as error:  # nothing of the group was kept: every request hears why
            self._rollback()
            outcomes = [error] * len(group)
        for pending, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                pending.done.set_exception(outcome)
            else:
                pending.done.set_result(outcome)

    def _transaction(
        self, cursor: Any, group: list[PendingAppend]
    ) -> list[AppendOutcome | BaseException]:
        if not self.flush_wait:
            cursor.execute(self.sql.no_flush_wait)  # this transaction only
        now = time.time()
        held: dict[str, int] = {}
        refused: dict[str, RunClosedError] = {}
        added: dict[str, list[Any]] = {}  # run: [rows, active rows, truncated]
        batches: list[dict[str, Any]] = []
        outcomes: list[AppendOutcome | BaseException] = []
        for pending in group:
            run = pending.run
            if run not in held and run not in refused:
                # One round trip opens the run or locks it, and says what it holds.
                cursor.execute(self.sql.open_run, {**new_run(run, PREDICT, now), "reasons": "[]"})
                state, rows, source = cursor.fetchone() or (None, 0, None)
                if state != RunState.COLLECTING or source != PREDICT:
                    refused[run] = RunClosedError(closed_message(run, str(state), str(source)))
                else:
                    held[run] = rows
            if run in refused:
                outcomes.append(refused[run])
                continue
            keep = max(0, min(len(pending.numeric), pending.max_rows - held[run]))
            truncated = keep < len(pending.numeric)
            counts = added.setdefault(run, [0, 0, False])
            if keep:
                process = pending.process[:keep]
                batches.append(
                    batch_values(
                        run, now, pending.numeric[:keep], process, pending.probability[:keep],
                        pending.model_version, pending.request_id,
                    )
                )  # fmt: skip
                counts[0] += keep
                counts[1] += sum(step in ACTIVE_PROCESSES for step in process)
            counts[2] = counts[2] or truncated
            held[run] += keep
            if truncated:
                logger.warning("run %s reached %d rows: truncated", run, pending.max_rows)
            outcomes.append(AppendOutcome(rows_kept=keep, truncated=truncated, run_rows=held[run]))
        if batches:  # in one statement: each call into the driver gives up the GIL, and under
            # load a thread waits up to the switch interval (5 ms) to get it back
            cursor.execute(
                self.sql.insert_batches(len(batches)),
                {f"{c}_{i}": v for i, values in enumerate(batches) for c, v in values.items()},
            )
        for run, (rows, active, cut) in added.items():
            cursor.execute(
                self.sql.count_rows,
                {"key": run, "added": rows, "active": active, "now": now, "cut": cut},
            )
        return outcomes

    def _cursor(self) -> Any:
        if self._connection is None:
            self._connection = self.engine.raw_connection()  # held: the writer's alone
        return self._connection.cursor()

    def _rollback(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.rollback()
        except Exception:  # a broken connection: the next group opens another
            self._connection.invalidate()
            self._connection = None


_appenders: dict[Engine, GroupAppender] = {}
_appenders_lock = threading.Lock()


def group_appender(engine: Engine, *, fsync: bool) -> GroupAppender:
    """The writer of ``engine``'s database in this process (one engine per database and process),
    started on first use. One writer, whatever each store's row limit: two would wait on each
    other in SQLite's busy loop."""
    with _appenders_lock:
        if engine not in _appenders:
            _appenders[engine] = GroupAppender(engine, fsync=fsync)
        return _appenders[engine]


def new_run(run: str, source: str, now: float) -> dict[str, Any]:
    """A run's row as its first batch (or its upload) makes it."""
    return {
        "run": run,
        "state": RunState.COLLECTING.value,
        "source": source,
        "first_seen": now,
        "last_seen": now,
        "rows": 0,
        "active_rows": 0,
        "truncated": False,
        "reasons": [],
    }


def closed_message(run: str, state: str, source: str) -> str:
    if source != PREDICT:
        return f"run {run!r} was uploaded whole: it takes no more rows; stream under a new run id"
    return f"run {run!r} is {state}: it takes no more rows; stream the next job under a new run id"


def batch_values(  # noqa: PLR0917 (the columns of a batch, in order)
    run: str,
    now: float,
    numeric: np.ndarray,
    process: list[str],
    probability: np.ndarray | None,
    model_version: str | None,
    request_id: str | None,
) -> dict[str, Any]:
    """A stored batch's row: the sensor matrix and probabilities as float64 bytes, losslessly."""
    return {
        "run": run,
        "received_at": now,
        "rows": len(numeric),
        "numeric": np.ascontiguousarray(numeric, dtype=np.float64).tobytes(),
        "process": json.dumps(process),
        "probability": None
        if probability is None
        else np.ascontiguousarray(probability, dtype=np.float64).tobytes(),
        "model_version": model_version,
        "request_id": request_id,
    }


SCORE_COLUMNS = ("run", "model_version", "first_row", "rows", "probability", "scored_at")


def score_values(pending: PendingScores) -> dict[str, Any]:
    return {
        "run": pending.run,
        "model_version": pending.model_version,
        "first_row": pending.first_row,
        "rows": len(pending.probability),
        "probability": np.ascontiguousarray(pending.probability, dtype=np.float64).tobytes(),
        "scored_at": time.time(),
    }


def _open_run(dialect: Any) -> Any:
    """Insert a run, or touch the one there (which locks its row): either way, return its state,
    rows and source, for the rest of the transaction to decide on."""
    statement = dialect.insert(tables.runs).values({c: bindparam(c) for c in NEW_RUN_COLUMNS})
    return statement.on_conflict_do_update(
        index_elements=[tables.runs.c.run],
        set_={"last_seen": statement.excluded.last_seen},
    ).returning(tables.runs.c.state, tables.runs.c.rows, tables.runs.c.source)


_COUNT_ROWS = (
    update(tables.runs)
    .where(tables.runs.c.run == bindparam("key"))
    .values(
        rows=tables.runs.c.rows + bindparam("added"),
        active_rows=tables.runs.c.active_rows + bindparam("active"),
        last_seen=bindparam("now"),
        truncated=or_(tables.runs.c.truncated, bindparam("cut")),
    )
)


@dataclass(frozen=True)
class _AppendSql:
    """The append's statements in one dialect's SQL, with named parameters, compiled once:
    SQLAlchemy's per-statement work cost more than the database's own on ``/predict``'s path."""

    dialect: Any
    module: Any
    """``sqlalchemy.dialects.sqlite`` or ``.postgresql``: their ``insert`` knows ON CONFLICT."""
    open_run: str
    count_rows: str
    no_flush_wait: str | None = None
    """PostgreSQL: commit without waiting for the disk (``CNCWEAR_RUN_APPEND_FSYNC``)."""

    @classmethod
    def of(cls, dialect: Any, module: Any, no_flush_wait: str | None = None) -> _AppendSql:
        return cls(
            dialect,
            module,
            _compiled(_open_run(module), dialect),
            _compiled(_COUNT_ROWS, dialect),
            no_flush_wait,
        )

    @functools.lru_cache(maxsize=256)  # noqa: B019 (two instances, for the life of the process)
    def insert_batches(self, count: int) -> str:
        """One INSERT of ``count`` batches, parameters ``<column>_<i>``."""
        rows: list[dict[str, Any]] = [
            {c: bindparam(f"{c}_{i}") for c in BATCH_COLUMNS} for i in range(count)
        ]
        return _compiled(insert(tables.batches).values(rows), self.dialect)

    @functools.lru_cache(maxsize=256)  # noqa: B019 (as above)
    def insert_scores(self, count: int) -> str:
        """One INSERT of ``count`` challenger scores, parameters ``<column>_<i>``; a batch scored
        twice keeps its first scores."""
        rows: list[dict[str, Any]] = [
            {c: bindparam(f"{c}_{i}") for c in SCORE_COLUMNS} for i in range(count)
        ]
        statement = self.module.insert(tables.shadow).values(rows).on_conflict_do_nothing()
        return _compiled(statement, self.dialect)


def _compiled(statement: Any, dialect: Any) -> str:
    return str(statement.compile(dialect=dialect))


_APPEND_SQL = {
    "sqlite": _AppendSql.of(sqlite.pysqlite.dialect(paramstyle="named"), sqlite),
    "postgresql": _AppendSql.of(
        postgresql.psycopg.dialect(),  # type: ignore[no-untyped-call]
        postgresql,
        no_flush_wait="SET LOCAL synchronous_commit = off",
    ),
}
