"""Access control and exposure: the token is compared in constant time and never logged, the
services listen on loopback by default, no request names a file the server then opens (beyond
/retrain's data folder, held to the configured roots)."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from cncwear.core.settings import Settings
from cncwear_api.core.settings import ApiSettings
from tests.api.conftest import Registry, records

from .conftest import RunningServer, serve
from .fuzzing import app_schema, operations

REPO = Path(__file__).resolve().parents[2]
GENERATED_TOKEN_LENGTH = 43  # secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def server(registry: Registry) -> Iterator[RunningServer]:
    """A server with a generated token (the default), and Redis unreachable: /retrain answers 503
    after the token is checked."""
    with serve(registry.settings(redis_url="redis://127.0.0.1:1/0")) as running:
        running.wait_ready(registry.compiled_version)
        yield running


def token_of(running: RunningServer) -> str:
    return running.settings.token_path().read_text().strip()


def test_the_token_is_compared_in_constant_time(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = secrets.compare_digest

    def spy(given: Any, expected: Any) -> bool:
        compared.append((given, expected))
        return original(given, expected)

    monkeypatch.setattr(secrets, "compare_digest", spy)
    token = token_of(server)
    with server.client() as http:
        assert http.post("/model/refresh", headers={"Authorization": "Bearer x"}).status_code == 401
        wrong_length = "y" * (len(token) + 10)
        headers = {"Authorization": f"Bearer {wrong_length}"}
        assert http.post("/model/refresh", headers=headers).status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        assert http.post("/model/refresh", headers=headers).status_code == 200
    assert [given for given, _ in compared] == [b"x", wrong_length.encode(), token.encode()]
    assert {expected for _, expected in compared} == {token.encode()}


def test_the_token_never_appears_in_the_logs(
    server: RunningServer, real_rows: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = token_of(server)
    assert len(token) == GENERATED_TOKEN_LENGTH
    near_miss = token[:-1] + ("A" if token[-1] != "A" else "B")
    payload = {"rows": records(real_rows.head(2))}
    with server.client() as http:
        for given in (token, near_miss, f"{token} {token}", "Basic " + token):
            headers = {"Authorization": f"Bearer {given}", "X-Request-Id": "probe"}
            http.post("/retrain", json={"reason": "log probe"}, headers=headers)
            http.post("/model/refresh", headers=headers)
            http.post("/predict", json=payload, headers=headers)
            http.get(f"/jobs/{'0' * 32}", headers=headers)
            http.get("/metrics", headers=headers)
        http.post("/retrain", json={"reason": token}, headers={"Authorization": "Bearer no"})
    assert "/retrain" in caplog.text  # the requests were logged...
    assert token not in caplog.text  # ...without the token
    assert token[:16] not in caplog.text
    assert near_miss not in caplog.text


def test_a_generated_token_is_logged_by_where_it_is_kept_never_by_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, registry: Registry
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = registry.settings(token_file=tmp_path / "fresh-token")
    with serve(settings) as running:
        token = token_of(running)
    assert str(tmp_path / "fresh-token") in caplog.text
    assert token not in caplog.text


def test_the_api_redis_and_mlflow_ui_listen_on_loopback_by_default() -> None:
    assert ApiSettings(api_token="x").host == "127.0.0.1"
    assert "127.0.0.1" in Settings().redis_url
    run = (REPO / "scripts" / "run.sh").read_text()
    redis_lines = [line for line in run.splitlines() if re.match(r"\s*redis-server\b", line)]
    assert redis_lines and all("--bind 127.0.0.1" in line for line in redis_lines)
    mlflow_ui = [line for line in run.splitlines() if "mlflow ui" in line]
    assert mlflow_ui and all("--host 127.0.0.1" in line for line in mlflow_ui)
    assert "CNCWEAR_HOST:-127.0.0.1" in run


PATH_LIKE = re.compile(r"(path|dir|file|folder|uri|url|pickle|location|source)", re.IGNORECASE)
ALLOWED_PATH_FIELDS = {("POST /retrain", "data_dir")}
"""Request fields that name a file or folder, each checked against configured roots."""


def _fields(schema: dict[str, Any], components: dict[str, Any]) -> Iterator[str]:
    if "$ref" in schema:
        yield from _fields(components[schema["$ref"].rsplit("/", 1)[-1]], components)
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            yield from _fields(option, components)
    for name, sub in schema.get("properties", {}).items():
        yield name
        yield from _fields(sub, components)
    if isinstance(schema.get("items"), dict):
        yield from _fields(schema["items"], components)


def test_no_request_field_names_a_file_except_the_retrain_data_folder() -> None:
    """Every route, present and future: a field that looks like a path, a file or a URI must be
    one reviewed and held to the data roots (a pickle or a model chosen by the caller is never
    loaded; models come from the registry only, through skops with trusted types)."""
    schema = app_schema()
    components = schema.raw_schema.get("components", {}).get("schemas", {})
    found = set()
    for operation in operations(schema):
        raw = operation.definition.raw
        names = [p["name"] for p in raw.get("parameters", [])]
        for media in raw.get("requestBody", {}).get("content", {}).values():
            names += list(_fields(media.get("schema", {}), components))
        found |= {(operation.label, n) for n in names if PATH_LIKE.search(n)}
    assert found == ALLOWED_PATH_FIELDS


def test_no_module_of_the_api_unpickles() -> None:
    source = "\n".join(p.read_text() for p in (REPO / "services" / "api").rglob("*.py"))
    for forbidden in ("import pickle", "cloudpickle", "joblib.load", "pickle.load", "dill"):
        assert forbidden not in source


@pytest.mark.parametrize(
    "data_dir",
    ["/etc", "../../../../etc", "/tmp", "~", "\x00", "a" * 5000, "file:///etc", "//etc/passwd"],
)
def test_retrain_refuses_data_folders_outside_the_roots_by_field_name(
    server: RunningServer, data_dir: str
) -> None:
    headers = {"Authorization": f"Bearer {token_of(server)}"}
    with server.client() as http:
        response = http.post("/retrain", json={"data_dir": data_dir}, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["problems"][0]["column"] == "data_dir"


def test_a_symlink_inside_a_data_root_pointing_outside_is_refused(server: RunningServer) -> None:
    root = server.settings.home / "data"
    root.mkdir(parents=True, exist_ok=True)
    link = root / "escape"
    if not link.is_symlink():
        link.symlink_to("/etc")
    headers = {"Authorization": f"Bearer {token_of(server)}"}
    with httpx.Client(base_url=server.url) as http:
        response = http.post("/retrain", json={"data_dir": str(link)}, headers=headers)
    assert response.status_code == 422
    assert response.json()["problems"][0]["column"] == "data_dir"
