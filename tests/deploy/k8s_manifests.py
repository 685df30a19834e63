"""deploy/k8s rendered as kubectl would apply it, and the lookups the Kubernetes tests share.

Rendering needs ``kubectl`` (its built-in kustomize); a machine without it fails the tests that
render, naming how to install it (scripts/install-test-tools.sh)."""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("single-node", "production")
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}

Object = dict[str, Any]


@functools.cache
def _render(folder: str) -> tuple[Object, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl is missing: scripts/install-test-tools.sh says how to install it "
            "(its built-in kustomize renders deploy/k8s)"
        )
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / folder)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"kubectl kustomize {folder}: {result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(overlay: str) -> list[Object]:
    """The objects of an overlay (a fresh copy: tests may break them)."""
    return copy.deepcopy(list(_render(f"overlays/{overlay}")))


def find(objects: list[Object], kind: str, name: str) -> Object:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_spec(workload: Object) -> Object:
    spec: Object = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template: Object = spec["template"]["spec"]
    return template


def workloads(objects: list[Object]) -> Iterator[Object]:
    return (o for o in objects if o["kind"] in WORKLOAD_KINDS)


def containers(workload: Object) -> list[Object]:
    spec = pod_spec(workload)
    found: list[Object] = [*spec.get("initContainers", []), *spec["containers"]]
    return found


def config_maps(objects: list[Object]) -> dict[str, dict[str, str]]:
    """ConfigMaps by the name the pods use (kustomize's hash suffix kept, as it rewrites refs)."""
    return {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}


def environment(objects: list[Object], container: Object) -> dict[str, str | None]:
    """The variables a container gets: its envFrom ConfigMaps' keys, then its env (which wins).
    Values from Secrets are None (unknown here)."""
    maps = config_maps(objects)
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"{container['name']}: envFrom only from ConfigMaps"
        env.update(maps[source["configMapRef"]["name"]])
    for variable in container.get("env", []):
        env[variable["name"]] = variable.get("value") if "valueFrom" not in variable else None
    return env


def port_number(container: Object, port: int | str) -> int:
    """A port given by number or by the container port's name."""
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert len(numbers) == 1, f"{container['name']} has no port named {port!r}"
    number: int = numbers[0]
    return number


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())
