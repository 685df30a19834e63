"""POST /predict on real rows: answers, the verdict, and parity with the registered scikit-learn
model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cncwear.registry.tags import Tag
from cncwear.serving.compiled.artifact import registered_pipeline
from cncwear_api.schemas.predict import PredictResponse

from .conftest import Registry, RunningServer, records, serve


def sklearn_probability(
    registry: Registry, model_name: str, version: str, rows: pd.DataFrame
) -> np.ndarray:
    pipeline = registered_pipeline(registry.store(model_name), version)
    return np.asarray(pipeline.predict_proba(rows)[:, 1])


def recorded_tolerance(registry: Registry, model_name: str, version: str) -> float:
    tags = registry.store(model_name).client.get_model_version(model_name, version).tags
    return float(tags[Tag.COMPILED_TOLERANCE])


def test_predict_scores_real_rows_with_the_champion(
    server: RunningServer, real_rows: pd.DataFrame, registry: Registry
) -> None:
    with server.client() as client:
        response = client.post("/predict", json={"rows": records(real_rows)})
    assert response.status_code == 200
    body = PredictResponse.model_validate(response.json())
    assert body.model.name == registry.model_name
    assert body.model.version == registry.compiled_version
    assert len(body.predictions) == len(real_rows)
    assert {p.label for p in body.predictions} == {"worn", "unworn"}
    for prediction in body.predictions:
        assert (prediction.label == "worn") == (prediction.probability_worn >= 0.5)
    assert body.request_id == response.headers["x-request-id"]


def test_verdict_reads_the_batch_as_one_tool(
    server: RunningServer, real_rows: pd.DataFrame
) -> None:
    with server.client() as client:
        body = client.post("/predict", json={"rows": records(real_rows)}).json()
    probabilities = np.array([p["probability_worn"] for p in body["predictions"]])
    verdict = body["verdict"]
    assert verdict["rows"] == len(real_rows)
    assert verdict["mean_probability_worn"] == np.mean(probabilities)
    assert verdict["label"] == ("worn" if np.mean(probabilities) >= 0.5 else "unworn")
    assert verdict["worn_rows"] == int(np.sum(probabilities >= 0.5))


def test_probabilities_equal_the_registered_sklearn_models_within_the_recorded_tolerance(
    server: RunningServer, real_rows: pd.DataFrame, registry: Registry
) -> None:
    with server.client() as client:
        body = client.post("/predict", json={"rows": records(real_rows)}).json()
    served = np.array([p["probability_worn"] for p in body["predictions"]])
    expected = sklearn_probability(
        registry, registry.model_name, registry.compiled_version, real_rows
    )
    tolerance = recorded_tolerance(registry, registry.model_name, registry.compiled_version)
    assert tolerance <= 1e-6
    assert np.max(np.abs(served - expected)) <= tolerance


def test_columnar_form_gives_the_same_answers_as_records(
    server: RunningServer, real_rows: pd.DataFrame
) -> None:
    shuffled = real_rows[list(reversed(real_rows.columns))]  # any column order
    columnar = {"columns": list(shuffled.columns), "data": shuffled.to_numpy().tolist()}
    with server.client() as client:
        by_columns = client.post("/predict", json=columnar).json()
        by_records = client.post("/predict", json={"rows": records(real_rows)}).json()
    assert by_columns["predictions"] == by_records["predictions"]
    assert by_columns["verdict"] == by_records["verdict"]


def test_numbers_sent_as_text_are_read_as_numbers(
    server: RunningServer, real_rows: pd.DataFrame
) -> None:
    rows = records(real_rows.head(3))
    as_text = [{k: (str(v) if isinstance(v, float) else v) for k, v in row.items()} for row in rows]
    with server.client() as client:
        numbers = client.post("/predict", json={"rows": rows}).json()
        texts = client.post("/predict", json={"rows": as_text}).json()
    assert texts["predictions"] == numbers["predictions"]


def test_a_batch_at_the_row_limit_is_accepted(
    server: RunningServer, real_rows: pd.DataFrame
) -> None:
    limit = server.settings.max_batch_rows
    frame = pd.concat([real_rows] * (limit // len(real_rows) + 1)).head(limit)
    body = {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}
    with server.client() as client:
        response = client.post("/predict", json=body)
    assert response.status_code == 200
    assert response.json()["verdict"]["rows"] == limit


def test_a_client_request_id_is_kept(server: RunningServer, real_rows: pd.DataFrame) -> None:
    with server.client() as client:
        response = client.post(
            "/predict",
            json={"rows": records(real_rows.head(1))},
            headers={"X-Request-ID": "shop-7.42"},
        )
    assert response.json()["request_id"] == "shop-7.42"
    assert response.headers["x-request-id"] == "shop-7.42"


def test_a_model_without_compiled_form_is_served_by_sklearn_with_the_same_answers(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    name, (version,) = registry.new_model(
        registry.fallback_version, champion=registry.fallback_version
    )
    with serve(registry.settings(model_name=name)) as running:
        running.wait_ready(version)
        with running.client() as client:
            body = client.post("/predict", json={"rows": records(real_rows)}).json()
            card = client.get("/model").json()
    assert card["serving"]["runtime"] == "scikit-learn"
    assert "DummyClassifier" in card["serving"]["fallback_reason"]
    served = np.array([p["probability_worn"] for p in body["predictions"]])
    assert np.array_equal(served, sklearn_probability(registry, name, version, real_rows))
