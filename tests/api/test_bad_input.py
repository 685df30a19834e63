"""Bad input: 422 (or 413) naming each field, row and problem, never the values, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from cncwear_api.schemas.errors import ProblemsResponse

from .conftest import RunningServer, records

SECRET = "SECRET-VALUE-4711"
"""A value that must never come back in an answer."""


def problems_of(response: httpx.Response) -> set[tuple[int | None, str, str]]:
    assert response.status_code == 422, response.text
    assert SECRET not in response.text
    body = ProblemsResponse.model_validate(response.json())
    assert body.total >= len(body.problems) > 0
    return {(p.row, p.column, p.problem) for p in body.problems}


@pytest.fixture
def rows(real_rows: pd.DataFrame) -> list[dict[str, Any]]:
    return records(real_rows.head(3))


@pytest.fixture
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_text_in_a_numeric_column_is_named_by_row_and_column(
    client: httpx.Client, rows: list[dict[str, Any]]
) -> None:
    rows[1]["X1_OutputCurrent"] = SECRET
    assert problems_of(client.post("/predict", json={"rows": rows})) == {
        (1, "X1_OutputCurrent", "not a number")
    }


def test_null_nan_and_infinity_are_refused(
    client: httpx.Client, rows: list[dict[str, Any]]
) -> None:
    rows[0]["Z1_ActualPosition"] = float("nan")
    rows[1]["X1_DCBusVoltage"] = None
    rows[2]["Y1_OutputCurrent"] = float("inf")
    body = json.dumps({"rows": rows}).encode()  # NaN and Infinity literals, as some clients send
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert problems_of(response) == {
        (0, "Z1_ActualPosition", "NaN or empty"),
        (1, "X1_DCBusVoltage", "NaN or empty"),
        (2, "Y1_OutputCurrent", "infinite"),
    }


def test_values_of_the_wrong_json_type_are_named(
    client: httpx.Client, rows: list[dict[str, Any]]
) -> None:
    rows[0]["X1_ActualPosition"] = True
    rows[2]["Y1_ActualPosition"] = [1.0, 2.0]
    rows[1]["Machining_Process"] = {"step": SECRET}
    assert problems_of(client.post("/predict", json={"rows": rows})) == {
        (0, "X1_ActualPosition", "must be a number, text or null"),
        (2, "Y1_ActualPosition", "must be a number, text or null"),
        (1, "Machining_Process", "must be a number, text or null"),
    }


def test_a_machining_step_that_is_not_text_is_refused(
    client: httpx.Client, rows: list[dict[str, Any]]
) -> None:
    rows[0]["Machining_Process"] = 3.0
    rows[2]["Machining_Process"] = "  "
    found = problems_of(client.post("/predict", json={"rows": rows}))
    assert {(row, column) for row, column, _ in found} == {
        (0, "Machining_Process"),
        (2, "Machining_Process"),
    }


def test_readings_beyond_any_sensor_range_are_refused(
    client: httpx.Client, rows: list[dict[str, Any]]
) -> None:
    rows[1]["S1_CommandPosition"] = 1e300
    assert problems_of(client.post("/predict", json={"rows": rows})) == {
        (1, "S1_CommandPosition", "out of range (magnitude above 1e+30)")
    }


def test_unknown_extra_columns_are_reported_not_dropped(
    client: httpx.Client, rows: list[dict[str, Any]]
) -> None:
    for row in rows:
        row["spindle_temperature"] = 41.5
    assert problems_of(client.post("/predict", json={"rows": rows})) == {
        (None, "spindle_temperature", "unexpected column")
    }


def test_a_column_missing_everywhere_is_reported_once(
    client: httpx.Client, rows: list[dict[str, Any]]
) -> None:
    for row in rows:
        del row["Z1_OutputCurrent"]
    assert problems_of(client.post("/predict", json={"rows": rows})) == {
        (None, "Z1_OutputCurrent", "missing column")
    }


def test_every_problem_of_a_batch_is_listed_at_once(
    client: httpx.Client, rows: list[dict[str, Any]]
) -> None:
    del rows[2]["Y1_OutputPower"]
    rows[1]["X1_ActualPosition"] = SECRET
    rows[0]["cutting_fluid"] = "on"
    assert problems_of(client.post("/predict", json={"rows": rows})) == {
        (2, "Y1_OutputPower", "missing in this row"),
        (1, "X1_ActualPosition", "not a number"),
        (None, "cutting_fluid", "unexpected column"),
    }


def test_columnar_rows_of_the_wrong_length_are_named(
    client: httpx.Client, real_rows: pd.DataFrame
) -> None:
    data = real_rows.head(3).to_numpy().tolist()
    data[1] = data[1][:-2]
    found = problems_of(
        client.post("/predict", json={"columns": list(real_rows.columns), "data": data})
    )
    assert found == {
        (1, "*", f"has {len(real_rows.columns) - 2} values for {len(real_rows.columns)} columns")
    }


def test_columnar_bad_cells_are_named_by_column(
    client: httpx.Client, real_rows: pd.DataFrame
) -> None:
    data = real_rows.head(2).to_numpy().tolist()
    data[1][3] = False
    found = problems_of(
        client.post("/predict", json={"columns": list(real_rows.columns), "data": data})
    )
    assert found == {(1, real_rows.columns[3], "must be a number, text or null")}


def test_duplicated_columns_are_refused(client: httpx.Client, real_rows: pd.DataFrame) -> None:
    columns = [*real_rows.columns, "X1_OutputPower"]
    data = [[*row, 1.0] for row in real_rows.head(2).to_numpy().tolist()]
    found = problems_of(client.post("/predict", json={"columns": columns, "data": data}))
    assert (None, "X1_OutputPower", "duplicated column") in found


def test_an_empty_batch_is_refused(client: httpx.Client) -> None:
    assert problems_of(client.post("/predict", json={"rows": []})) == {(None, "*", "no rows")}


@pytest.mark.parametrize(
    ("body", "expected_column"),
    [
        ({}, "*"),
        ({"rows": [], "columns": [], "data": []}, "*"),
        ({"columns": ["a"]}, "*"),
        ({"rows": [], "machine": SECRET}, "machine"),
        ({"rows": {"a": 1}}, "rows"),
        ({"columns": "X1", "data": []}, "columns"),
    ],
)
def test_bodies_of_the_wrong_shape_are_refused(
    client: httpx.Client, body: dict[str, Any], expected_column: str
) -> None:
    found = problems_of(client.post("/predict", json=body))
    assert {column for _, column, _ in found} == {expected_column}


@pytest.mark.parametrize("body", [b"", b"{", b"rows=1", b"[1, 2]", b"\xff\xfe", b'{"rows": [1,'])
def test_a_body_that_is_not_a_json_object_is_refused(client: httpx.Client, body: bytes) -> None:
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["problems"]


def test_a_body_over_the_size_limit_gets_413(client: httpx.Client, server: RunningServer) -> None:
    too_big = b'{"rows": [' + b" " * server.settings.max_body_bytes + b"]}"
    response = client.post(
        "/predict", content=too_big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


def test_a_batch_over_the_row_limit_gets_413(
    client: httpx.Client, server: RunningServer, real_rows: pd.DataFrame
) -> None:
    limit = server.settings.max_batch_rows
    data = [real_rows.iloc[0].tolist()] * (limit + 1)
    response = client.post("/predict", json={"columns": list(real_rows.columns), "data": data})
    assert response.status_code == 413
    assert str(limit) in response.json()["detail"]


def test_a_streamed_body_over_the_size_limit_gets_413(
    client: httpx.Client, server: RunningServer
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"rows": ['
        for _ in range(server.settings.max_body_bytes // 65536 + 2):
            yield b" " * 65536
        yield b"]}"

    response = client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_a_batch_full_of_bad_cells_lists_the_first_problems_and_counts_them_all(
    client: httpx.Client, server: RunningServer, real_rows: pd.DataFrame
) -> None:
    rows = server.settings.max_batch_rows
    data = [[True] * len(real_rows.columns)] * rows
    response = client.post("/predict", json={"columns": list(real_rows.columns), "data": data})
    assert response.status_code == 422
    body = ProblemsResponse.model_validate(response.json())
    assert body.total == rows * len(real_rows.columns)
    assert len(body.problems) == 1000


def test_rows_that_are_not_objects_are_named(
    client: httpx.Client, rows: list[dict[str, Any]]
) -> None:
    found = problems_of(client.post("/predict", json={"rows": [rows[0], 7, "x"]}))
    assert found == {
        (1, "*", "must be an object of column: value"),
        (2, "*", "must be an object of column: value"),
    }


def test_rows_far_wider_than_the_model_are_refused_before_any_work(
    client: httpx.Client, rows: list[dict[str, Any]]
) -> None:
    rows[1].update({f"extra_{i}": 1.0 for i in range(200)})
    found = problems_of(client.post("/predict", json={"rows": rows}))
    assert {(row, column) for row, column, _ in found} == {(1, "*")}
    columns = [f"c{i}" for i in range(500)]
    found = problems_of(client.post("/predict", json={"columns": columns, "data": []}))
    assert {column for _, column, _ in found} == {"columns"}
