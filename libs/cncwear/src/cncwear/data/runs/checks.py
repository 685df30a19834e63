"""The checks a labelled run must pass before it may train a model.

Every row in the store already passed the schema (``/predict``, an upload and ``cncwear runs add``
all go through ``cncwear.serving.batch.to_batch``); these are the checks of the run as a whole, one
function a rule, each returning its reason or None. The reference is the base data: it says what
the sensors' physical ranges are and which columns always vary during cutting.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cncwear.core.schema import (
    ACTIVE_PROCESSES,
    EXPERIMENT_COLUMN,
    IDENTIFYING_COLUMNS,
    LABELS,
    PROCESS_COLUMN,
    SENSOR_NUMERIC_COLUMNS,
)
from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset, content_hash
from cncwear.data.runs.ids import RunLabel

RUN_COLUMNS: tuple[str, ...] = (*SENSOR_NUMERIC_COLUMNS, PROCESS_COLUMN)
"""What a run holds of each row: the readings and the machining step (the job's settings come with
its label)."""

SENSORS = tuple(c for c in SENSOR_NUMERIC_COLUMNS if c not in IDENTIFYING_COLUMNS)
"""Columns read off the machine, as opposed to the controller's program, sequence and feed-rate
settings, which stay constant through a job by design."""


def run_content_hash(rows: pd.DataFrame) -> str:
    """A hash of a run's rows (readings and steps, in order), the same however they arrived."""
    return content_hash(rows[list(RUN_COLUMNS)])


@dataclass(frozen=True)
class Reference:
    """What the base data says a run should look like."""

    low: dict[str, float]
    high: dict[str, float]
    varying: tuple[str, ...]
    """Sensors that vary during the active cutting of every reference experiment."""
    experiment_hashes: frozenset[str]
    """Content hashes of the reference's experiments: a run with the same rows is a duplicate."""

    @classmethod
    def of(cls, dataset: Dataset) -> Reference:
        active = dataset.active().rows
        distinct = active.groupby(EXPERIMENT_COLUMN)[list(SENSORS)].nunique()
        hashes = frozenset(
            run_content_hash(rows) for _, rows in dataset.rows.groupby(EXPERIMENT_COLUMN)
        )
        return cls(
            low={c: float(active[c].min()) for c in SENSOR_NUMERIC_COLUMNS},
            high={c: float(active[c].max()) for c in SENSOR_NUMERIC_COLUMNS},
            varying=tuple(c for c in SENSORS if bool((distinct[c] > 1).all())),
            experiment_hashes=hashes,
        )


@dataclass(frozen=True)
class RunUnderCheck:
    rows: pd.DataFrame
    """The run's rows: at least :data:`RUN_COLUMNS`."""
    label: RunLabel | None
    reference: Reference
    settings: Settings
    known_hashes: Collection[str]
    """Content hashes of the runs already accepted."""

    @property
    def active(self) -> pd.DataFrame:
        return self.rows[self.rows[PROCESS_COLUMN].isin(ACTIVE_PROCESSES)]


def enough_active_rows(run: RunUnderCheck) -> str | None:
    count, needed = len(run.active), run.settings.run_min_rows
    if count >= needed:
        return None
    return f"too few active-cutting rows: {count} of the {needed} needed (CNCWEAR_RUN_MIN_ROWS)"


def known_label(run: RunUnderCheck) -> str | None:
    if run.label is None:
        return "no label: say whether the tool was worn or unworn"
    if run.label.tool_condition not in LABELS:
        return f"unknown label {run.label.tool_condition!r}: {' or '.join(LABELS)} expected"
    return None


def metadata_present(run: RunUnderCheck) -> str | None:
    """Training data records each job's settings (``train.csv``); a run without them cannot join."""
    if run.label is None:
        return None
    missing = [f for f in ("feedrate", "clamp_pressure") if getattr(run.label, f) is None]
    return f"missing the job's {' and '.join(missing)}" if missing else None


def not_a_duplicate(run: RunUnderCheck) -> str | None:
    digest = run_content_hash(run.rows)
    if digest in run.reference.experiment_hashes:
        return f"duplicate: the same rows as an experiment of the base data (hash {digest})"
    if digest in run.known_hashes:
        return f"duplicate: the same rows as an accepted run (hash {digest})"
    return None


def no_stuck_sensor(run: RunUnderCheck) -> str | None:
    active = run.active
    if active.empty:
        return None
    stuck = [c for c in run.reference.varying if active[c].nunique() == 1]
    if not stuck:
        return None
    named = ", ".join(f"{c} (always {active[c].iloc[0]:g})" for c in stuck)
    return (
        f"stuck sensor: {named} constant over all {len(active)} active rows, though it varies "
        "in every reference experiment"
    )


def within_physical_range(run: RunUnderCheck) -> str | None:
    active = run.active
    if active.empty:
        return None
    margin = run.settings.run_range_margin
    far = []
    for column in SENSOR_NUMERIC_COLUMNS:
        low, high = run.reference.low[column], run.reference.high[column]
        width = high - low if high > low else max(abs(low), 1.0)
        bottom, top = low - margin * width, high + margin * width
        values = active[column].to_numpy()
        if bool(np.all((values < bottom) | (values > top))):
            far.append(
                f"{column} (all values in [{values.min():g}, {values.max():g}], reference range "
                f"[{low:g}, {high:g}], accepted [{bottom:g}, {top:g}])"
            )
    if not far:
        return None
    return (
        "outside the physical range (a unit mix-up?): " + "; ".join(far)
        + " (CNCWEAR_RUN_RANGE_MARGIN)"
    )  # fmt: skip


RULES: tuple[Callable[[RunUnderCheck], str | None], ...] = (
    known_label,
    metadata_present,
    enough_active_rows,
    not_a_duplicate,
    no_stuck_sensor,
    within_physical_range,
)


def check_run(
    rows: pd.DataFrame,
    label: RunLabel | None,
    reference: Reference,
    settings: Settings,
    known_hashes: Collection[str] = (),
) -> list[str]:
    """Why the run may not train a model; empty when it may."""
    run = RunUnderCheck(rows, label, reference, settings, known_hashes)
    return [reason for rule in RULES if (reason := rule(run)) is not None]
