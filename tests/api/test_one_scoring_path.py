"""``cncwear predict``, ``/predict`` and ``/explain`` score raw rows through one path: the same
validation (``cncwear.serving.batch``) and the same model function (``ScoringModel``, the compiled
form when trusted). The CLI runs as the real console script on the session's registry."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from cncwear.serving.batch import VALUE_LIMIT
from cncwear.serving.model import ONNX, load_scoring_model
from cncwear_api.schemas.errors import ProblemsResponse

from .conftest import Registry, RunningServer, records

CLI = Path(sys.executable).parent / "cncwear"
OUT_OF_RANGE = f"out of range (magnitude above {VALUE_LIMIT:g})"


def cncwear_predict(registry: Registry, rows: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CNCWEAR_HOME": str(registry.home),
        "CNCWEAR_MODEL_NAME": registry.model_name,
        "COLUMNS": "200",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [str(CLI), "predict", str(rows), "-o", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def csv_cells(path: Path) -> dict[str, list[list[str]] | list[str]]:
    """The CSV as ``cncwear predict`` reads it (every cell as text), in the columnar form."""
    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    return {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_cncwear_predict_gives_the_probabilities_predict_gives_for_the_same_csv(
    registry: Registry, client: httpx.Client, real_rows: pd.DataFrame, tmp_path: Path
) -> None:
    real_rows.head(40).to_csv(tmp_path / "rows.csv", index=False)
    assert load_scoring_model(registry.store()).runtime == ONNX  # what the CLI loads
    result = cncwear_predict(registry, tmp_path / "rows.csv", tmp_path / "out.csv")
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(tmp_path / "out.csv", float_precision="round_trip")

    response = client.post("/predict", json=csv_cells(tmp_path / "rows.csv"))
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert scored["probability_worn"].tolist() == [p["probability_worn"] for p in predictions]
    assert scored["label"].tolist() == [p["label"] for p in predictions]
    numeric = client.post("/predict", json={"rows": records(real_rows.head(40))}).json()
    assert scored["label"].tolist() == [p["label"] for p in numeric["predictions"]]


def test_a_reading_over_the_limit_is_refused_by_cncwear_predict_predict_and_explain(
    registry: Registry, client: httpx.Client, real_rows: pd.DataFrame, tmp_path: Path
) -> None:
    rows = real_rows.head(5).astype(object)
    rows.loc[2, "X1_ActualPosition"] = f"{VALUE_LIMIT * 10:g}"
    rows.to_csv(tmp_path / "huge.csv", index=False)

    result = cncwear_predict(registry, tmp_path / "huge.csv", tmp_path / "out.csv")
    assert result.returncode == 2, result.stderr
    assert f"row 2, column 'X1_ActualPosition': {OUT_OF_RANGE}" in result.stderr
    assert not (tmp_path / "out.csv").exists()

    response = client.post("/predict", json=csv_cells(tmp_path / "huge.csv"))
    assert response.status_code == 422, response.text
    problems = ProblemsResponse.model_validate(response.json()).problems
    assert [(p.row, p.column, p.problem) for p in problems] == [
        (2, "X1_ActualPosition", OUT_OF_RANGE)
    ]

    row = {**records(real_rows.iloc[[2]])[0], "X1_ActualPosition": VALUE_LIMIT * 10}
    response = client.post("/explain", json={"row": row, "method": "shap"})
    assert response.status_code == 422, response.text
    problems = ProblemsResponse.model_validate(response.json()).problems
    assert [(p.column, p.problem) for p in problems] == [("X1_ActualPosition", OUT_OF_RANGE)]


def test_an_explanation_reports_exactly_the_probability_predict_answers(
    client: httpx.Client, real_rows: pd.DataFrame
) -> None:
    for row in records(real_rows.iloc[::37].head(8)):
        predicted = client.post("/predict", json={"rows": [row]}).json()["predictions"][0]
        for method in ("shap", "lime"):
            response = client.post("/explain", json={"row": row, "method": method})
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["probability_worn"] == predicted["probability_worn"]
            assert answer["label"] == predicted["label"]
