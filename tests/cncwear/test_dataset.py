"""Loading the bundled data set and other folders of the same format."""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path

import pytest

from cncwear.core.errors import DataError
from cncwear.core.schema import ACTIVE_PROCESSES, PROCESS_COLUMN
from cncwear.core.settings import BUNDLED_DATA_DIR
from cncwear.data.dataset import Dataset, load_dataset


def _bundled_text(name: str) -> str:
    return lzma.decompress((BUNDLED_DATA_DIR / name).read_bytes()).decode()


def test_bundled_data_has_18_labelled_experiments(dataset: Dataset) -> None:
    labels = dataset.experiment_labels()
    assert list(labels.index) == list(range(1, 19))
    assert sorted(labels[labels == 0].index) == [1, 2, 3, 4, 5, 11, 12, 17]
    assert len(dataset.rows) == 25_286


def test_rows_carry_experiment_metadata(dataset: Dataset) -> None:
    first = dataset.rows[dataset.rows["experiment"] == 4].iloc[0]
    assert (first["feedrate"], first["clamp_pressure"], first["label"]) == (6.0, 2.5, 0)


def test_active_rows_are_only_layer_cutting(dataset: Dataset) -> None:
    active = dataset.active()
    assert set(active.rows[PROCESS_COLUMN]) == ACTIVE_PROCESSES
    assert 0 < len(active.rows) < len(dataset.rows)


def test_content_hash_depends_on_the_data_not_on_compression(
    dataset: Dataset, tmp_path: Path
) -> None:
    for path in BUNDLED_DATA_DIR.glob("*.xz"):
        (tmp_path / path.name.removesuffix(".xz")).write_text(_bundled_text(path.name))
    shutil.copy(BUNDLED_DATA_DIR / "train.csv", tmp_path)
    assert load_dataset(tmp_path).content_hash == dataset.content_hash
    (tmp_path / "experiment_18.csv").unlink()
    assert load_dataset(tmp_path).content_hash != dataset.content_hash


def test_files_with_bare_cr_line_endings_load_the_same(tmp_path: Path) -> None:
    # experiment_12.csv of the original download ends its lines with a bare CR.
    shutil.copy(BUNDLED_DATA_DIR / "train.csv", tmp_path)
    text = _bundled_text("experiment_12.csv.xz")
    (tmp_path / "experiment_12.csv").write_bytes(text.replace("\n", "\r").encode())
    with_cr = load_dataset(tmp_path)
    (tmp_path / "experiment_12.csv").write_text(text)
    assert with_cr.rows.shape == (2276, 52)
    assert with_cr.content_hash == load_dataset(tmp_path).content_hash


def test_a_folder_without_labels_is_refused(tmp_path: Path) -> None:
    shutil.copy(BUNDLED_DATA_DIR / "experiment_01.csv.xz", tmp_path)
    with pytest.raises(DataError, match=r"train\.csv"):
        load_dataset(tmp_path)


def test_an_unknown_label_is_refused(tmp_path: Path) -> None:
    text = (BUNDLED_DATA_DIR / "train.csv").read_text().replace("unworn", "blunt", 1)
    (tmp_path / "train.csv").write_text(text)
    with pytest.raises(DataError, match="blunt"):
        load_dataset(tmp_path)


def test_a_bad_value_in_an_experiment_file_names_file_row_and_column(tmp_path: Path) -> None:
    shutil.copy(BUNDLED_DATA_DIR / "train.csv", tmp_path)
    lines = _bundled_text("experiment_01.csv.xz").splitlines()
    cells = lines[3].split(",")
    cells[0] = "oops"
    lines[3] = ",".join(cells)
    (tmp_path / "experiment_01.csv").write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"experiment_01.csv: .*row 2, column 'X1_ActualPosition'"):
        load_dataset(tmp_path)
