"""A real Prometheus server (Debian's package), started on loopback with a generated config and a
temporary storage folder, scraping a running API: after traffic, its query API returns the request
and drift series, the project's alert rules load and evaluate, and every dashboard query runs."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from cncwear.core.schema import input_columns
from tests.deploy.conftest import Process, start
from tests.helpers import free_port

from .conftest import Registry, RunningServer, serve, wait_until

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture
def api(registry: Registry) -> Iterator[RunningServer]:
    settings = registry.settings(drift_min_rows=50, drift_check_interval_seconds=0.5)
    with serve(settings) as server:
        server.wait_ready(registry.compiled_version)
        yield server


@pytest.fixture
def prometheus(api: RunningServer, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping ``api`` every second, with deploy/prometheus/alerts.yml loaded."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "prometheus is missing: install Debian's prometheus (scripts/install-test-tools.sh)"
        )
    target = api.url.removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "prometheus" / "alerts.yml")],
        "scrape_configs": [{"job_name": "cncwear-api", "static_configs": [{"targets": [target]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    command = [
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    process = start(command, dict(os.environ), tmp_path / "prometheus.log", "prometheus")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(url, process), "Prometheus to start", timeout=60)
        yield url
    finally:
        process.stop()


def _ready(url: str, process: Process) -> bool:
    if not process.running():
        pytest.fail(f"Prometheus exited:\n{process.output()[-3000:]}")
    try:
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def query(prometheus: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = response.json()
    assert body["status"] == "success", (expr, body)
    return body


def series(prometheus: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = query(prometheus, expr)["data"]["result"]
    return result


def test_prometheus_scrapes_request_and_drift_series_from_a_running_api(
    api: RunningServer, prometheus: str, real_rows: pd.DataFrame
) -> None:
    columns = input_columns(use_identifying_columns=False)
    with api.client() as client:
        for start in range(0, 300, 30):
            chunk = real_rows.iloc[start : start + 30][columns]
            body = {"columns": columns, "data": chunk.to_numpy(dtype=object).tolist()}
            assert client.post("/predict", json=body).status_code == 200

    def scraped(expr: str) -> bool:
        return bool(series(prometheus, expr))

    requests = 'cncwear_http_requests_total{job="cncwear-api",route="/predict",status_class="2xx"}'
    wait_until(lambda: scraped(f"{requests} >= 10"), "the requests to be scraped", timeout=60)
    wait_until(lambda: scraped("cncwear_drift_share >= 0"), "the drift share", timeout=60)
    features = series(prometheus, "cncwear_drift_feature_psi")
    with api.client() as client:
        selected = client.get("/model").json()["selected_features"]
        watched = {f["name"] for f in client.get("/drift").json()["features"]}
    assert set(selected) <= watched  # the model's features, the raw readings and the tool path
    assert {s["metric"]["feature"] for s in features} == watched
    assert scraped('cncwear_drift_window_rows{job="cncwear-api"} == 300')
    assert scraped("cncwear_prediction_drift_psi >= 0")
    assert scraped('cncwear_model_ready{job="cncwear-api"} == 1')

    def rules_evaluated() -> bool:
        response = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()
        rules = [r for g in response["data"]["groups"] for r in g["rules"]]
        return bool(rules) and all(r["health"] == "ok" for r in rules)

    wait_until(rules_evaluated, "the alert rules to evaluate", timeout=60)
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "cncwear.json").read_text())
    grafana_ranges = {"$__rate_interval": "1m", "$__range": "1h"}  # what Grafana substitutes
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in grafana_ranges.items():
                expr = expr.replace(variable, value)
            query(prometheus, expr)
