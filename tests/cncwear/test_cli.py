"""The ``cncwear predict`` command: batch scoring with the champion, and clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from cncwear.core.schema import input_columns
from cncwear.data.dataset import Dataset

from .conftest import TrainedHome, run_cli


def registry_state(home: TrainedHome) -> tuple[int, int]:
    client = MlflowClient(
        tracking_uri=home.settings.tracking_uri(), registry_uri=home.settings.tracking_uri()
    )
    versions = client.search_model_versions(f"name = '{home.settings.model_name}'")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return len(versions), len(runs)


def predict_cli(home: TrainedHome, rows: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(home.settings.home, "predict", str(rows), "-o", str(out))


def write_rows(dataset: Dataset, path: Path, count: int = 6) -> pd.DataFrame:
    rows = dataset.active().rows[input_columns(use_identifying_columns=False)].head(count)
    rows = rows.reset_index(drop=True).astype(object)
    rows.to_csv(path, index=False)
    return rows


def test_predict_writes_a_class_and_probability_per_row(
    trained_home: TrainedHome, dataset: Dataset, tmp_path: Path
) -> None:
    write_rows(dataset, tmp_path / "rows.csv", count=25)
    result = predict_cli(trained_home, tmp_path / "rows.csv", tmp_path / "out.csv")
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(tmp_path / "out.csv")
    assert list(scored.columns) == ["label", "probability_worn"]
    assert len(scored) == 25
    assert set(scored["label"]) <= {"worn", "unworn"}
    assert scored["probability_worn"].between(0, 1).all()
    assert ((scored["probability_worn"] >= 0.5) == (scored["label"] == "worn")).all()


def test_predict_names_a_missing_column_a_text_value_nan_and_inf_and_writes_nothing(
    trained_home: TrainedHome, dataset: Dataset, tmp_path: Path
) -> None:
    rows = write_rows(dataset, tmp_path / "rows.csv")
    rows.loc[1, "X1_ActualVelocity"] = "secret-looking-text"
    rows.loc[2, "Y1_OutputCurrent"] = "NaN"
    rows.loc[3, "Z1_ActualPosition"] = "inf"
    rows.drop(columns=["S1_OutputPower"]).to_csv(tmp_path / "bad.csv", index=False)
    before = registry_state(trained_home)
    result = predict_cli(trained_home, tmp_path / "bad.csv", tmp_path / "out.csv")
    assert result.returncode == 2
    assert "'S1_OutputPower': missing column" in result.stderr
    rows.to_csv(tmp_path / "bad.csv", index=False)
    result = predict_cli(trained_home, tmp_path / "bad.csv", tmp_path / "out.csv")
    assert result.returncode == 2
    assert "row 1, column 'X1_ActualVelocity': not a number" in result.stderr
    assert "row 2, column 'Y1_OutputCurrent': NaN or empty" in result.stderr
    assert "row 3, column 'Z1_ActualPosition': infinite" in result.stderr
    assert "secret-looking-text" not in result.stderr + result.stdout
    assert not (tmp_path / "out.csv").exists()
    assert registry_state(trained_home) == before


def test_predict_without_a_champion_says_to_train_first(dataset: Dataset, tmp_path: Path) -> None:
    write_rows(dataset, tmp_path / "rows.csv")
    result = run_cli(tmp_path / "empty-home", "predict", str(tmp_path / "rows.csv"))
    assert result.returncode == 1
    assert "run a retrain first" in result.stderr


def test_the_cli_imports_no_training_module_until_it_trains() -> None:
    """``cncwear predict`` must run where the training stack (FLAML) is not installed: the API's
    environment."""
    code = (
        "import sys, cncwear.cli; print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'flaml', 'autosklearn'} or m.startswith('cncwear.training')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
