"""The labelled runs' store, on the embedded SQLite and on PostgreSQL: rows kept as answered, runs
closed by their label and checked, bounded, and gathered into immutable dataset versions whose rows
are exactly what the same data written as a folder gives."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from cncwear.core.choices import TrainOn
from cncwear.core.errors import InvalidRunIdError, RunClosedError, RunNotFoundError
from cncwear.core.schema import SENSOR_NUMERIC_COLUMNS, input_columns
from cncwear.core.settings import Settings
from cncwear.data.dataset import load_dataset
from cncwear.data.runs.base import BaseData
from cncwear.data.runs.ids import RunLabel, RunState
from cncwear.data.runs.store import RunStore
from cncwear.data.runs.versions import build_dataset, export_folder
from cncwear.serving.batch import Batch, Rows, to_batch
from tests.helpers import postgres_database

COLUMNS = input_columns(use_identifying_columns=False)
WORN = RunLabel("worn", feedrate=6.0, clamp_pressure=4.0, material="wax")
UNWORN = RunLabel("unworn", feedrate=20.0, clamp_pressure=3.0, material="wax")


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    if request.param == "sqlite":
        yield Settings(home=tmp_path)
        return
    with postgres_database("cncwear_runs") as url:
        yield Settings(
            home=tmp_path, data_store_url=url.replace("postgresql", "postgresql+psycopg")
        )


@pytest.fixture(scope="module")
def base() -> BaseData:
    return BaseData.load(Settings(home=Path("unused")))


def job(base: BaseData, experiment: int, offset: float = 0.001) -> pd.DataFrame:
    """An experiment's rows moved a little: a new job like it, not a duplicate of it."""
    rows = base.dataset.rows[base.dataset.rows["experiment"] == experiment][COLUMNS].copy()
    rows[list(SENSOR_NUMERIC_COLUMNS)] += offset
    return rows.reset_index(drop=True)


def batches(rows: pd.DataFrame, size: int = 100) -> Iterator[Batch]:
    for start in range(0, len(rows), size):
        yield to_batch(Rows.of_frame(rows.iloc[start : start + size]), COLUMNS)


def stream(store: RunStore, run: str, rows: pd.DataFrame, version: str = "1") -> None:
    for batch in batches(rows):
        probability = np.linspace(0.2, 0.9, len(batch.numeric))
        store.append(
            run, batch, input_columns=COLUMNS, probability=probability,
            model_version=version, request_id="req",
        )  # fmt: skip


def upload(store: RunStore, base: BaseData, run: str, rows: pd.DataFrame, label: RunLabel):
    batch = to_batch(Rows.of_frame(rows), COLUMNS)
    return store.upload(
        run, batch, input_columns=COLUMNS, label=label, reference=base.reference
    )  # fmt: skip


def test_streamed_rows_are_kept_in_the_order_they_were_answered(settings, base) -> None:
    rows = job(base, 3)
    stream(RunStore(settings), "mill-3/job-1", rows)
    kept = RunStore(settings).rows("mill-3/job-1")
    np.testing.assert_array_equal(
        kept[list(SENSOR_NUMERIC_COLUMNS)], rows[list(SENSOR_NUMERIC_COLUMNS)]
    )
    assert kept["Machining_Process"].tolist() == rows["Machining_Process"].tolist()
    assert set(kept["model_version"]) == {"1"}
    record = RunStore(settings).get("mill-3/job-1")
    assert (record.state, record.rows, record.source) == (RunState.COLLECTING, len(rows), "predict")
    assert record.active_rows == int(rows["Machining_Process"].str.startswith("Layer").sum())


def test_ids_that_differ_only_in_case_or_slashes_are_different_runs(settings, base) -> None:
    store = RunStore(settings)
    rows = job(base, 3).iloc[:100]
    for run in ("Mill-3/a", "mill-3/a", "mill-3_a", "mill-3/a/b"):
        stream(store, run, rows)
    assert {r.run: r.rows for r in store.list().runs} == {
        "Mill-3/a": 100, "mill-3/a": 100, "mill-3_a": 100, "mill-3/a/b": 100,
    }  # fmt: skip
    with pytest.raises(InvalidRunIdError):
        stream(store, "../a", rows)


def test_a_run_past_its_row_limit_keeps_its_first_rows_and_is_marked_truncated(tmp_path, base):
    store = RunStore(Settings(home=tmp_path, run_max_rows=250))
    stream(store, "long", job(base, 3).iloc[:400])
    record = store.get("long")
    assert (record.rows, record.truncated, len(store.rows("long"))) == (250, True, 250)
    assert store.stats().truncated_runs == 1


def test_a_labelled_run_that_passes_the_checks_is_accepted_with_its_live_accuracy(settings, base):
    store = RunStore(settings)
    stream(store, "job-1", job(base, 3))
    record = store.label("job-1", WORN, base.reference)
    assert (record.state, record.reasons, record.label) == (RunState.ACCEPTED, [], WORN)
    served = store.rows("job-1")["probability_worn"].to_numpy()
    assert record.live is not None
    assert record.live.accuracy == pytest.approx(float((served >= 0.5).mean()))
    assert record.model_versions == ["1"]
    shared = store.live_performance("1")
    assert (shared.runs, shared.rows, shared.accuracy) == (1, len(served), record.live.accuracy)


def test_a_run_is_labelled_once_and_takes_no_rows_after(settings, base) -> None:
    store = RunStore(settings)
    stream(store, "job-1", job(base, 3))
    store.label("job-1", WORN, base.reference)
    with pytest.raises(RunClosedError, match="accepted already"):
        store.label("job-1", UNWORN, base.reference)
    with pytest.raises(RunClosedError, match="takes no more rows"):
        stream(store, "job-1", job(base, 3).iloc[:10])
    with pytest.raises(RunNotFoundError):
        store.label("never-seen", WORN, base.reference)


def test_appends_sent_together_are_kept_in_order_and_a_closed_run_refuses_only_its_own(
    settings, base
) -> None:
    """Requests that arrive together share a commit (one writer per database): each still gets
    its own outcome, in the order sent, and a closed run among them spoils no other run's rows."""
    store = RunStore(settings)
    stream(store, "closed", job(base, 3))
    store.label("closed", WORN, base.reference)
    rows = job(base, 6).iloc[:600]
    sent = []
    for index, batch in enumerate(batches(rows)):
        for run in ("open", "closed"):
            sent.append(
                store.submit(
                    run, batch, input_columns=COLUMNS, probability=np.full(100, index / 10),
                    model_version="1", request_id=f"req-{index}",
                )
            )  # fmt: skip
    opened, closed = sent[0::2], sent[1::2]
    assert [f.result().run_rows for f in opened] == [100, 200, 300, 400, 500, 600]
    for future in closed:
        with pytest.raises(RunClosedError, match="takes no more rows"):
            future.result()
    kept = store.rows("open")
    np.testing.assert_array_equal(
        kept[list(SENSOR_NUMERIC_COLUMNS)], rows[list(SENSOR_NUMERIC_COLUMNS)]
    )
    assert kept["probability_worn"].tolist() == [i / 10 for i in range(6) for _ in range(100)]
    assert store.get("closed").rows == len(job(base, 3))


def test_a_rejected_run_keeps_its_rows_and_its_reasons(settings, base) -> None:
    store = RunStore(settings)
    stream(store, "short", job(base, 3).iloc[:150])
    record = store.label("short", WORN, base.reference)
    assert record.state == RunState.REJECTED
    assert record.reasons[0].startswith("too few active-cutting rows")
    assert len(store.rows("short")) == 150


def test_an_upload_is_stored_and_checked_whole(settings, base) -> None:
    store = RunStore(settings)
    record = upload(store, base, "elsewhere/1", job(base, 5, offset=0.002), UNWORN)
    assert record.source == "upload" and record.live is None
    assert record.state == RunState.REJECTED  # experiment 5 has 72 active rows, under 200
    duplicate = upload(store, base, "elsewhere/2", job(base, 3, offset=0.0), WORN)
    assert duplicate.reasons[0].startswith("duplicate: the same rows as an experiment")
    with pytest.raises(RunClosedError, match="exists already"):
        upload(store, base, "elsewhere/1", job(base, 6), UNWORN)


def test_a_dataset_version_is_the_base_plus_the_accepted_runs_and_never_changes(settings, base):
    store = RunStore(settings)
    empty = store.current_version(base)
    assert empty.runs == [] and store.current_version(base) == empty
    upload(store, base, "a", job(base, 3), WORN)
    upload(store, base, "b", job(base, 6), UNWORN)
    both = store.current_version(base)
    assert [(r.run, r.group) for r in both.runs] == [("a", 19), ("b", 20)]
    assert both.counts()["all"] == {"unworn": 9, "worn": 11}
    store.withdraw("a")
    without = store.current_version(base)
    assert [r.run for r in without.runs] == ["b"]
    assert store.version(both.id) == both  # an older version is as it was
    assert store.get("a").state == RunState.WITHDRAWN
    assert store.get("a").dataset_versions == [both.id]
    assert store.accepted_since(without.id) == [] and store.accepted_since(empty.id) == ["b"]
    assert [v.id for v in store.versions()] == [without.id, both.id, empty.id]


def test_a_version_gives_exactly_the_rows_of_its_folder_in_the_bundled_format(
    settings, base, tmp_path
):
    store = RunStore(settings)
    stream(store, "mill-3/job-1", job(base, 3))
    store.label("mill-3/job-1", WORN, base.reference)
    upload(store, base, "elsewhere/1", job(base, 6), UNWORN)
    version = store.current_version(base)
    built = build_dataset(store, version, base, TrainOn.BASE_AND_RUNS)
    folder = export_folder(store, version, base, tmp_path / "export")
    pd.testing.assert_frame_equal(built.rows, load_dataset(folder).rows)
    assert built.content_hash == load_dataset(folder).content_hash


def test_runs_left_unlabelled_past_their_ttl_are_dropped_and_counted(settings, base) -> None:
    store = RunStore(settings)
    stream(store, "forgotten", job(base, 3).iloc[:100])
    upload(store, base, "kept", job(base, 6), UNWORN)
    assert store.expire() == 0
    assert store.expire(now=time.time() + settings.run_ttl_seconds + 1) == 1
    with pytest.raises(RunNotFoundError):
        store.get("forgotten")
    stats = store.stats()
    assert (stats.expired_total, stats.runs[RunState.ACCEPTED], stats.rows) == (
        1,
        1,
        len(job(base, 6)),
    )
    assert stats.bytes is not None and stats.bytes > 0


def test_a_challengers_scores_are_kept_by_run_and_row_and_aligned_with_the_champions(
    settings: Settings, base: BaseData
) -> None:
    store = RunStore(settings)
    rows = job(base, 8).head(250)
    stream(store, "shadow-1", rows, version="1")  # the champion: np.linspace per 100-row batch
    challenger = np.linspace(0.0, 1.0, 250)
    store.record_shadow("shadow-1", "2", 0, challenger[:100])
    store.record_shadow("shadow-1", "2", 200, challenger[200:])  # the middle batch dropped
    store.record_shadow("shadow-1", "2", 0, np.zeros(100))  # scored twice: the first kept
    assert store.shadow_rows("1", "2") == []  # not labelled yet
    store.label("shadow-1", WORN, base.reference)

    (found,) = store.shadow_rows("1", "2")
    assert (found.run, found.label) == ("shadow-1", 1)
    np.testing.assert_array_equal(found.champion, store.rows("shadow-1")["probability_worn"])
    np.testing.assert_array_equal(found.challenger[:100], challenger[:100])
    assert np.isnan(found.challenger[100:200]).all()
    np.testing.assert_array_equal(found.challenger[200:], challenger[200:])
    assert store.shadow_rows("3", "2") == []  # another champion scored none of its rows
    assert store.shadow_rows("1", "4") == []


def test_scores_sent_together_are_kept_and_one_the_database_refuses_fails_alone(
    tmp_path: Path, base: BaseData
) -> None:
    """A challenger's scores go to the one writer, in one statement for all that wait; when the
    database refuses one (on PostgreSQL, which enforces the run key: scores of a run dropped
    meanwhile), that one fails and the others are kept."""
    with postgres_database("cncwear_runs") as url:
        store = RunStore(
            Settings(home=tmp_path, data_store_url=url.replace("postgresql", "postgresql+psycopg"))
        )
        stream(store, "shadow-2", job(base, 8).head(300))
        sent = [
            store.submit_shadow(run, "2", first_row, np.full(100, first_row / 1000))
            for run, first_row in (("shadow-2", 0), ("no-such-run", 0), ("shadow-2", 200))
        ]
        sent[0].result()
        sent[2].result()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            sent[1].result()
        store.label("shadow-2", WORN, base.reference)
        (found,) = store.shadow_rows("1", "2")
    np.testing.assert_array_equal(found.challenger[:100], np.zeros(100))
    assert np.isnan(found.challenger[100:200]).all()
    np.testing.assert_array_equal(found.challenger[200:], np.full(100, 0.2))
