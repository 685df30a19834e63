"""The raw sensor-row schema and the validation of incoming rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cncwear.core.errors import SchemaError
from cncwear.core.schema import (
    IDENTIFYING_COLUMNS,
    METADATA_COLUMNS,
    PROCESS_COLUMN,
    SENSOR_NUMERIC_COLUMNS,
    input_columns,
    validate_rows,
)
from cncwear.data.dataset import Dataset

COLUMNS = input_columns(use_identifying_columns=False)


def raw_rows(dataset: Dataset, count: int = 3) -> pd.DataFrame:
    return dataset.rows[COLUMNS].head(count).reset_index(drop=True).copy()


def problems_of(frame: pd.DataFrame) -> list[str]:
    with pytest.raises(SchemaError) as caught:
        validate_rows(frame, COLUMNS)
    return [str(p) for p in caught.value.problems]


def test_schema_has_the_48_sensor_columns_and_the_metadata() -> None:
    assert len(SENSOR_NUMERIC_COLUMNS) + 1 == 48
    assert input_columns(use_identifying_columns=True)[-2:] == list(METADATA_COLUMNS)
    assert PROCESS_COLUMN in COLUMNS
    assert set(METADATA_COLUMNS) <= set(IDENTIFYING_COLUMNS)


def test_valid_rows_come_back_typed_in_schema_order(dataset: Dataset) -> None:
    rows = raw_rows(dataset)
    shuffled = rows[list(reversed(COLUMNS))].astype(str)
    typed = validate_rows(shuffled, COLUMNS)
    assert list(typed.columns) == COLUMNS
    assert typed["X1_ActualPosition"].dtype == np.float64
    pd.testing.assert_frame_equal(typed, rows, check_dtype=False)


def test_missing_and_unexpected_columns_are_all_named(dataset: Dataset) -> None:
    rows = raw_rows(dataset).drop(columns=["X1_ActualPosition", "S1_OutputPower"])
    rows["spindle_temperature"] = 1.0
    problems = problems_of(rows)
    assert "'X1_ActualPosition': missing column" in problems
    assert "'S1_OutputPower': missing column" in problems
    assert "'spindle_temperature': unexpected column" in problems


def test_bad_values_are_named_by_row_and_column_without_echoing_them(dataset: Dataset) -> None:
    rows = raw_rows(dataset, count=4).astype(object)
    rows.loc[0, "X1_ActualVelocity"] = "fast-ish"
    rows.loc[1, "Y1_OutputCurrent"] = float("nan")
    rows.loc[2, "Z1_ActualPosition"] = float("inf")
    rows.loc[3, "S1_OutputPower"] = "-Infinity"
    rows.loc[3, PROCESS_COLUMN] = 7
    with pytest.raises(SchemaError) as caught:
        validate_rows(rows, COLUMNS)
    problems = [str(p) for p in caught.value.problems]
    assert "row 0, column 'X1_ActualVelocity': not a number" in problems
    assert "row 1, column 'Y1_OutputCurrent': NaN or empty" in problems
    assert "row 2, column 'Z1_ActualPosition': infinite" in problems
    assert "row 3, column 'S1_OutputPower': infinite" in problems
    assert (
        f"row 3, column '{PROCESS_COLUMN}': not a machining step name (text expected)" in problems
    )
    assert caught.value.total == 5
    assert "fast-ish" not in str(caught.value)


def test_an_empty_batch_is_refused(dataset: Dataset) -> None:
    assert problems_of(raw_rows(dataset).head(0)) == ["'*': no rows"]


def test_a_flood_of_bad_values_is_counted_but_listed_only_up_to_a_cap(dataset: Dataset) -> None:
    rows = pd.concat([raw_rows(dataset)] * 400, ignore_index=True).astype(object)
    rows.loc[:, "X1_ActualPosition"] = "x"
    rows.loc[:, "X1_ActualVelocity"] = "x"
    with pytest.raises(SchemaError) as caught:
        validate_rows(rows, COLUMNS)
    assert caught.value.total == 2400
    assert len(caught.value.problems) == 1000
