"""GET /model: what is being served, with the honest metrics first and the leaky one labelled."""

from __future__ import annotations

from cncwear.data.features import selected_features
from cncwear.serving.compiled.artifact import registered_pipeline
from cncwear_api.schemas.model import ModelPublic

from .conftest import Registry, RunningServer


def test_model_describes_the_champion(server: RunningServer, registry: Registry) -> None:
    with server.client() as client:
        card = ModelPublic.model_validate(client.get("/model").json())
    assert card.name == registry.model_name
    assert card.version == registry.compiled_version
    assert card.candidate == "random_forest"
    assert card.estimator == "RandomForestClassifier"
    assert card.engine == "scikit-learn"
    assert card.trained_at is not None and card.registered_at is not None
    assert card.run_id and card.retrain_run_id
    pipeline = registered_pipeline(registry.store(), registry.compiled_version)
    assert card.selected_features == selected_features(pipeline)
    assert "Machining_Process" in card.input_columns


def test_model_shows_grouped_metrics_and_labels_the_leaky_figure(server: RunningServer) -> None:
    with server.client() as client:
        card = ModelPublic.model_validate(client.get("/model").json())
    assert {"accuracy", "mcc", "roc_auc", "experiment_accuracy"} <= set(card.metrics.holdout)
    assert card.metrics.cv_grouped_accuracy is not None
    assert card.metrics.holdout_experiments
    assert card.leaky_row_split.accuracy is not None
    assert card.leaky_row_split.warning.startswith("LEAKY")


def test_model_says_how_it_is_served_and_the_measured_parity(server: RunningServer) -> None:
    with server.client() as client:
        serving = ModelPublic.model_validate(client.get("/model").json()).serving
    assert serving.runtime == "onnxruntime"
    assert serving.converter == "cncwear-trees"
    assert serving.parity_tolerance is not None and serving.parity_tolerance <= 1e-6
    assert serving.parity_max_abs_diff is not None
    assert serving.parity_max_abs_diff <= serving.parity_tolerance
    assert serving.parity_rows is not None and serving.parity_rows > 1000
    assert serving.load_check_max_abs_diff is not None
    assert serving.load_check_max_abs_diff <= serving.parity_tolerance
    assert serving.fallback_reason is None


def test_openapi_documents_both_request_forms_with_real_rows(server: RunningServer) -> None:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {"rows", "columns"}
    assert body["examples"]["rows"]["value"]["rows"][0]["X1_OutputCurrent"] == 326.0
    assert {"rows", "columns", "data"} <= set(body["schema"]["properties"])
    assert {"200", "413", "422", "503"} <= set(spec["paths"]["/predict"]["post"]["responses"])
