"""The MLflow registry unreachable when the API starts: the API stays alive, says it is not ready,
answers /predict with 503, counts the failed reads, and becomes ready by itself once a real MLflow
tracking server answers on that address."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Registry, records
from tests.helpers import free_port

from .conftest import TOKEN, RunningServer, serve, wait_for

MLFLOW = Path(sys.executable).parent / "mlflow"


def registry_read_failures(running: RunningServer) -> float:
    with running.client() as http:
        families = text_string_to_metric_families(http.get("/metrics").text)
        return next(
            sample.value
            for family in families
            if family.name == "cncwear_model_load_failures"
            for sample in family.samples
            if sample.name.endswith("_total")
        )


def test_the_api_becomes_ready_by_itself_when_the_registry_comes_up(
    registry: Registry, real_rows: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow's client retries a refused connection for minutes by default; one retry keeps each
    # failed poll short (an operator would set the same on a server expected to start later).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    port = free_port()
    settings = registry.settings(
        mlflow_tracking_uri=f"http://127.0.0.1:{port}", poll_interval_seconds=1.0, api_token=TOKEN
    )
    assert settings.tracking_uri().startswith("http://")
    payload = {"rows": records(real_rows.head(3))}
    with serve(settings) as running, running.client() as http:
        wait_for(lambda: registry_read_failures(running) >= 2, timeout=120, what="failed reads")
        assert http.get("/health").status_code == 200
        assert http.get("/ready").status_code == 503
        refused = http.post("/predict", json=payload)
        assert refused.status_code == 503
        assert "no champion" in refused.json()["detail"]

        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CNCWEAR_"))}
        log = (tmp_path / "mlflow-server.log").open("wb")
        server = subprocess.Popen(
            [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{registry.home.resolve() / 'mlflow.db'}",
             "--workers", "1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            running.wait_ready(registry.compiled_version)
            served = http.post("/predict", json=payload)
            assert served.status_code == 200
            assert served.json()["model"]["version"] == registry.compiled_version
        finally:
            os.killpg(server.pid, signal.SIGTERM)  # the server and its workers
            server.wait(timeout=60)
            log.close()
