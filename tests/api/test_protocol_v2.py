"""The Open Inference Protocol v2 (REST), checked by a client written by others: tritonclient's
``InferenceServerClient`` in JSON mode, against a real server of the session's champion. The V2
routes score through ``/predict``'s path: the same probabilities, the same validation (a bad cell is
named the same way), the same runs, the same metrics (labelled by protocol)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from tritonclient.utils import InferenceServerException

from cncwear.core.schema import PROCESS_COLUMN
from tests.helpers import TEST_REDIS_URL

from .conftest import Registry, RunningServer, records, serve, v2_inputs


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder: Path = tmp_path_factory.mktemp("v2")
    settings = registry.settings(
        max_batch_rows=1000,
        max_body_bytes=2 * 1024 * 1024,
        data_store_url=f"sqlite:///{folder / 'runs.db'}",
        redis_url=TEST_REDIS_URL,
        retrain_after_runs=0,
    )
    with serve(settings) as running:
        running.wait_ready(registry.compiled_version)
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[triton.InferenceServerClient]:
    tc = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield tc
    tc.close()


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def rows(real_rows: pd.DataFrame) -> pd.DataFrame:
    return real_rows.head(40)


def column_inputs(frame: pd.DataFrame) -> list[triton.InferInput]:
    inputs = []
    for column in frame.columns:
        text = column == PROCESS_COLUMN
        tensor = triton.InferInput(column, [len(frame)], "BYTES" if text else "FP64")
        values = frame[column].to_numpy(dtype=object if text else np.float64)
        tensor.set_data_from_numpy(values, binary_data=False)
        inputs.append(tensor)
    return inputs


def requested(*names: str) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=False) for name in names]


def predicted(http: httpx.Client, frame: pd.DataFrame) -> dict[str, Any]:
    response = http.post("/predict", json={"rows": records(frame)})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_tritonclient_finds_the_server_live_and_ready_and_the_champion_ready(
    client: triton.InferenceServerClient, registry: Registry
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(registry.model_name)
    assert client.is_model_ready(registry.model_name, registry.compiled_version)
    assert not client.is_model_ready(registry.model_name, "999")
    assert not client.is_model_ready("another-model")


def test_server_metadata_names_the_server_and_its_version(http: httpx.Client) -> None:
    body = http.get("/v2").json()
    assert body["name"] == "cncwear"
    assert body["version"]
    assert body["extensions"] == []


def test_model_metadata_lists_one_input_per_raw_column_and_the_two_outputs(
    client: triton.InferenceServerClient, registry: Registry, rows: pd.DataFrame
) -> None:
    metadata = client.get_model_metadata(registry.model_name)
    assert metadata["name"] == registry.model_name
    assert metadata["versions"] == [registry.compiled_version]
    assert metadata["platform"] == "onnxruntime"
    assert [i["name"] for i in metadata["inputs"]] == list(rows.columns)
    for tensor in metadata["inputs"]:
        assert tensor["shape"] == [-1]
        assert tensor["datatype"] == ("BYTES" if tensor["name"] == PROCESS_COLUMN else "FP64")
    assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == {
        "probability_worn": "FP64",
        "label": "BYTES",
    }
    by_version = client.get_model_metadata(registry.model_name, registry.compiled_version)
    assert by_version == metadata


def test_tritonclient_inference_gives_the_probabilities_and_labels_of_predict(
    client: triton.InferenceServerClient,
    http: httpx.Client,
    registry: Registry,
    rows: pd.DataFrame,
) -> None:
    result = client.infer(
        registry.model_name,
        column_inputs(rows),
        outputs=requested("probability_worn", "label"),
        request_id="batch-17",
        parameters={"content_type": "pd"},
    )
    expected = predicted(http, rows)
    probability = result.as_numpy("probability_worn")
    assert probability is not None
    want = np.array([p["probability_worn"] for p in expected["predictions"]])
    np.testing.assert_allclose(probability, want, rtol=0, atol=1e-12)
    labels = result.as_numpy("label")
    assert labels is not None
    assert [str(label) for label in labels] == [p["label"] for p in expected["predictions"]]
    response = result.get_response()
    assert response["model_version"] == expected["model"]["version"] == registry.compiled_version
    assert response["id"] == "batch-17"


def test_the_compact_form_gives_the_same_probabilities(
    client: triton.InferenceServerClient,
    http: httpx.Client,
    registry: Registry,
    rows: pd.DataFrame,
) -> None:
    metadata = client.get_model_metadata(registry.model_name)
    numeric_columns = [i["name"] for i in metadata["inputs"] if i["datatype"] != "BYTES"]
    numeric = triton.InferInput("numeric", [len(rows), len(numeric_columns)], "FP64")
    numeric.set_data_from_numpy(rows[numeric_columns].to_numpy(np.float64), binary_data=False)
    process = triton.InferInput(PROCESS_COLUMN, [len(rows)], "BYTES")
    process.set_data_from_numpy(rows[PROCESS_COLUMN].to_numpy(object), binary_data=False)
    result = client.infer(
        registry.model_name, [numeric, process], outputs=requested("probability_worn")
    )
    want = [p["probability_worn"] for p in predicted(http, rows)["predictions"]]
    np.testing.assert_allclose(result.as_numpy("probability_worn"), want, rtol=0, atol=1e-12)


def test_fp32_inputs_are_scored_as_the_same_values_in_float64(
    http: httpx.Client, registry: Registry, rows: pd.DataFrame
) -> None:
    single = rows.copy()
    numeric = [c for c in rows.columns if c != PROCESS_COLUMN]
    single[numeric] = rows[numeric].to_numpy(np.float32).astype(np.float64)
    inputs = v2_inputs(records(single), "FP32")
    response = http.post(f"/v2/models/{registry.model_name}/infer", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    (output,) = [o for o in response.json()["outputs"] if o["name"] == "probability_worn"]
    want = [p["probability_worn"] for p in predicted(http, single)["predictions"]]
    np.testing.assert_allclose(output["data"], want, rtol=0, atol=1e-12)


def test_only_the_outputs_named_are_answered(
    client: triton.InferenceServerClient, registry: Registry, rows: pd.DataFrame
) -> None:
    result = client.infer(registry.model_name, column_inputs(rows), outputs=requested("label"))
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert result.as_numpy("probability_worn") is None


def test_a_version_not_served_is_404_naming_the_version_served(
    client: triton.InferenceServerClient, registry: Registry, rows: pd.DataFrame
) -> None:
    with pytest.raises(InferenceServerException) as refused:
        client.infer(registry.model_name, column_inputs(rows), model_version="999")
    assert refused.value.status() == "404"
    assert f"versions served: {registry.compiled_version}" in refused.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_metadata("another-model")
    assert unknown.value.status() == "404"
    assert "another-model" in unknown.value.message()


def test_a_bad_cell_is_named_as_predict_names_it_in_the_error_object(
    http: httpx.Client, registry: Registry, rows: pd.DataFrame
) -> None:
    bad = rows.head(3).copy()
    bad.loc[1, "X1_OutputPower"] = float("nan")
    body = {"inputs": v2_inputs(records(bad))}
    json_headers = {"content-type": "application/json"}
    path = f"/v2/models/{registry.model_name}/infer"
    response = http.post(path, content=json.dumps(body), headers=json_headers)
    assert response.status_code == 400
    error = response.json()["error"]
    refused = http.post(
        "/predict", content=json.dumps({"rows": records(bad)}), headers=json_headers
    )
    (problem,) = refused.json()["problems"]
    assert f"row 1, X1_OutputPower: {problem['problem']}" in error


def test_rows_sent_with_a_run_parameter_are_appended_to_that_run(
    client: triton.InferenceServerClient,
    http: httpx.Client,
    registry: Registry,
    rows: pd.DataFrame,
) -> None:
    run = f"mill-3/2026-12-02/job-{uuid.uuid4().hex[:8]}"
    result = client.infer(
        registry.model_name,
        column_inputs(rows.head(5)),
        outputs=requested("label"),
        parameters={"run": run},
    )
    parameters = result.get_response()["parameters"]
    assert parameters["run"] == run
    assert parameters["run_rows_kept"] == parameters["run_rows"] == 5
    more = http.post("/predict", json={"rows": records(rows.head(2)), "run": run})
    assert more.json()["run"]["run_rows"] == 7


def test_v2_requests_are_counted_with_their_protocol(
    client: triton.InferenceServerClient, http: httpx.Client, registry: Registry, rows: pd.DataFrame
) -> None:
    client.infer(registry.model_name, column_inputs(rows.head(2)), outputs=requested("label"))
    text = http.get("/metrics").text
    samples = [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "cncwear_http_requests_total"
    ]
    v2 = [s for s in samples if s.labels["route"] == "/v2/models/{name}/infer"]
    assert v2
    assert {s.labels["protocol"] for s in v2} == {"v2"}
    assert {s.labels["protocol"] for s in samples if s.labels["route"] == "/predict"} == {"cncwear"}


def test_rows_scored_through_v2_and_invocations_are_watched_for_drift(
    http: httpx.Client, registry: Registry, rows: pd.DataFrame
) -> None:
    before = http.get("/drift").json()["rows_seen"]
    infer = f"/v2/models/{registry.model_name}/infer"
    assert http.post(infer, json={"inputs": v2_inputs(records(rows.head(7)))}).status_code == 200
    split = {"columns": list(rows.columns), "data": rows.head(5).astype(object).values.tolist()}
    assert http.post("/invocations", json={"dataframe_split": split}).status_code == 200
    assert http.get("/drift").json()["rows_seen"] == before + 12


def test_with_reads_closed_the_protocol_routes_need_the_token_and_their_probes_do_not(
    registry: Registry, rows: pd.DataFrame
) -> None:
    token = "protocol-reader-token-77"
    settings = registry.settings(api_token=SecretStr(token), protect_reads=True)
    auth = {"Authorization": f"Bearer {token}"}
    infer = f"/v2/models/{registry.model_name}/infer"
    split = {"columns": list(rows.columns), "data": rows.head(2).astype(object).values.tolist()}
    with serve(settings) as running, running.client() as client:
        running.wait_ready()
        refused = client.post(infer, json={"inputs": v2_inputs(records(rows.head(2)))})
        assert refused.status_code == 401
        assert "token" in refused.json()["error"].lower()
        assert client.post(
            infer, json={"inputs": v2_inputs(records(rows.head(2)))}, headers=auth
        ).is_success
        assert client.get(f"/v2/models/{registry.model_name}").status_code == 401
        refused = client.post("/invocations", json={"dataframe_split": split})
        assert refused.status_code == 401
        assert refused.json()["error_code"] == "UNAUTHENTICATED"
        accepted = client.post("/invocations", json={"dataframe_split": split}, headers=auth)
        assert accepted.status_code == 200
        for probe in ("/v2", "/v2/health/live", "/v2/health/ready", "/ping", "/version"):
            assert client.get(probe).status_code == 200, probe
        assert client.get(f"/v2/models/{registry.model_name}/ready").status_code == 200
