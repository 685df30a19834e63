"""Hostile input, written by hand: each gets a clear 4xx naming the problem, and the service stays
healthy (it answers /health and a normal /predict right after)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.api.conftest import Registry, records, v2_inputs

from .conftest import AUTH, TOKEN, RunningServer, serve

BODY_LIMIT = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def server(registry: Registry) -> Iterator[RunningServer]:
    settings = registry.settings(
        api_token=TOKEN, max_body_bytes=BODY_LIMIT, redis_url="redis://127.0.0.1:1/0"
    )
    with serve(settings) as running:
        running.wait_ready(registry.compiled_version)
        yield running


@pytest.fixture
def client(server: RunningServer, real_rows: pd.DataFrame) -> Iterator[httpx.Client]:
    """A client; after the test, the server must still be healthy and predicting."""
    with server.client() as http:
        yield http
        assert http.get("/health").status_code == 200
        normal = http.post("/predict", json={"rows": records(real_rows.head(3))})
        assert normal.status_code == 200, normal.text
        assert len(normal.json()["predictions"]) == 3


def post_json(client: httpx.Client, path: str, body: bytes, **headers: str) -> httpx.Response:
    return client.post(path, content=body, headers={"content-type": "application/json", **headers})


def problems(response: httpx.Response) -> list[dict[str, Any]]:
    problems: list[dict[str, Any]] = response.json()["problems"]
    return problems


@pytest.fixture
def row(real_rows: pd.DataFrame) -> dict[str, Any]:
    return records(real_rows.head(1))[0]


# -- size ----------------------------------------------------------------------------------------


BODY_ROUTES = ["/predict", "/explain", "/retrain", "/feedback"]


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_a_body_over_the_limit_is_refused_on_every_route(client: httpx.Client, path: str) -> None:
    body = b'{"rows": [' + b" " * BODY_LIMIT + b"]}"
    response = post_json(client, path, body, **AUTH)
    assert response.status_code == 413
    assert f"limit of {BODY_LIMIT} bytes" in response.json()["detail"]


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_a_body_streamed_past_the_limit_without_a_length_is_refused(
    client: httpx.Client, path: str
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"reason": "'
        for _ in range(BODY_LIMIT // 65536 + 2):
            yield b"a" * 65536
        yield b'"}'

    response = client.post(
        path, content=chunks(), headers={"content-type": "application/json", **AUTH}
    )
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


def test_a_million_row_batch_is_refused_by_its_row_count(client: httpx.Client) -> None:
    body = b'{"rows": [' + b",".join([b"{}"] * 1_000_000) + b"]}"
    assert len(body) < BODY_LIMIT
    response = post_json(client, "/predict", body)
    assert response.status_code == 413
    assert "1000000 rows" in response.json()["detail"]


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_deeply_nested_json_is_refused_as_invalid_json(client: httpx.Client, path: str) -> None:
    depth = 100_000
    body = b'{"rows": ' + b"[" * depth + b"]" * depth + b"}"
    response = post_json(client, path, body, **AUTH)
    assert response.status_code == 422
    (problem,) = problems(response)
    assert problem["column"] == "*"
    assert "JSON" in problem["problem"]


# -- numbers that are not numbers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", '"NaN"', '"nan"', '"inf"',
                 '"-Infinity"', '"1e999"']
)  # fmt: skip
def test_nan_and_infinity_in_any_spelling_are_named_by_row_and_column(
    client: httpx.Client, row: dict[str, Any], spelling: str
) -> None:
    cell = "X1_ActualPosition"
    body = json.dumps({"rows": [row, {**row, cell: "@@"}]}).replace('"@@"', spelling)
    response = post_json(client, "/predict", body.encode())
    assert response.status_code == 422, spelling
    assert [(p["row"], p["column"]) for p in problems(response)] == [(1, cell)]


@pytest.mark.parametrize("spelling", ["nan", "inf", "-inf", "+Infinity", "NAN", "Inf"])
def test_nan_and_infinity_spellings_json_does_not_allow_are_invalid_json(
    client: httpx.Client, row: dict[str, Any], spelling: str
) -> None:
    body = json.dumps({"rows": [{**row, "X1_ActualPosition": "@@"}]}).replace('"@@"', spelling)
    response = post_json(client, "/predict", body.encode())
    assert response.status_code == 422
    (problem,) = problems(response)
    assert problem["column"] == "*" and "not valid JSON" in problem["problem"]


# -- what the body claims to be ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                     "application/xml", ""]
)  # fmt: skip
@pytest.mark.parametrize("path", BODY_ROUTES)
def test_a_body_not_declared_as_json_gets_415(
    client: httpx.Client, row: dict[str, Any], content_type: str, path: str
) -> None:
    body = json.dumps({"rows": [row]}).encode()
    headers = {"content-type": content_type, **AUTH} if content_type else AUTH
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def test_json_with_a_charset_or_a_json_suffix_is_accepted(
    client: httpx.Client, row: dict[str, Any]
) -> None:
    body = json.dumps({"rows": [row]}).encode()
    for content_type in ("application/json; charset=utf-8", "application/vnd.cncwear+json"):
        response = client.post("/predict", content=body, headers={"content-type": content_type})
        assert response.status_code == 200, content_type


def test_a_body_that_is_not_utf8_is_refused_as_invalid_json(client: httpx.Client) -> None:
    for path in BODY_ROUTES:
        response = post_json(client, path, b'{"reason": "\xff\xfe"}', **AUTH)
        assert response.status_code == 422, path
        assert "JSON" in problems(response)[0]["problem"]


# -- names ---------------------------------------------------------------------------------------


UNICODE_NAMES = ["X1_ÄctualPosition", "💥", "列", "X1_ActualPosition\u200b", "\u0000"]


@pytest.mark.parametrize("name", UNICODE_NAMES)
def test_unicode_column_names_are_reported_as_unknown(
    client: httpx.Client, row: dict[str, Any], name: str
) -> None:
    response = client.post("/predict", json={"rows": [{**row, name: 1.0}]})
    assert response.status_code == 422
    assert name in {p["column"] for p in problems(response)}


def test_a_lone_surrogate_in_a_column_name_is_refused_without_breaking_the_answer(
    client: httpx.Client, row: dict[str, Any]
) -> None:
    body = json.dumps({"rows": [{**row, "@@": 1.0}]}).replace("@@", "\\ud800")
    response = post_json(client, "/predict", body.encode())
    assert response.status_code == 422
    assert response.json()["problems"]


def test_a_column_given_twice_in_a_row_is_refused_by_name(
    client: httpx.Client, row: dict[str, Any]
) -> None:
    body = json.dumps({"rows": [row]})[: -len("}]}")] + ', "Z1_ActualPosition": 0.0}]}'
    response = post_json(client, "/predict", body.encode())
    assert response.status_code == 422
    (problem,) = problems(response)
    assert "duplicate key" in problem["problem"] and "Z1_ActualPosition" in problem["problem"]


def test_a_top_level_key_given_twice_is_refused(client: httpx.Client, row: dict[str, Any]) -> None:
    one = json.dumps([row])
    response = post_json(client, "/predict", f'{{"rows": {one}, "rows": {one}}}'.encode())
    assert response.status_code == 422
    assert "duplicate key" in problems(response)[0]["problem"]


def test_a_column_given_twice_in_an_explained_row_is_refused(
    client: httpx.Client, row: dict[str, Any]
) -> None:
    body = json.dumps({"method": "shap", "row": row})[: -len("}}")] + ', "Z1_ActualPosition": 0}}'
    response = post_json(client, "/explain", body.encode())
    assert response.status_code == 422
    assert "duplicate key" in problems(response)[0]["problem"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/retrain", '{"reason": "first", "reason": "second"}'),
        ("/feedback", '{"request_id": "a", "labels": ["worn"], "request_id": "b"}'),
    ],
)
def test_a_key_given_twice_is_refused_where_fastapi_parses_the_body(
    client: httpx.Client, path: str, body: str
) -> None:
    """Python's json keeps the last of a duplicated key; these routes must not guess either."""
    response = post_json(client, path, body.encode(), **AUTH)
    assert response.status_code == 422
    (problem,) = problems(response)
    assert "duplicate key" in problem["problem"]
    assert ("reason" if path == "/retrain" else "request_id") in problem["problem"]


def test_a_key_given_twice_still_needs_the_token_first(client: httpx.Client) -> None:
    response = post_json(client, "/retrain", b'{"reason": "a", "reason": "b"}')
    assert response.status_code == 401


# -- the standard protocols: Open Inference Protocol v2 and MLflow's /invocations ----------------


@pytest.fixture
def infer_path(registry: Registry) -> str:
    return f"/v2/models/{registry.model_name}/infer"


def v2_body(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One input per column, as MLServer's pandas codec sends them."""
    return {
        "parameters": {"content_type": "pd"},
        "inputs": v2_inputs(rows),
    }


def v2_error(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    error: str = body["error"]
    return error


def mlflow_error(response: httpx.Response) -> str:
    body = response.json()
    assert body["error_code"] in {"BAD_REQUEST", "RESOURCE_LIMIT_EXCEEDED"}, body
    message: str = body["message"]
    return message


def test_a_body_over_the_limit_is_refused_on_the_protocol_routes(
    client: httpx.Client, infer_path: str
) -> None:
    body = b'{"inputs": [' + b" " * BODY_LIMIT + b"]}"
    refused = post_json(client, infer_path, body)
    assert refused.status_code == 413
    assert f"limit of {BODY_LIMIT} bytes" in v2_error(refused)
    refused = post_json(client, "/invocations", body)
    assert refused.status_code == 413
    assert f"limit of {BODY_LIMIT} bytes" in mlflow_error(refused)


def test_a_batch_over_the_row_limit_is_refused_by_its_row_count_on_the_protocol_routes(
    client: httpx.Client, infer_path: str, row: dict[str, Any]
) -> None:
    body = v2_body([row])
    body["inputs"][0]["shape"] = [10_000_000]
    refused = post_json(client, infer_path, json.dumps(body).encode())
    assert refused.status_code == 413
    assert "10000000 rows" in v2_error(refused)
    many = {"dataframe_split": {"columns": list(row), "data": [[0]] * 100_001}}
    refused = post_json(client, "/invocations", json.dumps(many).encode())
    assert refused.status_code == 413
    assert "100001 rows" in mlflow_error(refused)


@pytest.mark.parametrize("spelling", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_named_by_row_and_column_on_the_protocol_routes(
    client: httpx.Client, infer_path: str, row: dict[str, Any], spelling: str
) -> None:
    rows = [row, {**row, "X1_ActualPosition": "@@"}]
    body = json.dumps(v2_body(rows)).replace('"@@"', spelling)
    refused = post_json(client, infer_path, body.encode())
    assert refused.status_code == 400, spelling
    assert "row 1, X1_ActualPosition:" in v2_error(refused)
    body = json.dumps({"dataframe_records": rows}).replace('"@@"', spelling)
    refused = post_json(client, "/invocations", body.encode())
    assert refused.status_code == 400, spelling
    assert "row 1, X1_ActualPosition:" in mlflow_error(refused)


def test_a_key_given_twice_is_refused_by_name_on_the_protocol_routes(
    client: httpx.Client, infer_path: str, row: dict[str, Any]
) -> None:
    body = json.dumps(v2_body([row]))
    twice = body.replace('"parameters":', '"id": "a", "id": "b", "parameters":', 1)
    refused = post_json(client, infer_path, twice.encode())
    assert refused.status_code == 400
    assert "id" in v2_error(refused) and "duplicate" in v2_error(refused).lower()
    records_body = json.dumps({"dataframe_records": [row]})
    twice = records_body.replace(
        '{"X1_ActualPosition"', '{"Z1_OutputVoltage": 0, "X1_ActualPosition"'
    )
    refused = post_json(client, "/invocations", twice.encode())
    assert refused.status_code == 400
    assert "Z1_OutputVoltage" in mlflow_error(refused)


def test_a_wrong_shape_is_refused_naming_the_input(
    client: httpx.Client, infer_path: str, row: dict[str, Any]
) -> None:
    body = v2_body([row, row])
    body["inputs"][3]["shape"] = [1, 2]
    refused = post_json(client, infer_path, json.dumps(body).encode())
    assert refused.status_code == 400
    assert "inputs[3] (X1_CommandPosition)" in v2_error(refused)
    assert "shape [N]" in v2_error(refused)
    body["inputs"][3]["shape"] = [-2]
    refused = post_json(client, infer_path, json.dumps(body).encode())
    assert refused.status_code == 400
    assert "inputs.3.shape" in v2_error(refused)


def test_a_shape_that_does_not_match_the_data_length_is_refused_naming_the_input(
    client: httpx.Client, infer_path: str, row: dict[str, Any]
) -> None:
    body = v2_body([row, row])
    body["inputs"][5]["data"] = body["inputs"][5]["data"][:1]
    refused = post_json(client, infer_path, json.dumps(body).encode())
    assert refused.status_code == 400
    assert "inputs[5] (X1_CommandAcceleration)" in v2_error(refused)
    assert "holds 2 values, but data has 1" in v2_error(refused)


def test_inputs_of_different_row_counts_are_refused_naming_the_input(
    client: httpx.Client, infer_path: str, row: dict[str, Any]
) -> None:
    body = v2_body([row, row])
    body["inputs"][2] = {**body["inputs"][2], "shape": [1], "data": [1.0]}
    refused = post_json(client, infer_path, json.dumps(body).encode())
    assert refused.status_code == 400
    assert "inputs[2] (X1_ActualAcceleration)" in v2_error(refused)


@pytest.mark.parametrize(
    ("column", "datatype"), [("X1_OutputPower", "BYTES"), ("X1_OutputPower", "INT64"),
                             ("Machining_Process", "FP64")]
)  # fmt: skip
def test_a_wrong_datatype_is_refused_naming_the_input(
    client: httpx.Client, infer_path: str, row: dict[str, Any], column: str, datatype: str
) -> None:
    body = v2_body([row])
    (tensor,) = [t for t in body["inputs"] if t["name"] == column]
    tensor["datatype"] = datatype
    refused = post_json(client, infer_path, json.dumps(body).encode())
    assert refused.status_code == 400
    assert f"({column}): datatype must be" in v2_error(refused)


def test_a_wrong_compact_shape_is_refused_naming_the_compact_input(
    client: httpx.Client, infer_path: str, row: dict[str, Any]
) -> None:
    numbers = [v for v in row.values() if not isinstance(v, str)]
    body = {
        "inputs": [
            {"name": "numeric", "shape": [1, len(numbers) - 1], "datatype": "FP64",
             "data": numbers[:-1]},
            {"name": "Machining_Process", "shape": [1], "datatype": "BYTES",
             "data": [row["Machining_Process"]]},
        ]
    }  # fmt: skip
    refused = post_json(client, infer_path, json.dumps(body).encode())
    assert refused.status_code == 400
    assert "inputs[0] (numeric): must have shape [N, " in v2_error(refused)


def test_rows_of_the_wrong_length_in_dataframe_split_are_named_by_row(
    client: httpx.Client, row: dict[str, Any]
) -> None:
    body = {"dataframe_split": {"columns": list(row), "data": [list(row.values()), [1.0, 2.0]]}}
    refused = post_json(client, "/invocations", json.dumps(body).encode())
    assert refused.status_code == 400
    assert "row 1, *: has 2 values" in mlflow_error(refused)


def test_a_csv_body_that_is_not_a_table_is_refused_in_mlflows_shape(client: httpx.Client) -> None:
    refused = client.post(
        "/invocations", content=b'a,b\n"1,2\n', headers={"content-type": "text/csv"}
    )
    assert refused.status_code == 400
    assert "CSV" in mlflow_error(refused)
