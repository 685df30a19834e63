"""The checks a labelled run must pass before it may train a model: one test a rule, each on a run
built to break it, plus a real experiment that passes them all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cncwear.core.errors import InvalidRunIdError, SchemaError
from cncwear.core.schema import PROCESS_COLUMN
from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset
from cncwear.data.runs.checks import RUN_COLUMNS, Reference, check_run
from cncwear.data.runs.ids import RunLabel, check_run_id

WORN = RunLabel("worn", feedrate=6.0, clamp_pressure=4.0, material="wax")


@pytest.fixture(scope="module")
def split(dataset: Dataset) -> tuple[Reference, pd.DataFrame]:
    """The reference of 17 experiments, and the 18th as a new run (a real job it has not seen)."""
    reference = Reference.of(dataset.subset([e for e in dataset.experiments if e != 3]))
    run = dataset.rows[dataset.rows["experiment"] == 3][list(RUN_COLUMNS)].reset_index(drop=True)
    return reference, run


def check(
    split: tuple[Reference, pd.DataFrame],
    rows: pd.DataFrame | None = None,
    label: RunLabel | None = WORN,
    known: frozenset[str] = frozenset(),
    **settings: object,
) -> list[str]:
    reference, run = split
    return check_run(
        run if rows is None else rows, label, reference, Settings(home=Path("unused"), **settings),
        known,
    )  # fmt: skip


def test_a_real_experiment_the_reference_has_not_seen_passes_every_check(split) -> None:
    assert check(split) == []


def test_a_run_with_too_few_active_cutting_rows_is_rejected(split) -> None:
    _, run = split
    active = int(run[PROCESS_COLUMN].str.startswith("Layer").sum())
    reasons = check(split, run_min_rows=active + 1)
    assert reasons == [f"too few active-cutting rows: {active} of the {active + 1} needed "
                       "(CNCWEAR_RUN_MIN_ROWS)"]  # fmt: skip


def test_a_run_without_a_label_is_rejected(split) -> None:
    assert check(split, label=None) == ["no label: say whether the tool was worn or unworn"]


def test_a_run_with_an_unknown_label_is_rejected(split) -> None:
    reasons = check(split, label=RunLabel("blunt", 6.0, 4.0))
    assert reasons == ["unknown label 'blunt': unworn or worn expected"]


def test_a_run_without_the_jobs_settings_is_rejected(split) -> None:
    reasons = check(split, label=RunLabel("worn", feedrate=None, clamp_pressure=None))
    assert reasons == ["missing the job's feedrate and clamp_pressure"]


def test_a_run_with_the_same_rows_as_a_base_experiment_is_a_duplicate(dataset: Dataset) -> None:
    reference = Reference.of(dataset)
    run = dataset.rows[dataset.rows["experiment"] == 3][list(RUN_COLUMNS)]
    (reason,) = check_run(run, WORN, reference, Settings(home=Path("unused")))
    assert reason.startswith("duplicate: the same rows as an experiment of the base data")


def test_a_run_with_the_same_rows_as_an_accepted_run_is_a_duplicate(split) -> None:
    from cncwear.data.runs.checks import run_content_hash

    _, run = split
    (reason,) = check(split, known=frozenset({run_content_hash(run)}))
    assert reason.startswith("duplicate: the same rows as an accepted run")


def test_a_sensor_stuck_at_one_value_is_rejected_naming_it(split) -> None:
    _, run = split
    stuck = run.copy()
    stuck["X1_OutputCurrent"] = 327.0
    (reason,) = check(split, rows=stuck)
    assert reason.startswith("stuck sensor: X1_OutputCurrent (always 327)")


def test_a_setting_of_the_controller_constant_through_a_job_is_not_a_stuck_sensor(split) -> None:
    _, run = split
    steady = run.copy()
    steady["M1_CURRENT_FEEDRATE"] = 6.0
    assert check(split, rows=steady) == []


def test_a_column_sent_in_the_wrong_unit_is_rejected_naming_it_and_its_range(split) -> None:
    reference, run = split
    in_micrometres = run.copy()
    in_micrometres["X1_ActualPosition"] = run["X1_ActualPosition"] * 1000 + 10**6
    (reason,) = check(split, rows=in_micrometres)
    low, high = reference.low["X1_ActualPosition"], reference.high["X1_ActualPosition"]
    assert reason.startswith("outside the physical range (a unit mix-up?): X1_ActualPosition")
    assert f"reference range [{low:g}, {high:g}]" in reason


def test_the_range_margin_is_a_setting(split) -> None:
    reference, run = split
    nudged = run.copy()
    column = "Y1_ActualPosition"
    width = reference.high[column] - reference.low[column]
    nudged[column] = reference.high[column] + 0.5 * width + np.arange(len(run)) * 1e-6
    assert check(split, rows=nudged, run_range_margin=1.0) == []
    assert check(split, rows=nudged, run_range_margin=0.25)[0].startswith(
        f"outside the physical range (a unit mix-up?): {column}"
    )


@pytest.mark.parametrize("good", ["mill-3/2026-12-01/job-1842", "a", "A.b_c:d-e", "x" * 128])
def test_run_ids_of_letters_digits_and_a_few_marks_are_valid(good: str) -> None:
    assert check_run_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", "job 1", "x" * 129, "../etc", "a/../b", "a..b", "/a", "a/", "a//b", "jöb", 7]
)
def test_other_run_ids_are_refused(bad: object) -> None:
    with pytest.raises(InvalidRunIdError):
        check_run_id(bad)


def test_a_label_names_each_bad_field() -> None:
    with pytest.raises(SchemaError) as raised:
        RunLabel.parse({"tool_condition": "blunt", "feedrate": -1, "clamp_pressure": "4"})
    assert {p.column for p in raised.value.problems} == {
        "tool_condition",
        "feedrate",
        "clamp_pressure",
    }
    with pytest.raises(SchemaError) as raised:
        RunLabel.parse({})
    assert [(p.column, p.problem) for p in raised.value.problems] == [("tool_condition", "missing")]
