"""deploy/k8s agrees with the code and the container files it runs: the variables it sets are
settings and make valid settings (the bridge's reach the API's Service), the probes and metrics
endpoints are the services' own on their ports, the images and commands are those
deploy/*.Dockerfile and docker-compose.yml build and run, KEDA watches the Redis lists Celery
really queues in (asked of Celery and Redis, not copied), and stopping pods outlast the work they
may be doing.

Not checked here (no cluster): that the pods start, pass their probes, and that KEDA scales.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml
from pydantic_settings import BaseSettings

from cncwear.core.settings import Settings
from cncwear.jobs.queue import NEW_DATA_TASK, RETRAIN_TASK, make_celery
from cncwear_api.api.routes import health
from cncwear_api.api.routes import metrics as metrics_route
from cncwear_api.core.settings import ApiSettings
from cncwear_api.main import create_app
from cncwear_bridge.settings import BridgeSettings
from cncwear_trainer.settings import TrainerSettings
from tests.deploy.k8s_manifests import (
    OVERLAYS,
    ROOT,
    Object,
    containers,
    environment,
    find,
    pod_spec,
    port_number,
    render,
    selects,
    workloads,
)
from tests.deploy.test_compose import COMPOSE, example_env, interpolate
from tests.deploy.test_container_files import DEPLOY, final_stage

SETTINGS_OF: dict[str, type[BaseSettings]] = {
    "api": ApiSettings,
    "trainer": TrainerSettings,
    "beat": TrainerSettings,
    "bridge": BridgeSettings,
}
"""The cncwear containers and the settings object each reads."""
SECRET_VALUES = {
    "CNCWEAR_API_TOKEN": "a-token-of-the-secret",
    "CNCWEAR_REDIS_URL": "redis://redis:6379/0",
    "CNCWEAR_DATA_STORE_URL": "postgresql+psycopg://mlflow:password@postgres:5432/mlflow",
    "CNCWEAR_MQTT_URL": "mqtt://cncwear:password@broker.example.com:1883",
}
"""Stand-ins for what the Secret "cncwear" holds (docs/deploy.md's commands)."""


def setting_variables(settings: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings object reads: prefixed names and aliases."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for name, field in settings.model_fields.items():
        names.add(f"{prefix}{name}".upper())
        alias = field.validation_alias
        choices = getattr(alias, "choices", [alias] if isinstance(alias, str) else [])
        names.update(str(choice).upper() for choice in choices)
    return names


def env_problems(objects: list[Object]) -> list[str]:
    problems = []
    for workload in workloads(objects):
        for container in containers(workload):
            settings = SETTINGS_OF.get(container["name"])
            if settings is None:
                continue
            known = setting_variables(settings)
            problems.extend(
                f"{container['name']}: {name} is no setting of {settings.__name__}"
                for name in environment(objects, container)
                if name not in known
            )
    return problems


def compose_services() -> dict[str, dict[str, Any]]:
    document: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE.read_text()), example_env())
    services: dict[str, dict[str, Any]] = document["services"]
    return services


def workload(objects: list[Object], name: str) -> Object:
    found = [w for w in workloads(objects) if w["metadata"]["name"] == name]
    assert len(found) == 1, name
    return found[0]


def container(objects: list[Object], name: str) -> Object:
    (only,) = containers(workload(objects, name))
    return only


@pytest.fixture(scope="module")
def api_routes(tmp_path_factory: pytest.TempPathFactory) -> dict[Any, str]:
    """Where the API serves its probes and metrics: endpoint function to path (asked of the app)."""
    app = create_app(ApiSettings(home=tmp_path_factory.mktemp("home")))
    endpoints = (health.health, health.ready, metrics_route.metrics)
    return {endpoint: app.url_path_for(endpoint.__name__) for endpoint in endpoints}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_given_to_a_cncwear_container_is_a_setting(overlay: str) -> None:
    objects = render(overlay)
    assert {c["name"] for w in workloads(objects) for c in containers(w)} >= set(SETTINGS_OF)
    assert env_problems(objects) == []


def test_a_misspelt_variable_is_caught() -> None:
    objects = render("single-node")
    container(objects, "trainer")["env"].append({"name": "CNCWEAR_NJOBS", "value": "4"})
    assert env_problems(objects) == ["trainer: CNCWEAR_NJOBS is no setting of TrainerSettings"]


def settings_of(objects: list[Object], name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a container reads from what the manifests give it (Secrets: SECRET_VALUES)."""
    settings_type = SETTINGS_OF[name]
    env = environment(objects, container(objects, name))
    with monkeypatch.context() as patch:
        for variable in setting_variables(settings_type):
            patch.delenv(variable, raising=False)
        for variable, value in env.items():
            patch.setenv(variable, SECRET_VALUES[variable] if value is None else value)
        settings = settings_type()
    assert isinstance(settings, Settings)
    return settings


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_cncwear_container_gets_valid_settings_for_a_shared_registry(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(overlay)
    for name in SETTINGS_OF.keys() - {"bridge"}:  # the bridge uses the API, not the registry
        settings = settings_of(objects, name, monkeypatch)
        assert settings.registry_is_shared() and settings.uses_redis_promotion_lock(), name
        assert settings.data_store_url, f"{name}: the labelled runs would go to a local file"
        if isinstance(settings, ApiSettings):
            assert settings.host == "0.0.0.0" and settings.api_token is not None
        if isinstance(settings, TrainerSettings) and name == "trainer":
            assert settings.worker_metrics_host == "0.0.0.0" and settings.worker_metrics_port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_bridge_reaches_the_api_service_with_the_token_and_a_broker_from_the_secret(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render(overlay)
    settings = settings_of(objects, "bridge", monkeypatch)
    assert isinstance(settings, BridgeSettings)
    assert settings.mqtt_url == SECRET_VALUES["CNCWEAR_MQTT_URL"]
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == SECRET_VALUES["CNCWEAR_API_TOKEN"]
    url = urlsplit(settings.bridge_api_url)
    service = find(objects, "Service", "api")
    (port,) = service["spec"]["ports"]
    assert (url.scheme, url.hostname) == ("http", service["metadata"]["name"])
    assert url.port == port["port"]
    assert port_number(container(objects, "api"), port["targetPort"]) == api_settings(objects).port
    # One stable client id (the broker keeps the session under it), not the default's.
    assert settings.mqtt_client_id == "cncwear-bridge"
    assert "valueFrom" not in next(
        v for v in container(objects, "bridge")["env"] if v["name"] == "CNCWEAR_MQTT_CLIENT_ID"
    )


def api_settings(objects: list[Object]) -> ApiSettings:
    env = environment(objects, container(objects, "api"))
    return ApiSettings.model_validate({"port": env.get("CNCWEAR_PORT", ApiSettings().port)})


def probe_problems(objects: list[Object], routes: dict[Any, str]) -> list[str]:
    api = container(objects, "api")
    port = api_settings(objects).port
    problems = []
    expected = {
        "startupProbe": routes[health.health],
        "livenessProbe": routes[health.health],
        "readinessProbe": routes[health.ready],
    }
    for probe, path in expected.items():
        check = api.get(probe, {}).get("httpGet")
        if check is None:
            problems.append(f"api: no {probe} over HTTP")
            continue
        if check["path"] != path:
            problems.append(f"api: {probe} asks {check['path']}, the API answers it on {path}")
        if port_number(api, check["port"]) != port:
            problems.append(f"api: {probe} on port {check['port']}, the API listens on {port}")
    if port_number(api, "http") != port:
        problems.append(f"api: port http is not CNCWEAR_PORT ({port})")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_probes_are_its_liveness_and_readiness_routes_on_its_port(
    overlay: str, api_routes: dict[Any, str]
) -> None:
    assert api_routes[health.health] == "/health" and api_routes[health.ready] == "/ready"
    assert probe_problems(render(overlay), api_routes) == []


def test_a_missing_or_wrong_probe_is_caught(api_routes: dict[Any, str]) -> None:
    objects = render("production")
    api = container(objects, "api")
    del api["readinessProbe"]
    api["livenessProbe"]["httpGet"]["path"] = "/healthz"
    assert probe_problems(objects, api_routes) == [
        "api: livenessProbe asks /healthz, the API answers it on /health",
        "api: no readinessProbe over HTTP",
    ]


def scrape_target(objects: list[Object], monitor: Object) -> tuple[Object, int, str]:
    """The container and port a ServiceMonitor's endpoint reaches, and its path."""
    (endpoint,) = monitor["spec"]["endpoints"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    (service,) = [
        o
        for o in objects
        if o["kind"] == "Service" and selects(selector, o["metadata"].get("labels", {}))
        and any(p.get("name") == endpoint["port"] for p in o["spec"]["ports"])
    ]  # fmt: skip
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    (pods,) = [
        w for w in workloads(objects)
        if selects(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
    ]  # fmt: skip
    (target,) = containers(pods)
    return target, port_number(target, port["targetPort"]), endpoint["path"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_are_scraped_on_the_ports_and_paths_the_services_serve_them(
    overlay: str, api_routes: dict[Any, str]
) -> None:
    objects = render(overlay)
    target, port, path = scrape_target(objects, find(objects, "ServiceMonitor", "cncwear-api"))
    assert target["name"] == "api"
    assert (port, path) == (api_settings(objects).port, api_routes[metrics_route.metrics])

    target, port, path = scrape_target(objects, find(objects, "ServiceMonitor", "cncwear-trainer"))
    assert target["name"] == "trainer"
    env = environment(objects, target)
    served = int(env.get("CNCWEAR_WORKER_METRICS_PORT") or TrainerSettings().worker_metrics_port)
    assert port == served and path == "/metrics"  # start_http_server serves every path
    assert env["CNCWEAR_WORKER_METRICS_HOST"] == "0.0.0.0"

    target, port, path = scrape_target(objects, find(objects, "ServiceMonitor", "cncwear-bridge"))
    assert target["name"] == "bridge"
    env = environment(objects, target)
    default = BridgeSettings.model_fields["bridge_metrics_port"].default
    served = int(env.get("CNCWEAR_BRIDGE_METRICS_PORT") or default)
    assert port == served == default and path == "/metrics"  # start_http_server: every path
    assert env["CNCWEAR_BRIDGE_METRICS_HOST"] == "0.0.0.0"
    # Its liveness probe asks the same endpoint, as the image's HEALTHCHECK does.
    alive = target["livenessProbe"]["httpGet"]
    assert (port_number(target, alive["port"]), alive["path"]) == (served, "/metrics")


def image_cmd(dockerfile: Path) -> list[str]:
    (cmd,) = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "CMD"]
    command: list[str] = json.loads(cmd)
    return command


def image_user(dockerfile: Path) -> int:
    users = [arguments for keyword, arguments in final_stage(dockerfile) if keyword == "USER"]
    return int(users[-1].split(":")[0])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_commands_and_users_are_those_the_container_files_build(overlay: str) -> None:
    objects = render(overlay)
    compose = compose_services()
    built = {
        name: (service["image"], DEPLOY / Path(service["build"]["dockerfile"]).name)
        for name, service in compose.items()
        if "build" in service
    }
    assert set(built) == {"api", "trainer", "mlflow", "bridge"}
    runs = {"api": built["api"], "trainer": built["trainer"], "beat": built["trainer"],
            "mlflow": built["mlflow"], "bridge": built["bridge"]}  # fmt: skip
    for name, (image, dockerfile) in runs.items():
        pod = workload(objects, name)
        (only,) = containers(pod)
        assert only["image"].rpartition("/")[2] == image, (name, only["image"])
        expected = compose[name].get("command") or image_cmd(dockerfile)
        if name == "mlflow":
            expected = [part.replace("$$", "$") for part in expected]
        assert only.get("command", image_cmd(dockerfile)) == expected, name
        assert "args" not in only, name
        assert pod_spec(pod)["securityContext"]["runAsUser"] == image_user(dockerfile), name
    assert image_cmd(DEPLOY / "trainer.Dockerfile") == ["cncwear-trainer", "worker"]
    assert container(objects, "beat")["command"] == ["cncwear-trainer", "beat"]
    assert image_cmd(DEPLOY / "bridge.Dockerfile") == ["cncwear-bridge"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_mlflow_server_gets_the_configuration_of_the_compose_stack(overlay: str) -> None:
    objects = render(overlay)
    given = set(environment(objects, container(objects, "mlflow")))
    assert given == set(compose_services()["mlflow"]["environment"])


def celery_lists(redis_url: str) -> set[str]:
    """The Redis lists Celery puts a retrain and a trigger in: sent for real, then looked up
    (the lists that grew by one)."""
    client = redis.Redis.from_url(redis_url)

    def lengths() -> dict[str, int]:
        keys = [key.decode() for key in client.keys("*")]
        return {key: client.llen(key) for key in keys if client.type(key) == b"list"}

    before = lengths()
    app = make_celery(Settings(redis_url=redis_url))
    try:
        app.send_task(RETRAIN_TASK, args=["a-job-id"])
        app.send_task(NEW_DATA_TASK)
    finally:
        app.close()
    try:
        return {key for key, length in lengths().items() if length == before.get(key, 0) + 1}
    finally:
        client.close()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_the_workers_on_the_redis_lists_celery_queues_in(
    overlay: str, redis_url: str
) -> None:
    objects = render(overlay)
    scaled = find(objects, "ScaledObject", "trainer")
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "trainer"
    }  # fmt: skip
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    lists = {t["metadata"]["listName"] for t in triggers}
    assert lists == celery_lists(redis_url)
    assert 0 <= scaled["spec"]["minReplicaCount"] <= 1 <= scaled["spec"]["maxReplicaCount"]
    if overlay == "production":
        assert scaled["spec"]["maxReplicaCount"] > 1
    if overlay == "single-node":  # the in-cluster Redis, as the Secret's URL names it
        service = find(objects, "Service", "redis")
        url = re.match(r"redis://([^:/]+):(\d+)/(\d+)", SECRET_VALUES["CNCWEAR_REDIS_URL"])
        assert url is not None
        for trigger in triggers:
            host, _, port = trigger["metadata"]["address"].partition(":")
            assert host == service["metadata"]["name"] == url.group(1)
            assert int(port) == service["spec"]["ports"][0]["port"] == int(url.group(2))
            assert trigger["metadata"]["databaseIndex"] == url.group(3)


def nginx_read_timeout() -> int:
    text = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    match = re.search(r"proxy_read_timeout\s+(\d+)s;", text)
    assert match is not None
    return int(match.group(1))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stopping_pods_outlast_the_work_they_may_be_doing(overlay: str) -> None:
    objects = render(overlay)
    api = container(objects, "api")
    pause = shlex.join(api["lifecycle"]["preStop"]["exec"]["command"])
    seconds = int(re.fullmatch(r"sleep (\d+)", pause).group(1))  # type: ignore[union-attr]
    longest = nginx_read_timeout()
    for ingress in (o for o in objects if o["kind"] == "Ingress"):
        annotations = ingress["metadata"]["annotations"]
        longest = max(longest, int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]))
        assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) == longest
    assert pod_spec(workload(objects, "api"))["terminationGracePeriodSeconds"] > seconds + longest

    env = environment(objects, container(objects, "trainer"))
    limit = int(env["CNCWEAR_RETRAIN_TIME_LIMIT"] or 0)
    visibility = int(env["CNCWEAR_RETRAIN_VISIBILITY_TIMEOUT"] or 0)
    grace = pod_spec(workload(objects, "trainer"))["terminationGracePeriodSeconds"]
    # Long enough for Celery's warm shutdown to finish a retrain; shorter than the visibility
    # timeout, so the job is not handed to a second worker while the first still runs it.
    assert limit < grace < visibility
