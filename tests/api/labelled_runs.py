"""Labelled runs made of real rows, shared by the tests of runs (tests/api, tests/deploy).

A run is one bundled experiment's rows in their order, less one row of active cutting: real
readings that vary like the reference's, and not a duplicate of the experiment itself (whose
content hash the reference knows)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from cncwear.core.schema import PROCESS_COLUMN, input_columns
from cncwear.data.dataset import Dataset

COLUMNS = input_columns(use_identifying_columns=False)


def run_rows(dataset: Dataset, experiment: int) -> pd.DataFrame:
    """The experiment's raw rows, in order, without its middle row of active cutting."""
    rows = dataset.rows[dataset.rows["experiment"] == experiment]
    active = np.flatnonzero(rows[PROCESS_COLUMN].str.startswith("Layer").to_numpy())
    kept = rows.drop(index=rows.index[active[len(active) // 2]])
    return kept[COLUMNS].reset_index(drop=True)


def run_label(dataset: Dataset, experiment: int) -> dict[str, Any]:
    """The experiment's label and settings, as ``POST /runs/{run}/label`` takes them."""
    return dataset.run_label(experiment).as_dict()


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON records, cells as Python scalars."""
    return frame.astype(object).to_dict("records")  # type: ignore[return-value]


def batches(frame: pd.DataFrame, size: int = 100) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size]


def sent_equals_stored(sent: pd.DataFrame, stored: pd.DataFrame) -> None:
    """The store holds exactly the rows sent, in the order sent."""
    assert len(stored) == len(sent)
    numeric = [c for c in COLUMNS if c != PROCESS_COLUMN]
    np.testing.assert_array_equal(
        stored[numeric].to_numpy(np.float64), sent[numeric].to_numpy(np.float64)
    )
    assert stored[PROCESS_COLUMN].tolist() == sent[PROCESS_COLUMN].tolist()
