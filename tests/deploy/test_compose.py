"""deploy/docker-compose.yml, checked by what runs without a Docker engine: the Compose
Specification's JSON schema (as vendored by check-jsonschema), and the rules of the stack: health
checks, start order on healthy services, pinned images, unprivileged users, named volumes for state,
and settings that exist.

Not checked here (no engine): that the images build and the containers start and pass their
health checks; docs/deploy.md says how to check that on a machine with Docker.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values
from jsonschema import Draft202012Validator

from cncwear_api.core.settings import ApiSettings
from cncwear_bridge.settings import BridgeSettings
from cncwear_trainer.settings import TrainerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
ONE_SHOT = {"minio-init", "volume-permissions"}
"""Services that run once and exit; others wait for them with service_completed_successfully."""
STATEFUL = {
    "redis": "/data",
    "postgres": "/var/lib/postgresql/data",
    "minio": "/data",
    "prometheus": "/prometheus",
    "grafana": "/var/lib/grafana",
    "mosquitto": "/mosquitto/data",
}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation (``${X}``, ``${X:-default}``, ``${X:?error}``, ``$$``)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        current = env.get(name)
        empty = current is None or (current == "" and operator is not None and ":" in operator)
        if operator in {":-", "-"} and (current is None if operator == "-" else empty):
            return argument
        if operator in {":?", "?"} and empty:
            raise ValueError(f"{name} is required: {argument}")
        return current or ""

    return VARIABLE.sub(substitute, value)


def variables(text: str) -> set[str]:
    return {m.group(1) for m in VARIABLE.finditer(text) if m.group(1)}


def example_env() -> dict[str, str]:
    return {k: v or "" for k, v in dotenv_values(ENV_EXAMPLE).items()}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """The compose file as Docker Compose sees it with the settings of .env.example."""
    document: dict[str, Any] = interpolate(raw, example_env())
    return document


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schemas = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((schemas / "compose-spec.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def long_running(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services(compose).items() if n not in ONE_SHOT}


def test_the_compose_file_follows_the_compose_specification(
    compose: dict[str, Any], validator: Draft202012Validator
) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_check_catches_a_mistake(
    compose: dict[str, Any], validator: Draft202012Validator
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["depends_on"]["redis"]["condition"] = "service_ready"
    broken["services"]["api"]["healthcheck"]["interval_seconds"] = 15
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    missing = [
        name
        for name, service in long_running(compose).items()
        if not service.get("healthcheck", {}).get("test") or service["healthcheck"].get("disable")
    ]
    assert missing == []


def test_services_start_only_after_what_they_need_is_healthy_or_done(
    compose: dict[str, Any],
) -> None:
    every = services(compose)
    for name, service in every.items():
        for needed, rule in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if needed in ONE_SHOT else "service_healthy"
            assert rule["condition"] == expected, (name, needed)
            if expected == "service_healthy":
                assert "healthcheck" in every[needed], needed
    needs = {n: set(s.get("depends_on", {})) for n, s in every.items()}
    assert {"redis", "mlflow"} <= needs["api"] and {"redis", "mlflow"} <= needs["trainer"]
    assert {"postgres", "minio-init"} <= needs["mlflow"]
    assert needs["proxy"] == {"api"}


def test_every_image_is_pinned_to_a_version(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, (name, image)
        assert tag != "latest" and re.search(r"\d+\.\d+", tag.replace("-", ".")), (name, image)


def test_every_service_runs_as_an_unprivileged_user_but_one_chown(
    compose: dict[str, Any],
) -> None:
    """Our images set USER too (tests/deploy/test_container_files.py); third-party images get
    ``user:`` here. The one exception: the one-shot that hands MinIO's volume to MinIO's user."""
    root = []
    for name, service in services(compose).items():
        uid = str(service.get("user", "0")).split(":")[0]
        if uid in {"0", "root"}:
            root.append(name)
    assert root == ["volume-permissions"]
    assert services(compose)["volume-permissions"]["command"][:2] == ["chown", "-R"]


def test_stateful_services_keep_their_state_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, path in STATEFUL.items():
        mounts = [str(v).split(":") for v in services(compose)[name]["volumes"]]
        named = [source for source, target, *_ in mounts if target == path]
        assert named and named[0] in declared, (name, mounts)
    # The API and the workers keep nothing locally: everything lives in MLflow and Redis.
    assert "volumes" not in services(compose)["api"]
    assert "volumes" not in services(compose)["trainer"]


def test_api_replicas_sit_behind_the_proxy_and_workers_scale(
    compose: dict[str, Any], raw: dict[str, Any]
) -> None:
    every = services(compose)
    assert int(every["api"]["deploy"]["replicas"]) == 2
    assert int(every["trainer"]["deploy"]["replicas"]) >= 1
    # Replicas publish no host port (they would clash); the proxy is the way in.
    assert "ports" not in every["api"] and "ports" not in every["trainer"]
    assert raw["services"]["api"]["deploy"]["replicas"] == "${CNCWEAR_API_REPLICAS:-2}"
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert re.search(r"server\s+api:8000\s+resolve;", nginx)
    assert "./nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in every["proxy"]["volumes"]


def test_the_stack_is_the_configuration_the_acceptance_tests_run(compose: dict[str, Any]) -> None:
    """tests/deploy/test_scale_out.py runs API and worker processes against an MLflow server on
    PostgreSQL over HTTP with one Redis; the stack must be that configuration."""
    every = services(compose)
    for name in ("api", "trainer"):
        env = every[name]["environment"]
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["CNCWEAR_REDIS_URL"] == "redis://redis:6379/0"
        assert env["CNCWEAR_DATA_STORE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["CNCWEAR_DATA_STORE_URL"]
    assert every["api"]["environment"]["CNCWEAR_API_TOKEN"]
    command = " ".join(every["mlflow"]["command"])
    assert "--serve-artifacts" in command and "--artifacts-destination" in command
    env = every["mlflow"]["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    minio_init = " ".join(every["minio-init"]["command"])
    assert "mc mb --ignore-existing" in minio_init


def test_monitoring_mounts_the_provisioned_files(compose: dict[str, Any]) -> None:
    every = services(compose)
    assert "./prometheus:/etc/prometheus:ro" in every["prometheus"]["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in every["prometheus"]["command"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in every["grafana"]["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in every["grafana"]["volumes"]


def test_cncwear_settings_given_to_the_services_exist(compose: dict[str, Any]) -> None:
    """A misspelt CNCWEAR_ variable would be ignored silently; each must name a setting."""
    fields = {
        f"CNCWEAR_{name.upper()}"
        for settings in (ApiSettings, TrainerSettings, BridgeSettings)
        for name in settings.model_fields
    }
    given = {
        key
        for name in ("api", "trainer", "bridge")
        for key in services(compose)[name]["environment"]
        if key.startswith("CNCWEAR_")
    }
    assert given - fields == set()


def test_every_variable_is_in_the_env_example_and_the_docs(raw: dict[str, Any]) -> None:
    used = variables(COMPOSE.read_text())
    example = set(example_env())
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert used - example == set(), "add these to deploy/.env.example"
    assert example - used == set(), "deploy/.env.example names variables the stack ignores"
    assert [name for name in sorted(used) if f"`{name}`" not in docs] == []


def test_required_secrets_have_no_default_and_no_real_value_in_the_example() -> None:
    text = COMPOSE.read_text()
    required = {m.group(1) for m in VARIABLE.finditer(text) if m.group(2) in {":?", "?"}}
    assert {"CNCWEAR_API_TOKEN", "POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"} <= required
    example = example_env()
    assert all(example[name].startswith("change-me") for name in required)
    with pytest.raises(ValueError, match=r"(CNCWEAR_API_TOKEN|POSTGRES_PASSWORD) is required"):
        interpolate(yaml.safe_load(text), {})
