"""The raw sensor-row schema: the single source of truth for training, the API and validation.

A raw row is what a mill controller streams every 100 ms: 47 numeric readings plus the name of the
machining step. Experiment metadata (feed rate, clamp pressure) is part of the schema too, but a
model only needs it when trained with ``use_identifying_columns``; :func:`input_columns` says which.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from cncwear.core.errors import Problem, SchemaError

AXES = ("X1", "Y1", "Z1", "S1")
MOTION_QUANTITIES = ("Position", "Velocity", "Acceleration")

SENSOR_NUMERIC_COLUMNS: tuple[str, ...] = (
    "X1_ActualPosition", "X1_ActualVelocity", "X1_ActualAcceleration",
    "X1_CommandPosition", "X1_CommandVelocity", "X1_CommandAcceleration",
    "X1_CurrentFeedback", "X1_DCBusVoltage", "X1_OutputCurrent", "X1_OutputVoltage",
    "X1_OutputPower",
    "Y1_ActualPosition", "Y1_ActualVelocity", "Y1_ActualAcceleration",
    "Y1_CommandPosition", "Y1_CommandVelocity", "Y1_CommandAcceleration",
    "Y1_CurrentFeedback", "Y1_DCBusVoltage", "Y1_OutputCurrent", "Y1_OutputVoltage",
    "Y1_OutputPower",
    "Z1_ActualPosition", "Z1_ActualVelocity", "Z1_ActualAcceleration",
    "Z1_CommandPosition", "Z1_CommandVelocity", "Z1_CommandAcceleration",
    "Z1_CurrentFeedback", "Z1_DCBusVoltage", "Z1_OutputCurrent", "Z1_OutputVoltage",
    "S1_ActualPosition", "S1_ActualVelocity", "S1_ActualAcceleration",
    "S1_CommandPosition", "S1_CommandVelocity", "S1_CommandAcceleration",
    "S1_CurrentFeedback", "S1_DCBusVoltage", "S1_OutputCurrent", "S1_OutputVoltage",
    "S1_OutputPower", "S1_SystemInertia",
    "M1_CURRENT_PROGRAM_NUMBER", "M1_sequence_number", "M1_CURRENT_FEEDRATE",
)  # fmt: skip

PROCESS_COLUMN = "Machining_Process"
"""The machining step of a row (``Prep``, ``Layer 1 Up`` ... ``Layer 3 Down``, ``Repositioning``,
``End``, ``Starting``): text, used to keep training on active cutting only."""

ACTIVE_PROCESSES = frozenset(
    f"Layer {layer} {direction}" for layer in (1, 2, 3) for direction in ("Up", "Down")
)

METADATA_COLUMNS: tuple[str, ...] = ("feedrate", "clamp_pressure")
"""Per-experiment settings of the mill, recorded in ``train.csv``."""

IDENTIFYING_COLUMNS: tuple[str, ...] = (
    "feedrate", "clamp_pressure",
    "M1_CURRENT_PROGRAM_NUMBER", "M1_sequence_number", "M1_CURRENT_FEEDRATE",
)  # fmt: skip
"""Columns that tell experiments apart rather than tools: a model that uses them learns which
experiment a row came from, which does not carry over to a new run."""

EXPERIMENT_COLUMN = "experiment"
LABEL_COLUMN = "label"
LABELS = {"unworn": 0, "worn": 1}
CLASS_NAMES = ("unworn", "worn")
THRESHOLD = 0.5
"""A row is labelled worn when its wear probability is at least this."""

MAX_PROBLEMS_LISTED = 1000


def input_columns(*, use_identifying_columns: bool) -> list[str]:
    """The raw columns a model takes: the sensor row, plus the metadata when the model uses it."""
    columns = [*SENSOR_NUMERIC_COLUMNS, PROCESS_COLUMN]
    if use_identifying_columns:
        columns += list(METADATA_COLUMNS)
    return columns


def numeric_columns(columns: Iterable[str]) -> list[str]:
    return [c for c in columns if c != PROCESS_COLUMN]


def validate_rows(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Check a batch of raw rows against the schema and return it typed and in schema order.

    Raises :class:`SchemaError` naming every missing or unexpected column and every non-numeric,
    NaN or infinite value by row and column (the first ``MAX_PROBLEMS_LISTED``), never the values.
    """
    problems: list[Problem] = []
    present = list(frame.columns)
    expected = set(columns)
    problems += [Problem(column=c, problem="missing column") for c in columns if c not in present]
    problems += [
        Problem(column=str(c), problem="unexpected column") for c in present if c not in expected
    ]
    duplicated = {str(c) for c in frame.columns[frame.columns.duplicated()]}
    problems += [Problem(column=c, problem="duplicated column") for c in sorted(duplicated)]
    if len(frame) == 0:
        problems.append(Problem(column="*", problem="no rows"))
    if problems:
        raise SchemaError(problems)

    typed: dict[str, pd.Series] = {}
    total = 0
    for column in columns:
        values = frame[column]
        if column == PROCESS_COLUMN:
            bad = ~values.map(lambda v: isinstance(v, str) and v.strip() != "").astype(bool)
            reason = "not a machining step name (text expected)"
            typed[column] = values.where(~bad, "")
            masks = {reason: bad.to_numpy()}
        else:
            numbers = pd.to_numeric(values, errors="coerce").astype("float64")
            not_numeric = numbers.isna().to_numpy() & ~_is_nan_like(values)
            masks = {
                "not a number": not_numeric,
                "NaN or empty": numbers.isna().to_numpy() & ~not_numeric,
                "infinite": np.isinf(numbers.to_numpy()),
            }
            typed[column] = numbers
        for reason, mask in masks.items():
            rows = np.flatnonzero(mask)
            total += len(rows)
            room = MAX_PROBLEMS_LISTED - len(problems)
            problems += [Problem(column=column, problem=reason, row=int(r)) for r in rows[:room]]
    if total:
        raise SchemaError(problems, total=total)
    return pd.DataFrame(typed, index=frame.index)


def _is_nan_like(values: pd.Series) -> np.ndarray:
    """True where a value is missing or spells NaN, as opposed to text that is not a number."""
    if pd.api.types.is_numeric_dtype(values):
        return np.asarray(values.isna())
    as_text = values.map(lambda v: v if not isinstance(v, str) else v.strip().lower())
    return np.asarray(as_text.isna() | as_text.isin(["nan", "", "na", "null", "none"]))
