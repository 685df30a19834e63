"""A corrupt or incompatible model version, registered by hand and made champion, is refused by the
API's loader: the previous champion keeps serving and the failure shows in the metrics.

(A version whose artifacts are missing altogether: tests/api/test_champion.py.)"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from cncwear.registry.store import MODEL_ARTIFACT, PROFILE_FILE, ModelStore, trusted_types
from tests.api.conftest import Registry, records

from .conftest import AUTH, TOKEN, RunningServer, serve


def load_failures(running: RunningServer) -> float:
    with running.client() as http:
        text = http.get("/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "cncwear_model_load_failures":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    raise AssertionError("no cncwear_model_load_failures metric")


def make_champion_and_check_it_is_refused(
    registry: Registry, name: str, good: str, bad: str, real_rows: pd.DataFrame
) -> None:
    store = registry.store(name)
    with serve(registry.settings(model_name=name, api_token=TOKEN)) as running:
        running.wait_ready(good)
        before = load_failures(running)
        store.client.set_registered_model_alias(name, "champion", bad)
        with running.client() as http:
            refreshed = http.post("/model/refresh", headers=AUTH)
            assert refreshed.status_code == 200
            assert refreshed.json()["version"] == good
            answer = http.post("/predict", json={"rows": records(real_rows.head(5))})
            assert answer.status_code == 200
            assert answer.json()["model"]["version"] == good
            assert http.get("/ready").json()["model"]["version"] == good
        assert load_failures(running) == before + 1


def test_a_version_with_a_corrupt_model_file_is_refused(
    registry: Registry, real_rows: pd.DataFrame, tmp_path: Path
) -> None:
    name, (good,) = scenario(registry)
    store = registry.store(name)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{good}", dst_path=tmp_path))
    (model_file,) = [p for p in local.iterdir() if p.suffix == ".skops"]
    model_file.write_bytes(model_file.read_bytes()[:1000] + b"\x00garbage" * 100)
    corrupt = store.client.create_model_version(name, source=str(local))
    make_champion_and_check_it_is_refused(registry, name, good, str(corrupt.version), real_rows)


def test_a_version_of_another_model_with_other_columns_is_refused(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    """A real scikit-learn pipeline, logged and registered the way cncwear does, but fitted on
    columns the raw-row schema does not have: it loads, and would answer every request wrongly."""
    name, (good,) = scenario(registry)
    store = registry.store(name)
    features = pd.DataFrame({"sepal_length": np.linspace(0, 1, 40), "petal_width": np.arange(40)})
    other = Pipeline([("model", LogisticRegression())]).fit(features, np.arange(40) % 2)
    incompatible = register_by_hand(store, name, other, features)
    make_champion_and_check_it_is_refused(registry, name, good, incompatible, real_rows)


def test_a_version_with_other_classes_is_refused(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    name, (good,) = scenario(registry)
    store = registry.store(name)
    rows = real_rows.head(30)[["X1_ActualPosition", "Y1_ActualPosition"]]
    three_classes = Pipeline([("model", LogisticRegression())]).fit(rows, np.arange(30) % 3)
    incompatible = register_by_hand(store, name, three_classes, rows)
    make_champion_and_check_it_is_refused(registry, name, good, incompatible, real_rows)


def scenario(registry: Registry) -> tuple[str, list[str]]:
    """A registered model of its own whose champion is a copy of the session's forest."""
    return registry.new_model(registry.compiled_version, champion=registry.compiled_version)


def register_by_hand(
    store: ModelStore, name: str, pipeline: Pipeline, example: pd.DataFrame
) -> str:
    with tempfile.TemporaryDirectory() as folder:
        profile = Path(folder) / PROFILE_FILE
        profile.write_text(json.dumps({}))
        with mlflow.start_run(experiment_id=store.experiment_id()):
            info = mlflow.sklearn.log_model(
                pipeline,
                name=MODEL_ARTIFACT,
                input_example=example.head(2),
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=trusted_types(pipeline),
                extra_files=[str(profile)],
            )
    version = mlflow.register_model(info.model_uri, name)
    return str(version.version)
