"""From raw rows as a client sends them to a validated batch: the numeric columns as one float64
matrix in the model's order, plus the machining step of each row. Every way in (``/predict``,
``/explain``, ``cncwear predict``) goes through :func:`to_batch`, so all refuse the same rows.

``cncwear.schema.validate_rows`` decides what is valid, but it costs tens of milliseconds even for
one row. So well-formed batches (exactly the model's columns, numbers where numbers go, all finite,
text in the machining step) take a fast path that checks exactly that with numpy; anything else goes
through ``validate_rows``, which accepts what it accepts (numbers sent as text, say) and names every
problem by row and column. Either way the model sees the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any, Protocol

import numpy as np
import pandas as pd

from cncwear.core.errors import Problem, SchemaError
from cncwear.core.schema import MAX_PROBLEMS_LISTED, PROCESS_COLUMN, numeric_columns, validate_rows

VALUE_LIMIT = 1e30
"""Largest magnitude accepted for a reading. Far above any sensor's range, and it keeps
command-minus-actual differences within float32, which scikit-learn's trees cast features to."""


class RawRows(Protocol):
    """Raw rows in one of two forms, the other left None: records (``rows``), or column names and
    rows of values (``columns`` + ``data``). The API's ``PredictRequest`` is one; :class:`Rows`
    another. Cells are JSON's scalars (numbers, text, null) or anything else, to be refused."""

    @property
    def rows(self) -> Sequence[Mapping[str, Any]] | None: ...

    @property
    def columns(self) -> list[str] | None: ...

    @property
    def data(self) -> Sequence[Sequence[Any]] | None: ...


@dataclass(frozen=True)
class Rows:
    """Raw rows given here rather than in a request: ``Rows(rows=[...])``, or
    ``Rows(columns=[...], data=[...])``."""

    rows: Sequence[Mapping[str, Any]] | None = None
    columns: list[str] | None = None
    data: Sequence[Sequence[Any]] | None = None

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> Rows:
        """A frame's rows in the columnar form, cells as Python scalars (as JSON would give them:
        numpy's are neither numbers nor text to the checks here)."""
        return cls(
            columns=[str(c) for c in frame.columns],
            data=frame.astype(object).to_numpy().tolist(),
        )


@dataclass(frozen=True)
class Batch:
    numeric: np.ndarray
    """Numeric columns in the model's order, float64, finite."""
    process: list[str]
    """The machining step of each row (empty when the model does not take it)."""

    def frame(self, input_columns: Sequence[str]) -> pd.DataFrame:
        """The batch as the raw-row frame a pipeline takes (what ``validate_rows`` returns)."""
        frame = pd.DataFrame(self.numeric, columns=numeric_columns(input_columns))
        if PROCESS_COLUMN in input_columns:
            frame[PROCESS_COLUMN] = self.process
        return frame[list(input_columns)]


def to_batch(request: RawRows, input_columns: Sequence[str]) -> Batch:
    """Validate raw rows against the model's input columns.

    Raises :class:`SchemaError` naming every problem by row and column, never the values."""
    if _row_count(request) == 0:
        raise SchemaError([Problem(column="*", problem="no rows")])
    numeric = numeric_columns(input_columns)
    batch = _fast(request, input_columns, numeric)
    if batch is None:
        batch = _validated(request, input_columns, numeric)
    _check_range(batch.numeric, numeric)
    return batch


def of_validated(typed: pd.DataFrame, input_columns: Sequence[str]) -> Batch:
    """The batch of rows ``validate_rows`` returned, range checked like :func:`to_batch`'s."""
    numeric = numeric_columns(input_columns)
    batch = _typed_batch(typed, numeric)
    _check_range(batch.numeric, numeric)
    return batch


def _row_count(request: RawRows) -> int:
    return len(request.rows) if request.rows is not None else len(request.data or [])


def _typed_batch(typed: pd.DataFrame, numeric_columns: list[str]) -> Batch:
    process = typed[PROCESS_COLUMN].tolist() if PROCESS_COLUMN in typed else []
    return Batch(np.ascontiguousarray(typed[numeric_columns].to_numpy(np.float64)), process)


def _validated(request: RawRows, input_columns: Sequence[str], numeric_columns: list[str]) -> Batch:
    """The batch through ``validate_rows``, with the problems only the request shows reported
    alongside: cells that are neither number, text nor null, rows lacking columns other rows have,
    rows of the wrong length."""
    shape_problems, total, missing_cells = _shape_problems(request, input_columns)
    if request.data is not None and total:  # rows of the wrong length: no frame can be made
        raise SchemaError(shape_problems, total=total)
    request, cell_problems, bad_cells = _without_bad_cells(request)
    shape_problems, missing_cells = cell_problems + shape_problems, missing_cells | bad_cells
    total += len(bad_cells)
    if request.rows is not None:
        frame = pd.DataFrame.from_records(request.rows)
    else:
        frame = pd.DataFrame(request.data, columns=request.columns)  # duplicates are reported
    try:
        typed = validate_rows(frame, list(input_columns))
    except SchemaError as error:
        found, found_total, checked = list(error.problems), error.total, set(input_columns)
        if all(p.row is None for p in found):  # columns are wrong: check the values there too
            values, checked = _value_problems(frame, input_columns)
            found, found_total = found + values.problems, found_total + values.total
        # Cells already named (missing, or not a scalar) were checked as empty: count them once.
        overlap = sum(1 for _, column in missing_cells if column in checked)
        others = [p for p in found if (p.row, p.column) not in missing_cells]
        problems = (shape_problems + others)[:MAX_PROBLEMS_LISTED]
        raise SchemaError(problems, total=total + found_total - overlap) from None
    if total:
        raise SchemaError(shape_problems, total=total)
    return _typed_batch(typed, numeric_columns)


def _fast(
    request: RawRows, input_columns: Sequence[str], numeric_columns: list[str]
) -> Batch | None:
    """The batch when it is well formed, else None (let ``validate_rows`` look at it)."""
    layout = _layout(request, input_columns, numeric_columns)
    if layout is None:
        return None
    records, pick_numbers, pick_process = layout
    try:
        values = list(map(pick_numbers, records))
        process = list(map(pick_process, records)) if PROCESS_COLUMN in input_columns else []
    except KeyError:
        return None
    if not set(map(type, chain.from_iterable(values))) <= _NUMBERS:  # text, null, true...
        return None
    try:
        numeric = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        return None
    well_formed = bool(np.isfinite(numeric).all()) and all(
        type(step) is str and step.strip() for step in process
    )
    return Batch(numeric, process) if well_formed else None


_NUMBERS = frozenset({float, int})
_SCALARS = frozenset({float, int, str, type(None)})
NOT_SCALAR = "must be a number, text or null"


def _without_bad_cells(
    request: RawRows,
) -> tuple[RawRows, list[Problem], set[tuple[int | None, str]]]:
    """The rows with cells that are neither number, text nor null (true, lists, objects) set to
    null, their problems (up to the cap) and the (row, column) of all of them."""
    problems: list[Problem] = []
    bad: set[tuple[int | None, str]] = set()

    def note(row: int, column: str) -> None:
        bad.add((row, column))
        if len(problems) < MAX_PROBLEMS_LISTED:
            problems.append(Problem(column=column, row=row, problem=NOT_SCALAR))

    if request.rows is not None:
        rows = request.rows
        for i, row in enumerate(rows):
            if not set(map(type, row.values())) <= _SCALARS:
                for column, value in row.items():
                    if type(value) not in _SCALARS:
                        note(i, column)
        if bad:
            rows = [
                {c: (None if (i, c) in bad else v) for c, v in row.items()}
                for i, row in enumerate(rows)
            ]
        return Rows(rows=rows), problems, bad
    columns, data = request.columns or [], request.data or []
    cells: list[tuple[int, int]] = []
    for i, values in enumerate(data):
        if not set(map(type, values)) <= _SCALARS:
            for j, value in enumerate(values):
                if type(value) not in _SCALARS:
                    cells.append((i, j))
                    note(i, columns[j])
    if not cells:
        return request, problems, bad
    nulled = [list(values) for values in data]
    for i, j in cells:
        nulled[i][j] = None
    return Rows(columns=columns, data=nulled), problems, bad


_Layout = tuple[Sequence[Any], Callable[[Any], tuple[Any, ...]], Callable[[Any], Any]]


def _layout(
    request: RawRows, input_columns: Sequence[str], numeric_columns: list[str]
) -> _Layout | None:
    """The records and how to pick the numeric cells and the machining step of each, when every
    record has exactly the model's columns."""
    if request.rows is not None:
        if any(len(row) != len(input_columns) for row in request.rows):
            return None
        return request.rows, _picker(numeric_columns), itemgetter(PROCESS_COLUMN)
    columns, records = request.columns or [], request.data or []
    if len(set(columns)) != len(columns) or set(columns) != set(input_columns):
        return None
    if any(len(row) != len(columns) for row in records):
        return None
    position = {name: i for i, name in enumerate(columns)}
    pick_numbers = _picker([position[c] for c in numeric_columns])
    return records, pick_numbers, itemgetter(position.get(PROCESS_COLUMN, 0))


def _picker(keys: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    if len(keys) == 1:
        key = keys[0]
        return lambda record: (record[key],)
    return itemgetter(*keys)


def _value_problems(
    frame: pd.DataFrame, input_columns: Sequence[str]
) -> tuple[SchemaError, set[str]]:
    """Problems in the values of the model's columns that are present once, and those columns."""
    counts = frame.columns.value_counts()
    present = [c for c in input_columns if counts.get(c, 0) == 1]
    if present:
        try:
            validate_rows(frame[present], present)
        except SchemaError as error:
            return error, set(present)
    return SchemaError([], total=0), set(present)


def _shape_problems(
    request: RawRows, input_columns: Sequence[str]
) -> tuple[list[Problem], int, set[tuple[int | None, str]]]:
    """Records lacking a model column that other records have, and columnar rows of the wrong
    length: the problems listed (up to the cap), their total, and the (row, column) cells
    missing."""
    problems: list[Problem] = []
    missing: set[tuple[int | None, str]] = set()
    total = 0
    if request.rows is not None:
        seen: set[str] = set().union(*request.rows)
        shared = [c for c in input_columns if c in seen]
        for i, row in enumerate(request.rows):
            if len(row) == len(seen):
                continue
            for column in (c for c in shared if c not in row):
                total += 1
                missing.add((i, column))
                if len(problems) < MAX_PROBLEMS_LISTED:
                    problems.append(Problem(column=column, row=i, problem="missing in this row"))
        return problems, total, missing
    width = len(request.columns or [])
    for i, values in enumerate(request.data or []):
        if len(values) != width:
            total += 1
            if len(problems) < MAX_PROBLEMS_LISTED:
                problem = f"has {len(values)} values for {width} columns"
                problems.append(Problem(column="*", row=i, problem=problem))
    return problems, total, missing


def _check_range(numeric: np.ndarray, numeric_columns: Sequence[str]) -> None:
    rows, columns = np.nonzero(np.abs(numeric) > VALUE_LIMIT)
    if rows.size:
        problem = f"out of range (magnitude above {VALUE_LIMIT:g})"
        problems = [
            Problem(column=str(numeric_columns[c]), row=int(r), problem=problem)
            for r, c in zip(rows[:MAX_PROBLEMS_LISTED], columns[:MAX_PROBLEMS_LISTED], strict=True)
        ]
        raise SchemaError(problems, total=int(rows.size))
