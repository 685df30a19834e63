"""One log line per request: route, status, latency and model version; text or JSON."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from cncwear_api.core.log import ACCESS_LOGGER, JsonFormatter

from .conftest import Registry, RunningServer, records, wait_until


def test_each_request_is_logged_once_with_route_status_latency_and_model_version(
    server: RunningServer,
    real_rows: pd.DataFrame,
    registry: Registry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER), server.client() as client:
        ok = client.post("/predict", json={"rows": records(real_rows.head(2))})
        bad = client.post("/predict", json={"rows": [{"X1_ActualPosition": "SECRET-7"}]})

        def access_lines() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.name == ACCESS_LOGGER]

        # A request is logged when its response has been sent, by the server's thread.
        wait_until(lambda: len(access_lines()) >= 2, "the access log lines")
    lines = access_lines()
    assert len(lines) == 2
    first, second = lines
    assert (first.route, first.status, first.model_version) == (
        "/predict",
        200,
        registry.compiled_version,
    )  # type: ignore[attr-defined]
    assert first.request_id == ok.headers["x-request-id"]  # type: ignore[attr-defined]
    assert first.latency_ms > 0  # type: ignore[attr-defined]
    assert (second.route, second.status) == ("/predict", 422)  # type: ignore[attr-defined]
    assert second.request_id == bad.headers["x-request-id"]  # type: ignore[attr-defined]
    assert "SECRET-7" not in caplog.text


def test_json_format_writes_one_object_per_line_with_the_request_fields() -> None:
    record = logging.LogRecord(
        ACCESS_LOGGER, logging.INFO, __file__, 1, "POST /predict 200", (), None
    )
    record.route, record.status, record.latency_ms, record.model_version = "/predict", 200, 1.5, "3"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "POST /predict 200"
    assert (parsed["route"], parsed["status"], parsed["latency_ms"], parsed["model_version"]) == (
        "/predict",
        200,
        1.5,
        "3",
    )
    assert parsed["level"] == "INFO" and parsed["logger"] == ACCESS_LOGGER
