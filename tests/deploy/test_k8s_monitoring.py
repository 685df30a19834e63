"""The Kubernetes monitoring objects have one source each: the PrometheusRule holds the groups of
deploy/prometheus/alerts.yml and the dashboard ConfigMap the JSON of deploy/grafana/dashboards,
rendered by scripts/render-k8s-monitoring.py; the ServiceMonitors give the targets the job names
of deploy/prometheus/prometheus.yml, which the alert rules select on.

Not checked here (no cluster): that a Prometheus Operator loads them and Grafana's sidecar finds
the dashboard.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.k8s_manifests import OVERLAYS, ROOT, find, render

SCRIPT = ROOT / "scripts" / "render-k8s-monitoring.py"
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "render-k8s-monitoring.py"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_rendered_rule_and_dashboard_files_match_their_sources() -> None:
    result = check(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_edited_alert_without_a_new_render_is_caught(tmp_path: Path) -> None:
    """A copy of the files involved, with a changed alert threshold and nothing re-rendered."""
    for relative in (
        "scripts/render-k8s-monitoring.py",
        "deploy/prometheus/alerts.yml",
        *(str(p.relative_to(ROOT)) for p in DASHBOARDS.glob("*.json")),
        "deploy/k8s/components/monitoring/prometheus-rule.yaml",
        "deploy/k8s/components/monitoring/grafana-dashboards.yaml",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text((ROOT / relative).read_text())
    alerts = tmp_path / "deploy" / "prometheus" / "alerts.yml"
    alerts.write_text(
        alerts.read_text().replace("cncwear_drift_detected == 1", "cncwear_drift_detected == 0")
    )
    result = check(tmp_path)
    assert result.returncode == 1
    assert "prometheus-rule.yaml differs from its source" in result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_prometheus_rule_holds_the_alert_rules_of_the_compose_stack(overlay: str) -> None:
    rule = find(render(overlay), "PrometheusRule", "cncwear")
    assert (
        rule["spec"]["groups"] == yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_dashboard_config_map_holds_the_dashboard_for_grafanas_sidecar(overlay: str) -> None:
    objects = render(overlay)
    for path in sorted(DASHBOARDS.glob("*.json")):
        config = find(objects, "ConfigMap", f"grafana-dashboard-{path.stem}")
        assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(config["data"][path.name]) == json.loads(path.read_text())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scraped_targets_carry_the_job_names_the_alerts_select_on(overlay: str) -> None:
    objects = render(overlay)
    jobs = {
        job["job_name"]
        for job in yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]
    }
    labelled = set()
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        for endpoint in monitor["spec"]["endpoints"]:
            (job,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
            labelled.add(job["replacement"])
    assert labelled == {"cncwear-api", "cncwear-trainer", "cncwear-bridge"} and labelled <= jobs
    selected = set(re.findall(r'job="([^"]+)"', (PROMETHEUS / "alerts.yml").read_text()))
    assert selected <= labelled
