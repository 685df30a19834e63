"""The rules every pod of deploy/k8s keeps, checked on each rendered overlay (as tests: no
well-kept Kubernetes linter installs from the registries this project uses; kube-linter is not
served, and checkov's release that resolves with the lockfile is from 2023 and would downgrade
other packages):

- security: non-root, a read-only root filesystem, no privilege escalation, every capability
  dropped, a seccomp profile, no service-account token, no host namespaces;
- secrets (the API token, the database and S3 credentials, the Redis and broker URLs) only from
  Secrets, and no Secret object in the manifests;
- resource requests and limits on every container, probes on every long-running server, a
  liveness probe on the workers and the bridge;
- exactly one beat and one bridge (its broker session has one client id), the API spread and
  protected by a disruption budget and an autoscaler;
- network policies: nothing enters by default; Redis, MLflow and the stores only from cncwear's
  own pods; the API from the ingress controller's (and Prometheus's) namespace and the bridge
  only; the bridge's metrics from Prometheus only, and the bridge reaches only the API, the
  broker's ports and DNS.

Each group of rules is a function returning what breaks it, and a test breaks a manifest to show
it is caught.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.deploy.k8s_manifests import (
    OVERLAYS,
    Object,
    containers,
    find,
    pod_spec,
    render,
    workloads,
)

SECRET_VARIABLES = {
    "CNCWEAR_API_TOKEN",
    "CNCWEAR_REDIS_URL",
    "CNCWEAR_DATA_STORE_URL",
    "CNCWEAR_MQTT_URL",
    "CNCWEAR_MQTT_PASSWORD",
    "MLFLOW_BACKEND_STORE_URI",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "POSTGRES_PASSWORD",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
}
"""Variables that carry a credential (or a URL that may hold one): from a Secret, always."""
SERVERS = {"api", "mlflow", "redis", "postgres", "minio"}
"""Components that answer others: each needs liveness and readiness probes."""
LIVENESS_ONLY = {"trainer", "bridge"}
"""Components that serve no traffic to be ready for (only their metrics): a liveness probe."""
SINGLETONS = ("beat", "bridge")
"""Deployments that must never run twice: beat (duplicate triggers) and the bridge (one broker
session under one client id)."""
HOST_FIELDS = ("hostNetwork", "hostPID", "hostIPC")


def name_of(workload: Object) -> str:
    return f"{workload['kind']}/{workload['metadata']['name']}"


def security_problems(objects: list[Object]) -> list[str]:
    problems = []
    for workload in workloads(objects):
        pod = pod_spec(workload)
        where = name_of(workload)
        context = pod.get("securityContext", {})
        if context.get("runAsNonRoot") is not True or not context.get("runAsUser"):
            problems.append(f"{where}: the pod may run as root")
        if context.get("seccompProfile", {}).get("type") not in {"RuntimeDefault", "Localhost"}:
            problems.append(f"{where}: no seccomp profile")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service-account token it does not need")
        problems.extend(f"{where}: {field}" for field in HOST_FIELDS if pod.get(field))
        for container in containers(workload):
            at = f"{where} container {container['name']}"
            own = container.get("securityContext", {})
            if own.get("privileged"):
                problems.append(f"{at}: privileged")
            if own.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: may escalate privileges")
            if own.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: writable root filesystem")
            if own.get("capabilities", {}).get("drop") != ["ALL"] or own["capabilities"].get("add"):
                problems.append(f"{at}: keeps capabilities")
            if own.get("runAsUser") == 0 or own.get("runAsNonRoot") is False:
                problems.append(f"{at}: runs as root")
    return problems


def secret_problems(objects: list[Object]) -> list[str]:
    problems = [
        f"Secret/{o['metadata']['name']} in the manifests" for o in objects if o["kind"] == "Secret"
    ]
    for config in (o for o in objects if o["kind"] == "ConfigMap"):
        leaked = SECRET_VARIABLES & set(config.get("data", {}))
        problems.extend(f"ConfigMap/{config['metadata']['name']}: {v}" for v in sorted(leaked))
    for workload in workloads(objects):
        for container in containers(workload):
            for variable in container.get("env", []):
                if variable["name"] in SECRET_VARIABLES and "secretKeyRef" not in variable.get(
                    "valueFrom", {}
                ):
                    problems.append(f"{name_of(workload)}: {variable['name']} is not from a Secret")
    return problems


def resource_and_probe_problems(objects: list[Object]) -> list[str]:
    problems = []
    for workload in workloads(objects):
        component = workload["metadata"]["labels"].get("app.kubernetes.io/component")
        for container in containers(workload):
            at = f"{name_of(workload)} container {container['name']}"
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(kind, {}):
                        problems.append(f"{at}: no {resource} {kind[:-1]}")
            wanted = {"livenessProbe", "readinessProbe"} if component in SERVERS else set()
            if component in LIVENESS_ONLY:
                wanted = {"livenessProbe"}
            problems.extend(f"{at}: no {probe}" for probe in sorted(wanted - set(container)))
            if "image" in container and (
                ":" not in container["image"] or container["image"].endswith(":latest")
            ):
                problems.append(f"{at}: image {container['image']} is not pinned")
    return problems


def availability_problems(objects: list[Object]) -> list[str]:
    problems = []
    for name in SINGLETONS:
        single = find(objects, "Deployment", name)
        if (
            single["spec"].get("replicas") != 1
            or single["spec"].get("strategy", {}).get("type") != "Recreate"
        ):
            problems.append(f"{name}: not exactly one (replicas 1, strategy Recreate)")
    api = find(objects, "Deployment", "api")
    hpa = find(objects, "HorizontalPodAutoscaler", "api")
    if hpa["spec"]["minReplicas"] < 2:
        problems.append("api: fewer than 2 replicas")
    for autoscaled in ("api", "trainer"):  # an apply of a count would reset the autoscaler's
        if "replicas" in find(objects, "Deployment", autoscaled)["spec"]:
            problems.append(f"{autoscaled}: a replica count beside its autoscaler")
    metrics = [m["resource"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    if metrics != ["cpu"]:
        problems.append("api: the autoscaler does not scale on CPU")
    pdb = find(objects, "PodDisruptionBudget", "api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    if pdb["spec"]["selector"]["matchLabels"].items() - labels.items():
        problems.append("api: the disruption budget selects other pods")
    return problems


def peer_names(peers: list[Object] | None) -> set[str]:
    """The peers of a rule ("pod:<component>", "namespace:<name>"); no peers at all: "anyone"."""
    if peers is None:
        return {"anyone"}
    names = set()
    for peer in peers:
        if "namespaceSelector" in peer:
            labels = peer["namespaceSelector"].get("matchLabels", {})
            names.add(f"namespace:{labels.get('kubernetes.io/metadata.name', '*')}")
        elif "podSelector" in peer:
            (expression,) = peer["podSelector"]["matchExpressions"]
            assert expression["key"] == "app.kubernetes.io/component"
            names.update(f"pod:{value}" for value in expression["values"])
        else:
            names.add("anyone")
    return names


def allowed_sources(objects: list[Object], component: str) -> set[str]:
    """Who the network policies let in to a component (peer_names's names)."""
    sources = set()
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if selector and selector.get("app.kubernetes.io/component") != component:
            continue
        for rule in policy["spec"].get("ingress", []):
            sources.update(peer_names(rule.get("from")))
    return sources


def allowed_destinations(objects: list[Object], component: str) -> set[str] | None:
    """Where the network policies let a component connect ("<peer>:<port>"); None when no
    egress policy selects it (its egress is open)."""
    destinations: set[str] | None = None
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if "Egress" not in policy["spec"].get("policyTypes", []) or (
            selector and selector.get("app.kubernetes.io/component") != component
        ):
            continue
        destinations = destinations or set()
        for rule in policy["spec"].get("egress", []):
            ports = {str(p["port"]) for p in rule.get("ports", [])} or {"*"}
            peers = peer_names(rule.get("to"))
            destinations.update(f"{peer}:{port}" for peer in peers for port in ports)
    return destinations


def network_problems(objects: list[Object]) -> list[str]:
    problems = []
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")]
    if not deny:
        problems.append("no default deny: pods without a policy take anything")
    workers = {"pod:api", "pod:trainer", "pod:beat"}
    expected = {
        "api": {"namespace:ingress-nginx", "namespace:monitoring", "pod:bridge"},
        "bridge": {"namespace:monitoring"},
        "mlflow": workers,
        "trainer": {"namespace:monitoring"},
        "redis": workers | {"namespace:keda"},
        "postgres": workers | {"pod:mlflow"},
        "minio": {"pod:mlflow", "pod:minio-init"},
    }
    present = {w["metadata"]["labels"]["app.kubernetes.io/component"] for w in workloads(objects)}
    for component, sources in expected.items():
        if component in present and allowed_sources(objects, component) != sources:
            problems.append(
                f"{component}: let in from {sorted(allowed_sources(objects, component))}"
            )
    reaches = {
        "bridge": {"pod:api:http", "anyone:1883", "anyone:8883", "namespace:kube-system:53"},
    }
    for component, destinations in reaches.items():
        allowed = allowed_destinations(objects, component)
        if component in present and allowed != destinations:
            where = "anything" if allowed is None else sorted(allowed)
            problems.append(f"{component}: may reach {where}")
    return problems


CHECKS: dict[str, Callable[[list[Object]], list[str]]] = {
    "security": security_problems,
    "secrets": secret_problems,
    "resources and probes": resource_and_probe_problems,
    "availability": availability_problems,
    "network": network_problems,
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_unprivileged_on_a_read_only_root_with_a_seccomp_profile(
    overlay: str,
) -> None:
    objects = render(overlay)
    assert len(list(workloads(objects))) >= 4
    assert security_problems(objects) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_credentials_come_only_from_secrets_the_manifests_do_not_hold(overlay: str) -> None:
    assert secret_problems(render(overlay)) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_limits_a_pinned_image_and_its_probes(overlay: str) -> None:
    assert resource_and_probe_problems(render(overlay)) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_beat_and_an_api_that_survives_disruption_and_scales_on_cpu(overlay: str) -> None:
    assert availability_problems(render(overlay)) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_let_in_only_who_needs_each_part(overlay: str) -> None:
    assert network_problems(render(overlay)) == []


def test_a_privileged_root_pod_with_a_literal_password_and_no_limits_is_caught() -> None:
    objects = render("single-node")
    trainer = find(objects, "Deployment", "trainer")
    pod = pod_spec(trainer)
    pod["securityContext"].pop("runAsNonRoot")
    pod["securityContext"].pop("seccompProfile")
    (container,) = containers(trainer)
    container["securityContext"] = {"privileged": True}
    del container["resources"]["limits"]
    del container["livenessProbe"]
    redis_url = next(v for v in container["env"] if v["name"] == "CNCWEAR_REDIS_URL")
    redis_url.pop("valueFrom")
    redis_url["value"] = "redis://:hunter2@redis:6379/0"
    find(objects, "Deployment", "beat")["spec"]["replicas"] = 2
    find(objects, "Deployment", "api")["spec"]["replicas"] = 2
    find(objects, "Deployment", "bridge")["spec"]["strategy"] = {"type": "RollingUpdate"}
    dropped = {"redis-from-cncwear", "bridge-egress"}
    objects = [o for o in objects if o["metadata"]["name"] not in dropped]

    found = {name: check(objects) for name, check in CHECKS.items()}
    at = "Deployment/trainer container trainer"
    assert found["security"] == [
        "Deployment/trainer: the pod may run as root",
        "Deployment/trainer: no seccomp profile",
        f"{at}: privileged",
        f"{at}: may escalate privileges",
        f"{at}: writable root filesystem",
        f"{at}: keeps capabilities",
    ]
    assert found["secrets"] == ["Deployment/trainer: CNCWEAR_REDIS_URL is not from a Secret"]
    assert found["resources and probes"] == [
        f"{at}: no cpu limit",
        f"{at}: no memory limit",
        f"{at}: no livenessProbe",
    ]
    assert found["availability"] == [
        "beat: not exactly one (replicas 1, strategy Recreate)",
        "bridge: not exactly one (replicas 1, strategy Recreate)",
        "api: a replica count beside its autoscaler",
    ]
    assert found["network"] == ["redis: let in from []", "bridge: may reach anything"]
