"""The labelled runs' store: runs, their rows as answered, and the dataset versions made of them.

One SQLAlchemy engine per database and process, on SQLite under ``CNCWEAR_HOME`` for one machine
(WAL: several processes write, readers never wait) or on a PostgreSQL that every replica and worker
shares (``CNCWEAR_DATA_STORE_URL``). Each change is one transaction: once :meth:`RunStore.append`
returns, the rows are committed, so a replica killed right after answering has lost nothing it
answered. A run's state only moves forward (collecting, then accepted or rejected, or withdrawn),
and a run that is not collecting takes no more rows, so a dataset version never holds a run
half-written.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from cncwear.core.errors import (
    DataError,
    DataVersionNotFoundError,
    RunClosedError,
    RunNotFoundError,
)
from cncwear.core.schema import (
    ACTIVE_PROCESSES,
    PROCESS_COLUMN,
    SENSOR_NUMERIC_COLUMNS,
    THRESHOLD,
    numeric_columns,
)
from cncwear.core.settings import Settings
from cncwear.data.runs import tables
from cncwear.data.runs.appends import (
    UPLOAD,
    PendingAppend,
    PendingScores,
    batch_values,
    group_appender,
    new_run,
)
from cncwear.data.runs.base import BaseData
from cncwear.data.runs.checks import Reference, check_run, run_content_hash
from cncwear.data.runs.ids import RunLabel, RunState, check_run_id
from cncwear.data.runs.records import (
    AppendOutcome,
    Confusion,
    DatasetVersion,
    LivePerformance,
    RunDrift,
    RunPage,
    RunRecord,
    ShadowRows,
    StoreStats,
    VersionRun,
)

logger = logging.getLogger(__name__)

UPLOAD_CHUNK_ROWS = 10_000
"""Rows per stored batch of an upload (``/predict`` stores each request's batch as it came)."""
EXPIRED_COUNTER = "runs_expired"
AUTOCHECKPOINT_PAGES = 10_000
"""SQLite's write-ahead log is copied into the database by the commit that takes it past this
many pages (40 MB), unless a background checkpoint has done it first."""
LABELLED = (RunState.ACCEPTED, RunState.REJECTED)
"""States of a run with a label that stands (a withdrawn run's label was wrong, or in doubt)."""


class Batch(Protocol):
    """What the store takes of a validated batch (``cncwear.serving.batch.Batch`` is one)."""

    @property
    def numeric(self) -> np.ndarray: ...

    @property
    def process(self) -> list[str]: ...


class RunStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = _engine(settings.data_store_uri(), settings.run_append_fsync)
        self._appender = group_appender(self.engine, fsync=settings.run_append_fsync)

    # -- rows in --------------------------------------------------------------------------------

    def append(
        self,
        run: str,
        batch: Batch,
        *,
        input_columns: Sequence[str],
        probability: np.ndarray,
        model_version: str,
        request_id: str,
    ) -> AppendOutcome:
        """Add a batch that ``/predict`` answered to its run (opened by its first batch), with what
        the champion predicted; committed on return. Past ``CNCWEAR_RUN_MAX_ROWS`` the rest of the
        batch is left out and the run marked truncated."""
        return self.submit(
            run, batch, input_columns=input_columns, probability=probability,
            model_version=model_version, request_id=request_id,
        ).result()  # fmt: skip

    def submit(
        self,
        run: str,
        batch: Batch,
        *,
        input_columns: Sequence[str],
        probability: np.ndarray,
        model_version: str,
        request_id: str,
    ) -> Future[AppendOutcome]:
        """:meth:`append` without the wait: done once committed (or refused). An event loop
        awaits it without a thread of its own (``asyncio.wrap_future``). An invalid run id is
        refused at once."""
        return self._appender.submit(
            PendingAppend(
                run=check_run_id(run),
                numeric=_sensor_matrix(batch.numeric, input_columns),
                process=list(batch.process) or [""] * len(batch.numeric),
                probability=probability,
                model_version=model_version,
                request_id=request_id,
                max_rows=self.settings.run_max_rows,
            )
        )

    def upload(
        self,
        run: str,
        batch: Batch,
        *,
        input_columns: Sequence[str],
        label: RunLabel,
        reference: Reference,
        progress: Callable[[int], None] | None = None,
    ) -> RunRecord:
        """Store a whole labelled run recorded elsewhere and check it, in one transaction: the run
        appears accepted or rejected, never half there. ``progress`` hears the rows stored."""
        run = check_run_id(run)
        numeric = _sensor_matrix(batch.numeric, input_columns)
        process = list(batch.process) or [""] * len(numeric)
        kept = min(len(numeric), self.settings.run_max_rows)
        now = time.time()
        with self.engine.begin() as db:
            try:
                with db.begin_nested():
                    db.execute(insert(tables.runs).values(**new_run(run, UPLOAD, now)))
            except IntegrityError:
                raise RunClosedError(f"run {run!r} exists already: choose another id") from None
            active = 0
            for start in range(0, kept, UPLOAD_CHUNK_ROWS):
                stop = min(kept, start + UPLOAD_CHUNK_ROWS)
                chunk = process[start:stop]
                values = batch_values(run, now, numeric[start:stop], chunk, None, None, None)
                db.execute(insert(tables.batches), values)
                active += sum(step in ACTIVE_PROCESSES for step in chunk)
                if progress is not None:
                    progress(stop - start)
            db.execute(
                update(tables.runs)
                .where(tables.runs.c.run == run)
                .values(rows=kept, active_rows=active, truncated=kept < len(numeric))
            )
            self._close(db, run, label, reference, now)
        return self.get(run)

    # -- labels and withdrawals -------------------------------------------------------------------

    def label(self, run: str, label: RunLabel, reference: Reference) -> RunRecord:
        """Close a collecting run with its label and check it: accepted, or rejected with reasons.
        Rows arriving meanwhile wait for the transaction, then find the run closed."""
        run = check_run_id(run)
        now = time.time()
        with self.engine.begin() as db:
            claimed = db.execute(
                update(tables.runs)
                .where(tables.runs.c.run == run, tables.runs.c.state == RunState.COLLECTING)
                .values(labelled_at=now)
            )
            if claimed.rowcount == 0:
                state = self._state(db, run)
                raise RunClosedError(
                    f"run {run!r} is {state} already: a run is labelled once (withdraw it and "
                    "send its rows again under a new id to relabel)"
                )
            self._close(db, run, label, reference, now)
        return self.get(run)

    def withdraw(self, run: str) -> RunRecord:
        """Take a run out of every dataset version made from now on; it stays listed, rows kept."""
        run = check_run_id(run)
        with self.engine.begin() as db:
            self._state(db, run)
            db.execute(
                update(tables.runs)
                .where(tables.runs.c.run == run, tables.runs.c.state != RunState.WITHDRAWN)
                .values(state=RunState.WITHDRAWN, withdrawn_at=time.time())
            )
        return self.get(run)

    def _close(
        self, db: Connection, run: str, label: RunLabel, reference: Reference, now: float
    ) -> None:
        rows = self._rows(db, run)
        others = db.execute(
            select(tables.runs.c.content_hash).where(
                tables.runs.c.state == RunState.ACCEPTED, tables.runs.c.run != run
            )
        ).scalars()
        reasons = check_run(rows, label, reference, self.settings, {h for h in others if h})
        state = RunState.REJECTED if reasons else RunState.ACCEPTED
        db.execute(
            update(tables.runs)
            .where(tables.runs.c.run == run)
            .values(
                state=state,
                labelled_at=now,
                tool_condition=label.tool_condition,
                feedrate=label.feedrate,
                clamp_pressure=label.clamp_pressure,
                material=label.material,
                content_hash=run_content_hash(rows),
                reasons=reasons,
                live=_confusion_by_version(rows, label.label) or None,
            )
        )
        logger.info("run %s labelled %s: %s %s", run, label.tool_condition, state, reasons or "")

    # -- reading ----------------------------------------------------------------------------------

    def get(self, run: str) -> RunRecord:
        run = check_run_id(run)
        with self.engine.connect() as db:
            found = db.execute(select(tables.runs).where(tables.runs.c.run == run)).one_or_none()
            if found is None:
                raise RunNotFoundError(f"no run {run!r}")
            return self._records(db, [found])[0]

    def list(self, state: RunState | None = None, limit: int = 50, offset: int = 0) -> RunPage:
        """Runs newest first (by their last row or label)."""
        query = select(tables.runs)
        count = select(func.count()).select_from(tables.runs)
        if state is not None:
            query = query.where(tables.runs.c.state == state)
            count = count.where(tables.runs.c.state == state)
        query = query.order_by(tables.runs.c.last_seen.desc(), tables.runs.c.run)
        with self.engine.connect() as db:
            found = db.execute(query.limit(limit).offset(offset)).all()
            return RunPage(runs=self._records(db, found), total=int(db.execute(count).scalar_one()))

    def rows(self, run: str) -> pd.DataFrame:
        """The run's rows in the order they were answered: the readings and the machining step,
        with ``probability_worn`` and ``model_version`` as served (None for uploads)."""
        run = check_run_id(run)
        with self.engine.connect() as db:
            self._state(db, run)
            return self._rows(db, run)

    def _rows(self, db: Connection, run: str) -> pd.DataFrame:
        stored = db.execute(
            select(
                tables.batches.c.rows,
                tables.batches.c.numeric,
                tables.batches.c.process,
                tables.batches.c.probability,
                tables.batches.c.model_version,
            )
            .where(tables.batches.c.run == run)
            .order_by(tables.batches.c.id)
        ).all()
        width = len(SENSOR_NUMERIC_COLUMNS)
        numeric = [
            np.frombuffer(b.numeric, dtype=np.float64).reshape(b.rows, width) for b in stored
        ]
        frame = pd.DataFrame(
            np.concatenate(numeric) if numeric else np.empty((0, width)),
            columns=list(SENSOR_NUMERIC_COLUMNS),
        )
        frame[PROCESS_COLUMN] = [step for b in stored for step in json.loads(b.process)]
        frame["probability_worn"] = np.concatenate(
            [
                np.frombuffer(b.probability, dtype=np.float64)
                if b.probability is not None
                else np.full(b.rows, np.nan)
                for b in stored
            ]
            or [np.empty(0)]
        )
        frame["model_version"] = [b.model_version for b in stored for _ in range(b.rows)]
        return frame

    def _state(self, db: Connection, run: str) -> RunState:
        state = db.execute(
            select(tables.runs.c.state).where(tables.runs.c.run == run)
        ).scalar_one_or_none()
        if state is None:
            raise RunNotFoundError(f"no run {run!r}")
        return RunState(state)

    def _records(self, db: Connection, found: Sequence[Row[Any]]) -> builtins.list[RunRecord]:
        keys = [r.run for r in found]
        served: dict[str, list[str]] = {k: [] for k in keys}
        for key, version in db.execute(
            select(tables.batches.c.run, tables.batches.c.model_version)
            .where(tables.batches.c.run.in_(keys), tables.batches.c.model_version.is_not(None))
            .distinct()
        ):
            served[key].append(version)
        included: dict[str, list[str]] = {k: [] for k in keys}
        for key, version in db.execute(
            select(tables.version_runs.c.run, tables.version_runs.c.version)
            .join(tables.versions, tables.versions.c.id == tables.version_runs.c.version)
            .where(tables.version_runs.c.run.in_(keys))
            .order_by(tables.versions.c.made_at)
        ):
            included[key].append(version)
        drift = {
            d.run: d
            for d in self._drift(db, tables.drift.c.run.in_(keys), limit=None, newest_last=True)
        }
        return [
            _record(r, sorted(served[r.run], key=_version_order), included[r.run], drift.get(r.run))
            for r in found
        ]

    # -- drift verdicts ---------------------------------------------------------------------------

    def record_drift(
        self, run: str, model_version: str, *, rows: int, drifted: bool, features: Sequence[str]
    ) -> None:
        """Keep a run's drift verdict by a model version (replacing its earlier one)."""
        run = check_run_id(run)
        with self.engine.begin() as db:
            self._state(db, run)
            db.execute(
                delete(tables.drift).where(
                    tables.drift.c.run == run, tables.drift.c.model_version == model_version
                )
            )
            db.execute(
                insert(tables.drift).values(
                    run=run,
                    model_version=model_version,
                    judged_at=time.time(),
                    rows=rows,
                    drifted=drifted,
                    drifted_features=list(features),
                )
            )

    def recent_drift(self, model_version: str, limit: int = 10) -> builtins.list[RunDrift]:
        """The latest runs' verdicts by ``model_version``, newest first."""
        with self.engine.connect() as db:
            return self._drift(db, tables.drift.c.model_version == model_version, limit=limit)

    def _drift(
        self, db: Connection, where: Any, *, limit: int | None, newest_last: bool = False
    ) -> builtins.list[RunDrift]:
        order = tables.drift.c.judged_at.asc() if newest_last else tables.drift.c.judged_at.desc()
        query = select(tables.drift).where(where).order_by(order)
        if limit is not None:
            query = query.limit(limit)
        return [
            RunDrift(
                run=d.run,
                model_version=d.model_version,
                judged_at=d.judged_at,
                rows=d.rows,
                drifted=bool(d.drifted),
                drifted_features=list(d.drifted_features or []),
            )
            for d in db.execute(query)
        ]

    def live_performance(self, model_version: str | None = None) -> LivePerformance:
        """The predictions served for labelled runs (accepted or rejected) against their labels:
        the same figures on every replica, after any restart."""
        with self.engine.connect() as db:
            lives = db.execute(
                select(tables.runs.c.live).where(
                    tables.runs.c.state.in_(LABELLED), tables.runs.c.live.is_not(None)
                )
            ).scalars()
            counts: list[Confusion] = []
            runs = 0
            for live in lives:
                chosen = [
                    tuple(c) for v, c in live.items() if model_version is None or v == model_version
                ]
                if chosen:
                    runs += 1
                    counts += chosen  # type: ignore[arg-type]
        return LivePerformance.of(counts, runs)

    # -- a challenger in shadow -------------------------------------------------------------------

    def record_shadow(
        self, run: str, model_version: str, first_row: int, probability: np.ndarray
    ) -> None:
        """Keep what challenger ``model_version`` predicted for the run's rows from ``first_row``
        on (a batch ``/predict`` answered); a batch scored twice keeps its first scores."""
        self.submit_shadow(run, model_version, first_row, probability).result()

    def submit_shadow(
        self, run: str, model_version: str, first_row: int, probability: np.ndarray
    ) -> Future[None]:
        """:meth:`record_shadow` without the wait: the scores go to the process's one writer of
        this database, which commits those that arrive together at once."""
        return self._appender.submit_scores(
            PendingScores(check_run_id(run), model_version, first_row, probability)
        )

    def shadow_rows(self, champion: str, challenger: str) -> builtins.list[ShadowRows]:
        """The labelled runs (accepted or rejected) that both versions scored rows of, oldest
        label first, each with both models' probabilities aligned by row."""
        scored = (
            select(tables.shadow.c.run)
            .where(tables.shadow.c.model_version == challenger)
            .distinct()
        )
        with self.engine.connect() as db:
            found = db.execute(
                select(tables.runs)
                .where(tables.runs.c.state.in_(LABELLED), tables.runs.c.run.in_(scored))
                .order_by(tables.runs.c.labelled_at, tables.runs.c.run)
            ).all()
            out = []
            for r in found:
                champion_rows = self._champion_probabilities(db, r.run, champion)
                challenger_rows = np.full(len(champion_rows), np.nan)
                for part in db.execute(
                    select(
                        tables.shadow.c.first_row,
                        tables.shadow.c.rows,
                        tables.shadow.c.probability,
                    ).where(
                        tables.shadow.c.run == r.run, tables.shadow.c.model_version == challenger
                    )
                ):
                    stop = min(len(challenger_rows), part.first_row + part.rows)
                    values = np.frombuffer(part.probability, dtype=np.float64)
                    challenger_rows[part.first_row : stop] = values[: stop - part.first_row]
                if np.isfinite(champion_rows).any() and np.isfinite(challenger_rows).any():
                    out.append(ShadowRows(r.run, _label(r).label, champion_rows, challenger_rows))
        return out

    def _champion_probabilities(self, db: Connection, run: str, version: str) -> np.ndarray:
        parts = [
            np.frombuffer(b.probability, dtype=np.float64)
            if b.probability is not None and b.model_version == version
            else np.full(b.rows, np.nan)
            for b in db.execute(
                select(
                    tables.batches.c.rows,
                    tables.batches.c.probability,
                    tables.batches.c.model_version,
                )
                .where(tables.batches.c.run == run)
                .order_by(tables.batches.c.id)
            )
        ]
        return np.concatenate(parts) if parts else np.empty(0)

    # -- bounds -----------------------------------------------------------------------------------

    def expire(self, now: float | None = None) -> int:
        """Drop the runs left collecting, unlabelled, for longer than ``CNCWEAR_RUN_TTL_SECONDS``
        since their last row; counted for good in the store. Returns how many went."""
        cutoff = (now if now is not None else time.time()) - self.settings.run_ttl_seconds
        with self.engine.begin() as db:
            stale = (
                db.execute(
                    select(tables.runs.c.run).where(
                        tables.runs.c.state == RunState.COLLECTING,
                        tables.runs.c.last_seen < cutoff,
                    )
                )
                .scalars()
                .all()
            )
            if not stale:
                return 0
            db.execute(delete(tables.batches).where(tables.batches.c.run.in_(stale)))
            db.execute(delete(tables.drift).where(tables.drift.c.run.in_(stale)))
            db.execute(delete(tables.shadow).where(tables.shadow.c.run.in_(stale)))
            db.execute(delete(tables.runs).where(tables.runs.c.run.in_(stale)))
            db.execute(_insert_ignore(db, tables.counters, {"name": EXPIRED_COUNTER, "value": 0}))
            db.execute(
                update(tables.counters)
                .where(tables.counters.c.name == EXPIRED_COUNTER)
                .values(value=tables.counters.c.value + len(stale))
            )
        logger.warning("dropped %d run(s) left unlabelled past the TTL", len(stale))
        return len(stale)

    def stats(self) -> StoreStats:
        with self.engine.connect() as db:
            by_state: dict[str, int] = dict(
                db.execute(
                    select(tables.runs.c.state, func.count()).group_by(tables.runs.c.state)
                ).all()
            )
            rows = db.execute(select(func.coalesce(func.sum(tables.runs.c.rows), 0))).scalar_one()
            truncated = db.execute(
                select(func.count()).where(tables.runs.c.truncated.is_(True))
            ).scalar_one()
            expired = db.execute(
                select(tables.counters.c.value).where(tables.counters.c.name == EXPIRED_COUNTER)
            ).scalar_one_or_none()
            size = _size_bytes(db)
        return StoreStats(
            runs={state: int(by_state.get(state.value, 0)) for state in RunState},
            rows=int(rows),
            bytes=size,
            expired_total=int(expired or 0),
            truncated_runs=int(truncated),
        )

    def checkpoint(self) -> None:
        """Copy SQLite's write-ahead log into the database without waiting for readers or
        writers (a passive checkpoint): called every second by a process that appends, so that no
        request pays for it. Nothing to do on PostgreSQL."""
        if self.engine.dialect.name != "sqlite":
            return
        with self.engine.connect() as db:
            db.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    # -- dataset versions -------------------------------------------------------------------------

    def current_version(self, base: BaseData) -> DatasetVersion:
        """The version made of ``base`` and the runs accepted now: made the first time it is
        asked for, the same one (same id, same groups) every time after."""
        with self.engine.begin() as db:
            accepted = db.execute(
                select(tables.runs)
                .where(tables.runs.c.state == RunState.ACCEPTED)
                .order_by(tables.runs.c.labelled_at, tables.runs.c.run)
            ).all()
            experiments = base.experiment_labels()
            first_group = max(experiments, default=0) + 1
            members = [
                VersionRun(
                    run=r.run,
                    group=first_group + i,
                    label=_label(r),
                    content_hash=r.content_hash,
                    rows=r.rows,
                )
                for i, r in enumerate(accepted)
            ]
            version_id = _version_id(base.content_hash, members)
            existing = self._version(db, version_id)
            if existing is not None:
                return existing
            version = DatasetVersion(
                id=version_id,
                made_at=time.time(),
                base_hash=base.content_hash,
                base_source=base.source,
                base_experiments=experiments,
                runs=members,
            )
            try:
                with db.begin_nested():
                    _insert_version(db, version)
            except IntegrityError:  # made by another process just now: the same content
                made = self._version(db, version_id)
                assert made is not None
                return made
        logger.info(
            "dataset version %s: base %s + %d run(s)", version_id, base.source, len(members)
        )
        return version

    def version(self, version_id: str) -> DatasetVersion:
        with self.engine.connect() as db:
            found = self._version(db, version_id)
        if found is None:
            raise DataVersionNotFoundError(f"no dataset version {version_id!r}")
        return found

    def versions(self, limit: int = 50) -> builtins.list[DatasetVersion]:
        """The dataset versions, newest first."""
        with self.engine.connect() as db:
            ids = db.execute(
                select(tables.versions.c.id).order_by(tables.versions.c.made_at.desc()).limit(limit)
            ).scalars()
            return [v for i in list(ids) if (v := self._version(db, i)) is not None]

    def accepted_since(self, version_id: str | None) -> builtins.list[str]:
        """Accepted runs that dataset version ``version_id`` does not hold (all, for None)."""
        query = select(tables.runs.c.run).where(tables.runs.c.state == RunState.ACCEPTED)
        if version_id is not None:
            held = select(tables.version_runs.c.run).where(
                tables.version_runs.c.version == version_id
            )
            query = query.where(tables.runs.c.run.not_in(held))
        with self.engine.connect() as db:
            return list(db.execute(query.order_by(tables.runs.c.labelled_at)).scalars())

    def version_rows(self, member: VersionRun) -> pd.DataFrame:
        """A run's rows for a dataset version, checked against the hash the version recorded."""
        rows = self.rows(member.run)
        if run_content_hash(rows) != member.content_hash:
            raise DataError(
                f"the rows of run {member.run!r} no longer match what its dataset version recorded"
            )
        return rows

    def _version(self, db: Connection, version_id: str) -> DatasetVersion | None:
        found = db.execute(
            select(tables.versions).where(tables.versions.c.id == version_id)
        ).one_or_none()
        if found is None:
            return None
        members = db.execute(
            select(tables.version_runs)
            .where(tables.version_runs.c.version == version_id)
            .order_by(tables.version_runs.c.group)
        ).all()
        return DatasetVersion(
            id=found.id,
            made_at=found.made_at,
            base_hash=found.base_hash,
            base_source=found.base_source,
            base_experiments={int(k): v for k, v in found.base_experiments.items()},
            runs=[
                VersionRun(
                    run=m.run,
                    group=m.group,
                    label=_label(m),
                    content_hash=m.content_hash,
                    rows=m.rows,
                )
                for m in members
            ],
        )


# -- helpers ---------------------------------------------------------------------------------------


def _sensor_matrix(numeric: np.ndarray, input_columns: Sequence[str]) -> np.ndarray:
    """The schema's sensor columns of a batch, whatever else the model takes besides."""
    return numeric[:, _sensor_positions(input_columns)]


MAX_COLUMN_LISTS = 64
_positions: dict[int, tuple[Sequence[str], slice | np.ndarray]] = {}


def _sensor_positions(input_columns: Sequence[str]) -> slice | np.ndarray:
    """Where the sensor columns are among the model's numeric ones: a slice when they come
    first and in order (the bundled models; no copy on ``/predict``'s path), else an index."""
    known = _positions.get(id(input_columns))
    if known is not None and known[0] is input_columns:
        return known[1]
    names = numeric_columns(input_columns)
    missing = [c for c in SENSOR_NUMERIC_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"the model's columns lack sensor column(s) {missing}")
    positions = [names.index(c) for c in SENSOR_NUMERIC_COLUMNS]
    where: slice | np.ndarray = (
        slice(0, len(positions))
        if positions == list(range(len(positions)))
        else np.asarray(positions)
    )
    if len(_positions) >= MAX_COLUMN_LISTS:  # callers that build a new list each time
        _positions.clear()
    _positions[id(input_columns)] = (input_columns, where)  # kept alive: the id stays its own
    return where


def _confusion_by_version(rows: pd.DataFrame, label: int) -> dict[str, list[int]]:
    served = rows.dropna(subset=["probability_worn"])
    out: dict[str, list[int]] = {}
    for version, part in served.groupby("model_version"):
        worn = int((part["probability_worn"].to_numpy() >= THRESHOLD).sum())
        unworn = len(part) - worn
        # (tn, fp, fn, tp): a worn tool's rows are positives.
        out[str(version)] = [0, 0, unworn, worn] if label == 1 else [unworn, worn, 0, 0]
    return out


def _label(row: Row[Any]) -> RunLabel:
    return RunLabel(
        tool_condition=row.tool_condition,
        feedrate=row.feedrate,
        clamp_pressure=row.clamp_pressure,
        material=row.material,
    )


def _record(
    row: Row[Any], served: list[str], included: list[str], drift: RunDrift | None
) -> RunRecord:
    live = None
    if row.live is not None:
        live = LivePerformance.of([tuple(c) for c in row.live.values()], runs=1)  # type: ignore[misc]
    return RunRecord(
        run=row.run,
        state=RunState(row.state),
        source=row.source,
        label=None if row.tool_condition is None else _label(row),
        rows=row.rows,
        active_rows=row.active_rows,
        truncated=bool(row.truncated),
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        labelled_at=row.labelled_at,
        withdrawn_at=row.withdrawn_at,
        content_hash=row.content_hash,
        reasons=list(row.reasons or []),
        model_versions=served,
        live=live,
        dataset_versions=included,
        drift=drift,
    )


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (10**9, version)


def _version_id(base_hash: str, members: Sequence[VersionRun]) -> str:
    digest = hashlib.sha256(f"base {base_hash}\n".encode())
    for m in members:
        label = m.label
        digest.update(
            json.dumps(
                [
                    m.run,
                    m.group,
                    m.content_hash,
                    label.tool_condition,
                    label.feedrate,
                    label.clamp_pressure,
                    label.material,
                ]
            ).encode()
        )
    return digest.hexdigest()[:16]


def _insert_version(db: Connection, version: DatasetVersion) -> None:
    db.execute(
        insert(tables.versions).values(
            id=version.id,
            made_at=version.made_at,
            base_hash=version.base_hash,
            base_source=version.base_source,
            base_experiments={str(k): v for k, v in version.base_experiments.items()},
            counts=version.counts(),
        )
    )
    for m in version.runs:
        db.execute(
            insert(tables.version_runs).values(
                version=version.id,
                run=m.run,
                group=m.group,
                tool_condition=m.label.tool_condition,
                feedrate=m.label.feedrate,
                clamp_pressure=m.label.clamp_pressure,
                material=m.label.material,
                content_hash=m.content_hash,
                rows=m.rows,
            )
        )


def _insert_ignore(db: Connection, table: Any, values: dict[str, Any]) -> Any:
    """``INSERT`` that leaves an existing row be, in the dialect's words."""
    dialect = postgresql if db.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).values(**values).on_conflict_do_nothing()


def _size_bytes(db: Connection) -> int | None:
    if db.dialect.name == "sqlite":
        pages = db.execute(text("PRAGMA page_count")).scalar_one()
        size = db.execute(text("PRAGMA page_size")).scalar_one()
        return int(pages) * int(size)
    if db.dialect.name == "postgresql":
        names = [t.name for t in tables.metadata.sorted_tables]
        total = db.execute(
            text(
                "SELECT sum(pg_total_relation_size(quote_ident(t))) "
                "FROM unnest(CAST(:names AS text[])) AS t"
            ),
            {"names": names},
        ).scalar_one()
        return None if total is None else int(total)
    return None


_engines: dict[tuple[str, bool], Engine] = {}
_engines_lock = threading.Lock()


def _engine(url: str, fsync: bool) -> Engine:
    """One engine (and connection pool) per database and process, its tables made on first use."""
    with _engines_lock:
        if (url, fsync) not in _engines:
            _engines[url, fsync] = _make_engine(url, fsync)
        return _engines[url, fsync]


def _make_engine(url: str, fsync: bool) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas(fsync))
    else:
        # No ping per checkout (a round trip on every append): a connection the server dropped
        # fails one request (503, the rows not kept) and is replaced.
        engine = create_engine(url)
    for attempt in range(3):
        try:
            tables.metadata.create_all(engine)
            break
        except (IntegrityError, OperationalError, ProgrammingError):
            # Two processes making the tables at once: the loser finds them made next time.
            if attempt == 2:
                raise
            time.sleep(0.5)
    return engine


def _sqlite_pragmas(fsync: bool) -> Callable[[Any, Any], None]:
    def on_connect(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        # WAL: one writer and many readers at once, across processes. NORMAL: a commit survives
        # the process that made it, a power cut may lose the last ones; FULL: it survives both.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        # A commit that fills the log past this copies it into the database, on the request's
        # time (7 ms); a process that writes often checkpoints in the background instead
        # (RunStore.checkpoint), long before the log gets there.
        cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        cursor.close()

    return on_connect
