"""From a dataset version to the rows a retrain learns from, and to a folder in the bundled format.

Both give the same rows: :func:`build_dataset` is exactly what ``load_dataset`` reads back from the
folder :func:`export_folder` writes, so training on a version and training on its folder give the
same model (the ingestion path adds no skew, ``tests/cncwear/test_versions.py``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cncwear.core.choices import TrainOn
from cncwear.core.errors import DataError, NotEnoughRunsError
from cncwear.core.schema import (
    EXPERIMENT_COLUMN,
    LABEL_COLUMN,
    LABELS,
    METADATA_COLUMNS,
    PROCESS_COLUMN,
    SENSOR_NUMERIC_COLUMNS,
)
from cncwear.data.dataset import Dataset, content_hash
from cncwear.data.runs.base import BaseData
from cncwear.data.runs.checks import RUN_COLUMNS
from cncwear.data.runs.records import DatasetVersion, VersionRun
from cncwear.data.runs.store import RunStore

MIN_RUNS_PER_LABEL = 2
"""Runs of each label that training on the runs alone needs: one to hold out, one to learn from."""
EXPERIMENT_TABLE_COLUMNS = ("No", "material", *METADATA_COLUMNS, "tool_condition")


def build_dataset(
    store: RunStore, version: DatasetVersion, base: BaseData, train_on: TrainOn
) -> Dataset:
    """The version's rows: the base's experiments (unless ``train_on`` is ``runs``) and each run
    as one more group, numbered after them, with its label and the job's settings."""
    if base.content_hash != version.base_hash:
        raise DataError(
            f"dataset version {version.id} was made from base data {version.base_hash} "
            f"({version.base_source}); the base data here ({base.source}) is {base.content_hash}"
        )
    if train_on is TrainOn.RUNS:
        _check_enough_runs(version)
    frames = [] if train_on is TrainOn.RUNS else [base.dataset.rows]
    frames += [_run_rows(store, member) for member in version.runs]
    rows = pd.concat(frames, ignore_index=True)
    return Dataset(rows=rows, content_hash=content_hash(rows))


def export_folder(store: RunStore, version: DatasetVersion, base: BaseData, folder: Path) -> Path:
    """Write the version in the bundled format (``train.csv`` and ``experiment_NN.csv``)."""
    dataset = build_dataset(store, version, base, TrainOn.BASE_AND_RUNS)
    folder.mkdir(parents=True, exist_ok=True)
    materials = {m.group: m.label.material for m in version.runs}
    table = []
    for number, rows in dataset.rows.groupby(EXPERIMENT_COLUMN, sort=True):
        group = int(str(number))
        first = rows.iloc[0]
        table.append(
            {
                "No": group,
                "material": materials.get(group) or base.materials.get(group, ""),
                **{c: float(first[c]) for c in METADATA_COLUMNS},
                "tool_condition": _condition(int(first[LABEL_COLUMN])),
            }
        )
        rows[list(RUN_COLUMNS)].to_csv(folder / f"experiment_{group:02d}.csv", index=False)
    pd.DataFrame(table, columns=list(EXPERIMENT_TABLE_COLUMNS)).to_csv(
        folder / "train.csv", index=False
    )
    return folder


def _run_rows(store: RunStore, member: VersionRun) -> pd.DataFrame:
    """A run's rows typed and ordered as ``load_dataset`` gives an experiment's."""
    stored = store.version_rows(member)
    rows = stored[list(SENSOR_NUMERIC_COLUMNS)].astype("float64")
    rows[PROCESS_COLUMN] = stored[PROCESS_COLUMN].astype("str")
    for column in METADATA_COLUMNS:
        value = getattr(member.label, column)
        if value is None:  # an accepted run has them; a version is made only of accepted runs
            raise DataError(f"run {member.run!r} lacks the job's {column}")
        rows[column] = float(value)
    rows[EXPERIMENT_COLUMN] = member.group
    rows[LABEL_COLUMN] = member.label.label
    return rows


def _check_enough_runs(version: DatasetVersion) -> None:
    counts = version.counts()["runs"]
    short = {c: counts.get(c, 0) for c in LABELS if counts.get(c, 0) < MIN_RUNS_PER_LABEL}
    if short:
        have = ", ".join(f"{n} {c}" for c, n in short.items())
        raise NotEnoughRunsError(
            f"CNCWEAR_TRAIN_ON=runs needs at least {MIN_RUNS_PER_LABEL} accepted runs of each "
            f"label (one to hold out, one to learn from); dataset version {version.id} has "
            f"{have}. Label more runs, or train on base+runs."
        )


def _condition(label: int) -> str:
    return next(name for name, number in LABELS.items() if number == label)
