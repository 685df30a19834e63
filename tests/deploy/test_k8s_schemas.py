"""deploy/k8s renders, and every object it renders follows its schema, offline.

Every overlay is rendered with ``kubectl kustomize``. Built-in objects are validated strictly
(unknown fields rejected) against the Kubernetes API schemas that the ``kubernetes-validate``
package ships, for the oldest and the newest version the manifests are stated for. The custom
resources are validated against the models the ``cloudcoil-models-keda`` (KEDA 2.16) and
``cloudcoil-models-prometheus-operator`` (Prometheus Operator 0.80) packages generate from those
projects' CRD schemas: their types and required fields, and, by comparing what the model keeps
with what the manifest says, no unknown field. Nothing is downloaded.

Not checked here (no cluster): that an API server and the KEDA and Prometheus operators accept
and act on the objects.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator
from pydantic import BaseModel, ValidationError

from tests.deploy.k8s_manifests import OVERLAYS, Object, find, render

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
"""The Kubernetes versions the manifests are stated for (docs/deploy.md): the oldest still
maintained by the major providers, and the newest whose schemas kubernetes-validate ships."""

CUSTOM_RESOURCES: dict[tuple[str, str], type[BaseModel]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): prometheus_operator.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): prometheus_operator.PrometheusRule,
}


def builtin_problems(objects: list[Object], version: str) -> list[str]:
    problems = []
    for document in objects:
        if (document["apiVersion"], document["kind"]) in CUSTOM_RESOURCES:
            continue
        name = f"{document['kind']}/{document['metadata']['name']}"
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{name}: {error.message} at {list(error.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{name}: no schema for {document['apiVersion']} in {version}")
    return problems


def unknown_fields(given: Any, kept: Any, path: str = "") -> list[str]:
    """Where the manifest says more than the model kept: fields the schema does not know."""
    if isinstance(given, dict) and isinstance(kept, dict):
        found = []
        for key, value in given.items():
            if key not in kept:
                found.append(f"{path}.{key}")
            else:
                found.extend(unknown_fields(value, kept[key], f"{path}.{key}"))
        return found
    if isinstance(given, list) and isinstance(kept, list):
        return [
            problem
            for index, (a, b) in enumerate(zip(given, kept, strict=True))
            for problem in unknown_fields(a, b, f"{path}[{index}]")
        ]
    return []


def custom_resource_problems(objects: list[Object]) -> list[str]:
    problems = []
    for document in objects:
        model = CUSTOM_RESOURCES.get((document["apiVersion"], document["kind"]))
        if model is None:
            continue
        name = f"{document['kind']}/{document['metadata']['name']}"
        try:
            parsed = model.model_validate(document)
        except ValidationError as error:
            problems.extend(f"{name}: {e['loc']}: {e['msg']}" for e in error.errors())
            continue
        kept = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
        problems.extend(f"{name}: unknown field {f}" for f in unknown_fields(document, kept))
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_holds_only_kinds_with_a_schema(overlay: str) -> None:
    objects = render(overlay)
    assert objects
    custom = [o for o in objects if (o["apiVersion"], o["kind"]) in CUSTOM_RESOURCES]
    assert {o["kind"] for o in custom} >= {"ScaledObject", "ServiceMonitor", "PrometheusRule"}
    unknown_groups = {
        o["apiVersion"]
        for o in objects
        if "." in o["apiVersion"].split("/")[0] and o not in custom
        and not o["apiVersion"].split("/")[0].endswith("k8s.io")
    }  # fmt: skip
    assert unknown_groups == set(), "custom resources without a schema to check them against"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_built_in_objects_follow_the_kubernetes_schemas_strictly(
    overlay: str, version: str
) -> None:
    assert builtin_problems(render(overlay), version) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_and_prometheus_operator_objects_follow_their_crd_models(overlay: str) -> None:
    assert custom_resource_problems(render(overlay)) == []


def test_the_schema_checks_catch_a_misspelt_field_and_a_wrong_type() -> None:
    objects = render("production")
    api = find(objects, "Deployment", "api")
    container = api["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe")
    find(objects, "HorizontalPodAutoscaler", "api")["spec"]["maxReplicas"] = "twelve"
    problems = builtin_problems(objects, KUBERNETES_VERSIONS[0])
    assert any("readinessProbes" in p for p in problems), problems
    assert any(p.startswith("HorizontalPodAutoscaler/api") for p in problems), problems

    scaled = find(objects, "ScaledObject", "trainer")
    scaled["spec"]["minReplicas"] = 0  # KEDA's field is minReplicaCount
    del find(objects, "TriggerAuthentication", "redis")["spec"]["secretTargetRef"][0]["key"]
    find(objects, "ServiceMonitor", "cncwear-api")["spec"]["endpoints"][0]["interval"] = 15
    problems = custom_resource_problems(objects)
    assert "ScaledObject/trainer: unknown field .spec.minReplicas" in problems
    assert any(p.startswith("TriggerAuthentication/redis") and "key" in p for p in problems)
    assert any(p.startswith("ServiceMonitor/cncwear-api") for p in problems), problems
