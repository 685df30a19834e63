"""The bearer token: required by mutating endpoints, optional on reads, generated when unset."""

from __future__ import annotations

import logging
import stat

import pandas as pd
import pytest
from pydantic import SecretStr

from .conftest import Registry, records, serve


def test_a_token_is_generated_at_first_start_readable_only_by_its_owner(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path_factory.mktemp("token") / "api-token"
    with caplog.at_level(logging.INFO), serve(registry.settings(token_file=token_file)):
        pass
    token = token_file.read_text().strip()
    assert len(token) >= 32
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert str(token_file) in caplog.text
    assert token not in caplog.text


def test_the_token_is_kept_across_restarts(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    token_file = tmp_path_factory.mktemp("token") / "api-token"
    with serve(registry.settings(token_file=token_file)):
        first = token_file.read_text()
    with serve(registry.settings(token_file=token_file)) as running:
        assert token_file.read_text() == first
        with running.client() as client:
            headers = {"Authorization": f"Bearer {first.strip()}"}
            assert client.post("/model/refresh", headers=headers).status_code == 200


def test_mutating_endpoints_need_the_token(registry: Registry) -> None:
    settings = registry.settings(api_token=SecretStr("s3cret-token-of-the-shop"))
    with serve(settings) as running, running.client() as client:
        running.wait_ready()
        missing = client.post("/model/refresh")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/model/refresh", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert "s3cret" not in wrong.text
        right = client.post(
            "/model/refresh", headers={"Authorization": "Bearer s3cret-token-of-the-shop"}
        )
        assert right.status_code == 200


def test_reads_are_open_by_default_and_can_be_closed(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    body = {"rows": records(real_rows.head(2))}
    headers = {"Authorization": "Bearer reader-token-1234"}
    settings = registry.settings(api_token=SecretStr("reader-token-1234"), protect_reads=True)
    with serve(settings) as running, running.client() as client:
        running.wait_ready()
        for method, path in (("POST", "/predict"), ("GET", "/model"), ("GET", "/metrics")):
            assert client.request(method, path, json=body).status_code == 401
            assert client.request(method, path, json=body, headers=headers).status_code == 200
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 200
