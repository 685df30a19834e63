"""A corrupt or incompatible model version, registered by hand and made champion, is refused by the
API's loader: the previous champion keeps serving and the failure shows in the metrics.

The incompatible versions are real cncwear pipelines with a real profile, which every other step of
the load accepts (a control version built the same way is served): only their columns or their
classes differ, and the loader's incompatibility check is what refuses them.

(A version whose artifacts are missing altogether: tests/api/test_champion.py.)"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from cncwear.core.errors import ModelLoadError
from cncwear.data.features import build_pipeline
from cncwear.data.profile import build_profile
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


def test_a_version_built_by_hand_like_the_refused_ones_is_served(
    registry: Registry, real_rows: pd.DataFrame
) -> None:
    """The control of the two tests below: the same construction, on the schema's columns and
    with its two classes, loads and serves."""
    name, (good,) = scenario(registry)
    store = registry.store(name)
    control = register_by_hand(store, name, fitted(real_rows, two_classes(real_rows)), real_rows)
    with serve(registry.settings(model_name=name, api_token=TOKEN)) as running:
        running.wait_ready(good)
        store.client.set_registered_model_alias(name, "champion", control)
        with running.client() as http:
            refreshed = http.post("/model/refresh", headers=AUTH)
            assert refreshed.status_code == 200
            assert refreshed.json()["version"] == control
            answer = http.post("/predict", json={"rows": records(real_rows.head(5))})
            assert answer.status_code == 200
            assert answer.json()["model"]["version"] == control


def test_a_version_of_another_model_with_other_columns_is_refused(
    registry: Registry, real_rows: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    """A real cncwear pipeline, logged and registered the way cncwear does, but fitted with a
    column the raw-row schema does not have: it loads, and could answer no request."""
    name, (good,) = scenario(registry)
    store = registry.store(name)
    rows = real_rows.assign(Spindle_Temperature=np.linspace(20.0, 40.0, len(real_rows)))
    incompatible = register_by_hand(store, name, fitted(rows, two_classes(rows)), rows)
    reason = "it takes columns the raw-row schema does not have: ['Spindle_Temperature']"
    check_the_load_failure(store, incompatible, reason)
    with caplog.at_level(logging.ERROR):
        make_champion_and_check_it_is_refused(registry, name, good, incompatible, real_rows)
    assert_logged_load_failure(caplog, incompatible, reason)


def test_a_version_with_other_classes_is_refused(
    registry: Registry, real_rows: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    """A real cncwear pipeline on the schema's columns, but with three classes: its probability of
    class 1 is not the probability of wear."""
    name, (good,) = scenario(registry)
    store = registry.store(name)
    three_classes = np.arange(len(real_rows)) % 3
    incompatible = register_by_hand(store, name, fitted(real_rows, three_classes), real_rows)
    reason = "its classes are [0, 1, 2], not [0, 1] (unworn, worn)"
    check_the_load_failure(store, incompatible, reason)
    with caplog.at_level(logging.ERROR):
        make_champion_and_check_it_is_refused(registry, name, good, incompatible, real_rows)
    assert_logged_load_failure(caplog, incompatible, reason)


def fitted(rows: pd.DataFrame, labels: np.ndarray) -> Pipeline:
    """A real cncwear pipeline (feature steps, selection, a small tree) fitted on ``rows``."""
    classifier = DecisionTreeClassifier(max_depth=3, random_state=0)
    return build_pipeline(classifier, use_identifying_columns=False, seed=0).fit(rows, labels)


def two_classes(rows: pd.DataFrame) -> np.ndarray:
    """Labels 0 and 1 (unworn, worn), from one reading: the model's quality is not the point."""
    position = rows["X1_ActualPosition"].to_numpy()
    return np.asarray(position > np.median(position), dtype=int)


def check_the_load_failure(store: ModelStore, version: str, reason: str) -> None:
    """The registry's loader refuses the version for ``reason``, and for nothing else."""
    model_version = store.client.get_model_version(store.settings.model_name, version)
    with pytest.raises(ModelLoadError) as refused:
        store.load_version(model_version)
    assert str(refused.value) == f"version {version} is incompatible: {reason}"


def assert_logged_load_failure(caplog: pytest.LogCaptureFixture, version: str, reason: str) -> None:
    """The server's failed load was the incompatibility, not another error on the way."""
    failures = [
        record.exc_info[1]
        for record in caplog.records
        if record.getMessage() == f"cannot load champion version {version}" and record.exc_info
    ]
    assert failures, f"no load failure of version {version} was logged"
    assert [str(error) for error in failures] == [f"version {version} is incompatible: {reason}"]


def scenario(registry: Registry) -> tuple[str, list[str]]:
    """A registered model of its own whose champion is a copy of the session's forest."""
    return registry.new_model(registry.compiled_version, champion=registry.compiled_version)


def register_by_hand(
    store: ModelStore, name: str, pipeline: Pipeline, example: pd.DataFrame
) -> str:
    """Logged and registered as a retrain does it: skops format, input example, a real profile."""
    probability_worn = pipeline.predict_proba(example)[:, 1]
    reference = build_profile(
        pipeline, example, pipeline.predict(example), probability_worn, holdout_x=example
    )
    with tempfile.TemporaryDirectory() as folder:
        profile = Path(folder) / PROFILE_FILE
        profile.write_text(json.dumps(reference))
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
