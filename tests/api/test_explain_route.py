"""POST /explain and GET /explain/global on a real server of the session's trained champion (a
random forest), on real rows."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from cncwear.registry.store import ModelStore
from cncwear.serving.compiled.artifact import registered_pipeline
from cncwear_api.schemas.errors import ProblemsResponse
from cncwear_api.schemas.explain import (
    AnchorExplanationPublic,
    GlobalViewPublic,
    LimeExplanationPublic,
    ShapExplanationPublic,
)

from .conftest import Registry, RunningServer, records, serve, wait_until
from .test_metrics import scrape, value
from .test_predict import recorded_tolerance


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def some_rows(real_rows: pd.DataFrame) -> list[dict[str, Any]]:
    """One row from each of six experiments, worn and unworn tools both."""
    return records(real_rows.iloc[::51].head(6))


def predicted(client: httpx.Client, row: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/predict", json={"rows": [row]})
    assert response.status_code == 200, response.text
    prediction: dict[str, Any] = response.json()["predictions"][0]
    return prediction


def selected_features(client: httpx.Client) -> list[str]:
    features: list[str] = client.get("/model").json()["selected_features"]
    return features


def test_shap_contributions_and_base_value_reproduce_the_reported_probability(
    client: httpx.Client, some_rows: list[dict[str, Any]], registry: Registry
) -> None:
    features = selected_features(client)
    tolerance = recorded_tolerance(registry, registry.model_name, registry.compiled_version)
    for row in some_rows:
        response = client.post("/explain", json={"row": row, "method": "shap"})
        assert response.status_code == 200, response.text
        answer = ShapExplanationPublic.model_validate(response.json())
        assert (answer.model.name, answer.model.version) == (
            registry.model_name,
            registry.compiled_version,
        )
        assert answer.method == "shap" and answer.seconds > 0
        assert answer.algorithm == "tree_path_dependent"
        assert answer.output_space == "probability"
        assert sorted(c.feature for c in answer.contributions) == sorted(features)
        total = answer.base_value + sum(c.contribution for c in answer.contributions)
        assert abs(total - answer.probability_worn) <= 1e-6
        assert abs(answer.output - answer.probability_worn) <= 1e-6
        assert answer.additivity_error <= 1e-6
        assert all(c.terms for c in answer.contributions)  # each feature in raw columns
        served = predicted(client, row)
        assert abs(served["probability_worn"] - answer.probability_worn) <= tolerance
        assert served["label"] == answer.label


def test_lime_gives_the_top_features_and_the_local_fit_for_the_predicted_class(
    client: httpx.Client, some_rows: list[dict[str, Any]], registry: Registry, server: RunningServer
) -> None:
    features = set(selected_features(client))
    row = some_rows[0]
    response = client.post("/explain", json={"row": row, "method": "lime"})
    assert response.status_code == 200, response.text
    answer = LimeExplanationPublic.model_validate(response.json())
    assert answer.model.version == registry.compiled_version
    assert answer.label == predicted(client, row)["label"]
    assert 0 < len(answer.features) <= min(len(features), server.settings.explain_lime_features)
    assert {w.feature for w in answer.features} <= features
    weights = [abs(w.weight) for w in answer.features]
    assert weights == sorted(weights, reverse=True)
    assert answer.score <= 1.0 and answer.samples == server.settings.explain_lime_samples
    assert answer.min_score == server.settings.explain_lime_min_score
    assert answer.low_fidelity == (answer.score < answer.min_score)


def test_an_anchor_is_a_rule_with_its_precision_and_coverage(
    client: httpx.Client, some_rows: list[dict[str, Any]], registry: Registry, server: RunningServer
) -> None:
    row = some_rows[1]
    response = client.post("/explain", json={"row": row, "method": "anchor"})
    assert response.status_code == 200, response.text
    answer = AnchorExplanationPublic.model_validate(response.json())
    assert answer.model.version == registry.compiled_version
    assert answer.label == predicted(client, row)["label"]
    assert answer.rule == (" AND ".join(c.text for c in answer.conditions) or "(any row)")
    assert set(c.feature for c in answer.conditions) <= set(selected_features(client))
    assert 0.0 <= answer.precision <= 1.0 and 0.0 <= answer.coverage <= 1.0
    assert answer.threshold == server.settings.explain_anchor_threshold
    assert answer.partial == (answer.stopped_by is not None)
    assert answer.binning == "model"  # the champion is a forest: bins on its split thresholds
    assert {c.feature for c in answer.conditions} <= set(answer.candidates)
    assert all(c.formula for c in answer.conditions)


def test_an_unknown_method_gets_422_listing_the_valid_ones(
    client: httpx.Client, some_rows: list[dict[str, Any]]
) -> None:
    response = client.post("/explain", json={"row": some_rows[0], "method": "kernel-shap"})
    assert response.status_code == 422
    body = response.json()
    assert body["valid_methods"] == ["shap", "lime", "anchor"]
    (problem,) = ProblemsResponse.model_validate(body).problems
    assert problem.column == "method"
    assert all(name in problem.problem for name in ("shap", "lime", "anchor"))


def problems_of(response: httpx.Response) -> set[tuple[int | None, str, str]]:
    assert response.status_code == 422, response.text
    return {
        (p.row, p.column, p.problem)
        for p in ProblemsResponse.model_validate(response.json()).problems
    }


def test_a_bad_row_gets_422_naming_each_column_like_predict(
    client: httpx.Client, some_rows: list[dict[str, Any]]
) -> None:
    row = dict(some_rows[0])
    row["X1_OutputCurrent"] = "hot"
    del row["Z1_ActualPosition"]
    row["spindle_temperature"] = 41.5
    assert problems_of(client.post("/explain", json={"row": row, "method": "shap"})) == {
        (None, "X1_OutputCurrent", "not a number"),
        (None, "Z1_ActualPosition", "missing column"),
        (None, "spindle_temperature", "unexpected column"),
    }
    row = dict(some_rows[0])
    row["Y1_OutputCurrent"] = float("nan")
    body = json.dumps({"row": row, "method": "lime"}).encode()  # a NaN literal, as some send
    response = client.post("/explain", content=body, headers={"content-type": "application/json"})
    assert problems_of(response) == {(None, "Y1_OutputCurrent", "NaN or empty")}


def test_a_body_without_a_row_is_named(client: httpx.Client) -> None:
    response = client.post("/explain", json={"rows": [], "method": "shap"})
    assert {column for _, column, _ in problems_of(response)} == {"row", "rows"}


def test_the_global_view_gives_importance_a_faithful_surrogate_and_partial_dependence(
    client: httpx.Client, registry: Registry
) -> None:
    features = selected_features(client)
    response = client.get("/explain/global")
    assert response.status_code == 200, response.text
    view = GlobalViewPublic.model_validate(response.json())
    assert view.model.version == registry.compiled_version
    assert sorted(f.feature for f in view.importance) == sorted(features)
    importance = [f.mean_abs_shap for f in view.importance]
    assert importance == sorted(importance, reverse=True) and importance[0] > 0
    surrogate = view.surrogate
    assert 0.0 <= surrogate.fidelity_accuracy <= 1.0
    assert surrogate.check_rows > 0 and surrogate.leaves >= 1
    assert any(feature in surrogate.rules for feature in features)
    top = [f.feature for f in view.importance[: len(view.partial_dependence)]]
    assert [pd_.feature for pd_ in view.partial_dependence] == top
    assert len(view.partial_dependence) == min(3, len(features))
    for curve in view.partial_dependence:
        assert len(curve.grid) == len(curve.average) >= 2
        assert curve.grid == sorted(curve.grid)
        assert len(curve.ice) == curve.ice_rows > 0
        assert all(len(line) == len(curve.grid) for line in curve.ice)
        assert all(0.0 <= p <= 1.0 for p in [*curve.average, *np.ravel(curve.ice)])
    again = client.get("/explain/global").json()
    assert again["importance"] == response.json()["importance"]  # kept per version


def test_without_a_champion_explanations_answer_503_like_predict(
    registry: Registry, some_rows: list[dict[str, Any]]
) -> None:
    settings = registry.settings(model_name="no-such-model")
    with serve(settings) as running, running.client() as client:
        answer = client.post("/explain", json={"row": some_rows[0], "method": "shap"})
        assert answer.status_code == 503
        assert answer.headers["Retry-After"]
        assert "no champion" in answer.json()["detail"]
        assert client.get("/explain/global").status_code == 503


def test_a_champion_registered_without_its_training_sample_gets_409(
    registry: Registry, real_rows: pd.DataFrame, some_rows: list[dict[str, Any]]
) -> None:
    name, _ = registry.new_model()
    store = ModelStore(registry.settings(model_name=name))
    pipeline = registered_pipeline(registry.store(), registry.compiled_version)
    with store.retrain_run(tags={}):
        uri = store.log_model(pipeline, input_example=real_rows.head(5), profile={"rows": 0})
    version = str(store.register(uri, tags={}).version)
    store.set_champion(version)
    with serve(registry.settings(model_name=name)) as running, running.client() as client:
        running.wait_ready(version)
        answer = client.post("/explain", json={"row": some_rows[0], "method": "shap"})
        assert answer.status_code == 409
        assert "training sample" in answer.json()["detail"]
        assert client.get("/explain/global").status_code == 409
        assert client.post("/predict", json={"rows": [some_rows[0]]}).status_code == 200


# -- explanations beside predictions -------------------------------------------------------------


@pytest.fixture(scope="module")
def busy_server(registry: Registry) -> Iterator[RunningServer]:
    """One explanation at a time, none waiting; anchors asked for a precision of 1 and capped by
    time only, so a search on a row near the boundary runs for seconds (to its cap, or until the
    library gives up below the threshold)."""
    settings = registry.settings(
        explain_concurrency=1,
        explain_max_waiting=0,
        explain_anchor_threshold=1.0,
        explain_anchor_max_seconds=2.0,
        explain_anchor_max_samples=10_000_000,
    )
    with serve(settings) as running:
        running.wait_ready(registry.compiled_version)
        yield running


@pytest.fixture(scope="module")
def boundary_row(real_rows: pd.DataFrame, busy_server: RunningServer) -> dict[str, Any]:
    """The real row whose wear probability is nearest 0.5: the hardest to anchor."""
    rows = records(real_rows)
    with busy_server.client() as client:
        body = client.post("/predict", json={"rows": rows}).json()
    probability = np.array([p["probability_worn"] for p in body["predictions"]])
    return rows[int(np.argmin(np.abs(probability - 0.5)))]


def running_explanations(server: RunningServer) -> float:
    return value(scrape(server)["cncwear_explanations_running"], "cncwear_explanations_running")


class AnchorInBackground:
    """An anchor explanation requested from another thread; records when it is answered."""

    def __init__(self, server: RunningServer, row: dict[str, Any], finished: list[str]) -> None:
        self.response: httpx.Response | None = None

        def request() -> None:
            with server.client() as client:
                self.response = client.post("/explain", json={"row": row, "method": "anchor"})
            finished.append("anchor")

        self.thread = threading.Thread(target=request)
        self.thread.start()
        wait_until(lambda: running_explanations(server) == 1, "the anchor search to start")

    def result(self) -> httpx.Response:
        self.thread.join(timeout=120)
        assert self.response is not None
        return self.response


def test_a_predict_sent_while_an_anchor_runs_is_answered_before_it(
    busy_server: RunningServer, boundary_row: dict[str, Any]
) -> None:
    finished: list[str] = []
    partial_before = value(
        scrape(busy_server)["cncwear_explanation_anchor_partial"],
        "cncwear_explanation_anchor_partial_total",
    )
    anchor = AnchorInBackground(busy_server, boundary_row, finished)
    with busy_server.client() as client:
        assert client.post("/predict", json={"rows": [boundary_row]}).status_code == 200
    finished.append("predict")
    response = anchor.result()
    assert finished == ["predict", "anchor"]
    assert response.status_code == 200, response.text
    answer = AnchorExplanationPublic.model_validate(response.json())
    assert answer.partial == (answer.stopped_by == "time")  # only the time cap is in reach
    metrics = scrape(busy_server)
    assert (
        value(
            metrics["cncwear_explanation_anchor_partial"],
            "cncwear_explanation_anchor_partial_total",
        )
        == partial_before + answer.partial
    )
    assert (
        value(
            metrics["cncwear_explanation_duration_seconds"],
            "cncwear_explanation_duration_seconds_count",
            method="anchor",
        )
        >= 1
    )


def test_an_explanation_beyond_the_free_slots_gets_503_with_retry_after(
    busy_server: RunningServer, boundary_row: dict[str, Any]
) -> None:
    anchor = AnchorInBackground(busy_server, boundary_row, [])
    with busy_server.client() as client:
        refused = client.post("/explain", json={"row": boundary_row, "method": "shap"})
        assert refused.status_code == 503
        assert refused.headers["Retry-After"]
        assert "try again" in refused.json()["detail"]
        assert client.post("/predict", json={"rows": [boundary_row]}).status_code == 200
    assert anchor.result().status_code == 200
    with busy_server.client() as client:
        assert (
            client.post("/explain", json={"row": boundary_row, "method": "shap"}).status_code == 200
        )
