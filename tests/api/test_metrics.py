"""GET /metrics: Prometheus exposition, parsed with prometheus_client's own parser."""

from __future__ import annotations

import pandas as pd
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from .conftest import Registry, RunningServer, records, wait_until


def scrape(server: RunningServer) -> dict[str, list[Sample]]:
    with server.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    return sum(found)


def test_metrics_count_requests_predictions_and_their_distribution(
    server: RunningServer, real_rows: pd.DataFrame, registry: Registry
) -> None:
    before = scrape(server)
    with server.client() as client:
        body = client.post("/predict", json={"rows": records(real_rows)}).json()
        assert client.post("/predict", json={"rows": []}).status_code == 422
    after: dict[str, list[Sample]] = {}

    def both_counted() -> bool:  # requests are counted once their response is sent
        nonlocal after
        after = scrape(server)
        samples = after.get("cncwear_http_requests", [])
        return value(samples, "cncwear_http_requests_total", route="/predict") >= 2 + sum(
            s.value
            for s in before.get("cncwear_http_requests", [])
            if s.name == "cncwear_http_requests_total" and s.labels.get("route") == "/predict"
        )

    wait_until(both_counted, "both requests to be counted")
    version = registry.compiled_version
    worn = sum(p["label"] == "worn" for p in body["predictions"])

    def grew(family: str, name: str, **labels: str) -> float:
        old = value(before[family], name, **labels) if family in before else 0.0
        return value(after[family], name, **labels) - old

    requests = "cncwear_http_requests"
    assert grew(requests, f"{requests}_total", route="/predict", status_class="2xx") == 1
    assert grew(requests, f"{requests}_total", route="/predict", status_class="4xx") == 1
    duration = "cncwear_http_request_duration_seconds"
    assert grew(duration, f"{duration}_count", route="/predict", status_class="2xx") == 1
    assert (
        grew(duration, f"{duration}_bucket", route="/predict", status_class="2xx", le="0.01") >= 0
    )
    predictions = "cncwear_predictions"
    assert grew(predictions, f"{predictions}_total", version=version, label="worn") == worn
    assert (
        grew(predictions, f"{predictions}_total", version=version, label="unworn")
        == len(real_rows) - worn
    )
    probability = "cncwear_prediction_probability_worn"
    assert grew(probability, f"{probability}_count", version=version) == len(real_rows)
    assert grew(probability, f"{probability}_bucket", version=version, le="+Inf") == len(real_rows)
    at_most_half = sum(p["probability_worn"] <= 0.5 for p in body["predictions"])
    assert grew(probability, f"{probability}_bucket", version=version, le="0.5") == at_most_half
    rows = "cncwear_prediction_batch_rows"
    assert grew(rows, f"{rows}_count") == 1
    assert grew(rows, f"{rows}_sum") == len(real_rows)
    inference = "cncwear_inference_duration_seconds"
    assert grew(inference, f"{inference}_count", runtime="onnxruntime") == 1


def test_metrics_show_the_model_served_and_its_loads(
    server: RunningServer, registry: Registry
) -> None:
    metrics = scrape(server)
    info = [s for s in metrics["cncwear_model_info"] if s.value == 1]
    assert [(s.labels["name"], s.labels["version"], s.labels["runtime"]) for s in info] == [
        (registry.model_name, registry.compiled_version, "onnxruntime")
    ]
    assert value(metrics["cncwear_model_loads"], "cncwear_model_loads_total") == 1
    assert value(metrics["cncwear_model_load_failures"], "cncwear_model_load_failures_total") == 0
    assert value(metrics["cncwear_model_ready"], "cncwear_model_ready") == 1


def test_probes_and_scrapes_are_left_out_of_the_http_metrics(server: RunningServer) -> None:
    with server.client() as client:
        for path in ("/health", "/ready", "/metrics"):
            client.get(path)
    routes = {s.labels.get("route") for s in scrape(server).get("cncwear_http_requests", [])}
    assert not routes & {"/health", "/ready", "/metrics"}


def test_unknown_paths_share_one_label(server: RunningServer) -> None:
    with server.client() as client:
        for path in ("/a", "/b/c", "/predict/x"):
            assert client.get(path).status_code == 404
    routes = {s.labels.get("route") for s in scrape(server)["cncwear_http_requests"]}
    assert "unmatched" in routes
    assert not routes & {"/a", "/b/c", "/predict/x"}
