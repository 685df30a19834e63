"""Labelled runs made of the bundled experiments, for the tests of training on dataset versions.

A base folder holds some of the bundled experiments; an experiment left out of it is uploaded as a
run, as a shop would upload a job recorded elsewhere: real rows, not a duplicate of the base."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from cncwear.core.schema import input_columns
from cncwear.core.settings import BUNDLED_DATA_DIR, Settings
from cncwear.data.runs.base import BaseData
from cncwear.data.runs.ids import RunLabel
from cncwear.data.runs.records import RunRecord
from cncwear.data.runs.store import RunStore
from cncwear.serving.batch import Rows, to_batch

RUN_COLUMNS = input_columns(use_identifying_columns=False)
"""The columns a run's rows have: what /predict takes from a mill."""

LEFT_OUT = (17, 18)
"""Experiments kept out of the tests' base data, to be uploaded as runs: 17 unworn, 18 worn (the
same feed rate and clamp pressure)."""


def experiment_table() -> pd.DataFrame:
    return pd.read_csv(BUNDLED_DATA_DIR / "train.csv").set_index("No")


def base_folder(folder: Path, experiments: Iterable[int]) -> Path:
    """A data folder in the bundled format holding the given bundled experiments only."""
    numbers = sorted(experiments)
    folder.mkdir(parents=True, exist_ok=True)
    experiment_table().loc[numbers].reset_index().to_csv(folder / "train.csv", index=False)
    for number in numbers:
        name = f"experiment_{number:02d}.csv.xz"
        shutil.copy(BUNDLED_DATA_DIR / name, folder / name)
    return folder


def all_but(*left_out: int) -> list[int]:
    return [n for n in experiment_table().index if n not in left_out]


def experiment_label(number: int) -> RunLabel:
    row = experiment_table().loc[number]
    return RunLabel(
        tool_condition=str(row["tool_condition"]),
        feedrate=float(row["feedrate"]),
        clamp_pressure=float(row["clamp_pressure"]),
        material=str(row["material"]),
    )


def experiment_rows(number: int) -> pd.DataFrame:
    """A bundled experiment's rows as its file has them (every machining step)."""
    return pd.read_csv(BUNDLED_DATA_DIR / f"experiment_{number:02d}.csv.xz")[RUN_COLUMNS]


def upload_experiment(settings: Settings, run: str, number: int) -> RunRecord:
    """Upload a bundled experiment as a labelled run, validated as /predict validates rows."""
    batch = to_batch(Rows.of_frame(experiment_rows(number)), RUN_COLUMNS)
    reference = BaseData.load(settings).reference
    return RunStore(settings).upload(
        run, batch, input_columns=RUN_COLUMNS, label=experiment_label(number), reference=reference
    )
