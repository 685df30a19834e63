"""deploy/prometheus and deploy/grafana: checked by promtool (Debian's prometheus package) and
against the metrics the services really define."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry

from cncwear.core.settings import Settings
from cncwear.data.runs.store import RunStore
from cncwear_api.core.metrics import ApiMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail(
            "promtool is missing: install Debian's prometheus (scripts/install-test-tools.sh)"
        )
    return subprocess.run(
        [tool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_scrape_config_is_valid_and_scrapes_the_api_and_the_workers() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert {"cncwear-api", "cncwear-trainer", "cncwear-bridge"} <= jobs


def test_the_alert_rules_are_valid_and_cover_what_operators_must_know() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    names = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {
        "CncwearDriftShareHigh",
        "CncwearLiveAccuracyDropped",
        "CncwearNoChampion",
        "CncwearHighErrorRate",
        "CncwearPredictLatencyHigh",
        "CncwearTrainerFailures",
    } <= names


def test_the_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "tests.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def known_metric_names() -> set[str]:
    """Every series name the API, the worker and the bridge define (with histogram and counter
    suffixes)."""
    from cncwear_bridge import metrics as bridge_metrics  # registers in the default registry
    from cncwear_trainer import metrics as worker_metrics

    assert worker_metrics.RETRAINS is not None
    assert bridge_metrics.PENDING is not None
    names: set[str] = set()
    api = ApiMetrics(CollectorRegistry())
    # The runs' store is read at scrape time: a real (empty) one, so its series are exported.
    api.run_store.source = RunStore(Settings(home=Path(tempfile.mkdtemp()))).stats
    for registry in (api.registry, REGISTRY):
        for family in registry.collect():
            names.add(family.name)
            names.update(
                family.name + suffix
                for suffix in ("_total", "_bucket", "_sum", "_count", "_created")
            )
    return names


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((GRAFANA / "dashboards" / "cncwear.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_dashboard_queries_only_metrics_the_services_export() -> None:
    known = known_metric_names()
    used = {
        name
        for _, expr in dashboard_queries()
        for name in re.findall(r"\bcncwear_[a-z0-9_]+", expr)
    }
    assert used, "the dashboard queries cncwear's metrics"
    assert used <= known, f"unknown metrics in the dashboard: {sorted(used - known)}"
    alerts = (PROMETHEUS / "alerts.yml").read_text()
    in_alerts = set(re.findall(r"\bcncwear_[a-z0-9_]+", alerts))
    assert in_alerts <= known, f"unknown metrics in the alerts: {sorted(in_alerts - known)}"


def test_the_dashboard_shows_what_the_issue_lists_from_the_provisioned_datasource() -> None:
    titles = {title for title, _ in dashboard_queries()}
    for wanted in (
        "Request rate",
        "Latency quantiles of /predict",
        "Error rate",
        "Predictions per class",
        "Predicted wear probability",
        "Drift per feature (PSI)",
        "Live accuracy",
        "Retrains",
        "Retrain durations",
        "Model version over time",
    ):
        assert wanted in titles
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    dashboard = json.loads((GRAFANA / "dashboards" / "cncwear.json").read_text())
    uids = {
        target["datasource"]["uid"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    assert uids == {datasource["uid"]}
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "cncwear.yml").read_text()
    )["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
