"""Loading training data in the bundled format: ``train.csv`` plus one CSV per experiment.

The bundled copy ships inside the package (xz-compressed) so a fresh clone trains with no download;
``CNCWEAR_DATA_DIR`` points the loader at another folder of the same format for retraining.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cncwear.core.errors import DataError, SchemaError
from cncwear.core.schema import (
    ACTIVE_PROCESSES,
    CLASS_NAMES,
    EXPERIMENT_COLUMN,
    LABEL_COLUMN,
    LABELS,
    METADATA_COLUMNS,
    PROCESS_COLUMN,
    SENSOR_NUMERIC_COLUMNS,
    input_columns,
    validate_rows,
)
from cncwear.data.runs.ids import RunLabel

_EXPERIMENT_FILE = re.compile(r"^experiment_(\d+)\.csv(\.xz|\.gz|\.bz2|\.zst)?$")


@dataclass(frozen=True)
class Dataset:
    """Raw sensor rows of several experiments with their labels.

    ``rows`` holds the schema columns (sensor readings, machining step, metadata) plus
    ``experiment`` and ``label``; its index is a stable row id across the whole data set.
    """

    rows: pd.DataFrame
    content_hash: str

    @property
    def experiments(self) -> np.ndarray:
        return np.sort(self.rows[EXPERIMENT_COLUMN].unique())

    @property
    def groups(self) -> np.ndarray:
        return self.rows[EXPERIMENT_COLUMN].to_numpy()

    @property
    def labels(self) -> np.ndarray:
        return self.rows[LABEL_COLUMN].to_numpy()

    def features(self, *, use_identifying_columns: bool) -> pd.DataFrame:
        """The raw columns a model is fitted on (no experiment id, no label)."""
        return self.rows[input_columns(use_identifying_columns=use_identifying_columns)]

    def experiment_labels(self) -> pd.Series:
        return self.rows.groupby(EXPERIMENT_COLUMN)[LABEL_COLUMN].first()

    def run_label(self, experiment: int, material: str = "wax") -> RunLabel:
        """The label and settings of one experiment, as a shop labels a run of its rows: how the
        tests and benches replay a bundled experiment as a labelled run. ``train.csv``'s material
        is not kept in the rows (every bundled experiment is wax), so it is given."""
        first = self.rows[self.rows[EXPERIMENT_COLUMN] == experiment].iloc[0]
        return RunLabel(
            tool_condition=CLASS_NAMES[int(first[LABEL_COLUMN])],
            feedrate=float(first["feedrate"]),
            clamp_pressure=float(first["clamp_pressure"]),
            material=material,
        )

    def subset(self, experiments: np.ndarray | list[int]) -> Dataset:
        mask = self.rows[EXPERIMENT_COLUMN].isin(list(experiments))
        return Dataset(rows=self.rows[mask], content_hash=self.content_hash)

    def active(self) -> Dataset:
        """Only rows of active cutting (``Layer N Up/Down``): what the model learns from."""
        mask = self.rows[PROCESS_COLUMN].isin(ACTIVE_PROCESSES)
        return Dataset(rows=self.rows[mask], content_hash=self.content_hash)


def load_dataset(data_dir: Path) -> Dataset:
    """Read a data folder, validate every row against the schema and attach labels and metadata."""
    if not data_dir.is_dir():
        raise DataError(f"data folder {data_dir} does not exist")
    experiments = _read_experiment_table(data_dir)
    frames = []
    for number, path in _experiment_files(data_dir).items():
        if number not in experiments.index:
            raise DataError(f"{path.name} has no row in train.csv (experiment {number})")
        meta = experiments.loc[number]
        assert isinstance(meta, pd.Series)  # "No" is unique, checked above
        frames.append(_read_experiment(path, number, meta))
    if not frames:
        raise DataError(f"no experiment_NN.csv files in {data_dir}")
    rows = pd.concat(frames, ignore_index=True)
    return Dataset(rows=rows, content_hash=content_hash(rows))


def content_hash(rows: pd.DataFrame) -> str:
    """A hash of the data itself, not its files: the same rows hash the same compressed or not."""
    digest = hashlib.sha256()
    digest.update(",".join(map(str, rows.columns)).encode())
    digest.update(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _read_experiment_table(data_dir: Path) -> pd.DataFrame:
    path = data_dir / "train.csv"
    if not path.is_file():
        raise DataError(f"{data_dir} has no train.csv with the experiments' labels")
    table = pd.read_csv(path)
    needed = {"No", "tool_condition", *METADATA_COLUMNS}
    if missing := needed - set(table.columns):
        raise DataError(f"train.csv lacks column(s) {sorted(missing)}")
    unknown = set(table["tool_condition"]) - set(LABELS)
    if unknown:
        raise DataError(
            f"train.csv has unknown tool_condition value(s) {sorted(map(str, unknown))}"
        )
    if table["No"].duplicated().any():
        raise DataError("train.csv lists an experiment number twice")
    table[LABEL_COLUMN] = table["tool_condition"].map(LABELS).astype(int)
    return table.set_index("No")


def _experiment_files(data_dir: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for path in sorted(data_dir.iterdir()):
        if match := _EXPERIMENT_FILE.match(path.name):
            number = int(match.group(1))
            if number in found:
                raise DataError(
                    f"experiment {number} appears twice: {found[number].name}, {path.name}"
                )
            found[number] = path
    # By number, not by name: experiment_100 comes after experiment_99.
    return dict(sorted(found.items()))


def _read_experiment(path: Path, number: int, meta: pd.Series) -> pd.DataFrame:
    # Bare CR line endings (experiment_12.csv in the original data) are read by pandas' C parser.
    raw = pd.read_csv(path)
    for column in METADATA_COLUMNS:
        raw[column] = float(meta[column])
    columns = [*SENSOR_NUMERIC_COLUMNS, PROCESS_COLUMN, *METADATA_COLUMNS]
    try:
        rows = validate_rows(raw, columns)
    except SchemaError as error:
        raise DataError(f"{path.name}: {error}") from error
    rows[EXPERIMENT_COLUMN] = number
    rows[LABEL_COLUMN] = int(meta[LABEL_COLUMN])
    return rows
