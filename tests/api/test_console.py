"""The ``cncwear-api`` console script: a process configured by environment variables alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd

from tests.helpers import free_port

from .conftest import Registry, records, wait_until

CONSOLE_SCRIPT = Path(sys.executable).parent / "cncwear-api"
START_SECONDS = 300.0
"""The API imports MLflow and scikit-learn: on a busy machine a process takes a while to start."""


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def test_console_script_serves_503_until_a_champion_exists_then_serves_it(
    registry: Registry, real_rows: pd.DataFrame, tmp_path: Path
) -> None:
    name, (version,) = registry.new_model(registry.compiled_version)  # no champion yet
    port, token_file = free_port(), tmp_path / "api-token"
    env = {
        **os.environ,
        "CNCWEAR_HOME": str(registry.home),
        "CNCWEAR_MODEL_NAME": name,
        "CNCWEAR_PORT": str(port),
        "CNCWEAR_LOG_FORMAT": "json",
        "CNCWEAR_POLL_INTERVAL_SECONDS": "0.5",
        "CNCWEAR_TOKEN_FILE": str(token_file),
    }
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(CONSOLE_SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: answers(url) or process.poll() is not None, "the server", START_SECONDS)
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {process.communicate()[1][-3000:]}")
        with httpx.Client(base_url=url, timeout=30.0) as client:
            assert client.get("/ready").status_code == 503
            before = client.post("/predict", json={"rows": records(real_rows.head(2))})
            assert before.status_code == 503
            registry.store(name).client.set_registered_model_alias(name, "champion", version)
            wait_until(lambda: client.get("/ready").status_code == 200, "the champion to load")
            after = client.post("/predict", json={"rows": records(real_rows.head(2))})
            assert after.status_code == 200
            assert after.json()["model"]["version"] == version
    finally:
        process.terminate()
        stdout, _ = process.communicate(timeout=60)
    logs = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    access = [(e["route"], e["status"], e["model_version"]) for e in logs if "route" in e]
    assert ("/predict", 503, None) in access
    assert ("/predict", 200, version) in access
    token = token_file.read_text().strip()
    assert str(token_file) in stdout
    assert token not in stdout
