"""The compiled (ONNX) form: exact for every estimator a retrain can produce, checked, stored with
the version, and refused when it cannot be trusted."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from cncwear.core.errors import CompileError
from cncwear.core.schema import input_columns
from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset
from cncwear.data.features import build_pipeline
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from cncwear.serving.compiled.artifact import (
    load_compiled_form,
    registered_pipeline,
)
from cncwear.serving.compiled.attach import attach_compiled_form
from cncwear.serving.compiled.export import compile_and_check
from cncwear.serving.compiled.runtime import CompiledModel
from cncwear.serving.trees import PARITY_TOLERANCE as TOLERANCE


@pytest.fixture(scope="module")
def split(dataset: Dataset) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Every 9th active row of the training experiments to fit on, held-out rows to check on."""
    active = dataset.active()
    held = [1, 9, 10, 12]
    train = active.rows[~active.rows["experiment"].isin(held)].iloc[::9]
    holdout = active.rows[active.rows["experiment"].isin(held)].iloc[::3]
    columns = input_columns(use_identifying_columns=False)
    return train[columns], train["label"].to_numpy(), holdout


def fitted(estimator: Any, split: tuple[pd.DataFrame, np.ndarray, pd.DataFrame]) -> Pipeline:
    x, y, _ = split
    return build_pipeline(estimator, use_identifying_columns=False, seed=0).fit(x, y)


@pytest.mark.parametrize(
    ("estimator", "converter"),
    [
        (DecisionTreeClassifier(random_state=0, min_samples_leaf=3), "cncwear-trees"),
        (RandomForestClassifier(n_estimators=25, random_state=0, n_jobs=1), "cncwear-trees"),
        (ExtraTreesClassifier(n_estimators=25, random_state=0, n_jobs=1), "cncwear-trees"),
        (HistGradientBoostingClassifier(max_iter=30, random_state=0), "cncwear-trees"),
        (LGBMClassifier(n_estimators=40, random_state=0, n_jobs=1, verbose=-1), "cncwear-trees"),
        (
            LGBMClassifier(
                boosting_type="rf",
                n_estimators=20,
                subsample=0.8,
                subsample_freq=1,
                random_state=0,
                n_jobs=1,
                verbose=-1,
            ),
            "cncwear-trees",
        ),
        (LogisticRegression(max_iter=500), "skl2onnx"),
    ],
    ids=[
        "decision_tree",
        "random_forest",
        "extra_trees",
        "hist_gradient_boosting",
        "lightgbm",
        "lightgbm_random_forest",
        "logistic",
    ],
)
def test_compiled_form_matches_sklearn_within_the_tolerance_on_held_out_rows(
    estimator: Any, converter: str, split: tuple[pd.DataFrame, np.ndarray, pd.DataFrame]
) -> None:
    pipeline = fitted(estimator, split)
    data, used, report, typed = compile_and_check(pipeline, split[2])
    assert used.startswith(converter)
    assert report.rows == len(split[2]) > 1000
    assert report.max_abs_diff <= TOLERANCE <= 1e-6
    compiled = CompiledModel(data)
    expected = pipeline.predict_proba(typed[list(pipeline.feature_names_in_)])[:, 1]
    got = compiled.probability_worn(typed[compiled.input_columns].to_numpy(np.float64))
    assert np.max(np.abs(got - expected)) <= TOLERANCE


def test_trees_branch_like_sklearn_for_values_at_a_threshold(
    split: tuple[pd.DataFrame, np.ndarray, pd.DataFrame],
) -> None:
    """scikit-learn's trees compare float32(x) with a double threshold (a midpoint between two
    float32 values): a value exactly at the threshold rounds to one of them, so a plain double
    comparison could branch the other way. The compiled form casts like scikit-learn does."""
    pipeline = fitted(DecisionTreeClassifier(random_state=0, max_depth=6), split)
    data, _, _, typed = compile_and_check(pipeline, split[2])
    compiled = CompiledModel(data)
    tree, names = pipeline[-1].tree_, pipeline[:-1].get_feature_names_out()
    splits = [n for n in range(tree.node_count) if tree.children_left[n] != -1]
    raw = [n for n in splits if names[tree.feature[n]] in compiled.input_columns]
    assert raw, "no split on a raw column"
    rows = pd.concat([typed.head(40)] * 3, ignore_index=True)
    for i, node in enumerate(raw[:40]):
        threshold = tree.threshold[node]
        around = (threshold, np.nextafter(threshold, -np.inf), np.nextafter(threshold, np.inf))
        for k, value in enumerate(around):
            rows.loc[i + 40 * k, names[tree.feature[node]]] = value
    expected = pipeline.predict_proba(rows)[:, 1]
    got = compiled.probability_worn(rows[compiled.input_columns].to_numpy(np.float64))
    assert np.max(np.abs(got - expected)) <= TOLERANCE


def test_an_estimator_without_converter_is_refused(
    split: tuple[pd.DataFrame, np.ndarray, pd.DataFrame],
) -> None:
    with pytest.raises(CompileError, match="DummyClassifier"):
        compile_and_check(fitted(DummyClassifier(), split), split[2])


def test_feature_steps_other_than_picks_and_differences_are_refused(
    split: tuple[pd.DataFrame, np.ndarray, pd.DataFrame],
) -> None:
    pipeline = build_pipeline(
        DecisionTreeClassifier(random_state=0), use_identifying_columns=False, seed=0
    )
    pipeline.steps.insert(-1, ("scale", StandardScaler().set_output(transform="pandas")))
    pipeline.fit(split[0], split[1])
    with pytest.raises(CompileError, match="column picks and differences"):
        compile_and_check(pipeline, split[2])


def register(settings: Settings, pipeline: Pipeline, rows: pd.DataFrame) -> str:
    store = ModelStore(settings)
    with store.retrain_run(tags={}), store.candidate_run("test"):
        uri = store.log_model(pipeline, input_example=rows.head(5), profile={})
    return str(store.register(uri, tags={}).version)


def test_attach_stores_the_compiled_form_and_records_the_parity_on_the_version(
    settings: Settings, split: tuple[pd.DataFrame, np.ndarray, pd.DataFrame]
) -> None:
    pipeline = fitted(RandomForestClassifier(n_estimators=10, random_state=0, n_jobs=1), split)
    columns = list(pipeline.feature_names_in_)
    version = register(settings, pipeline, split[0][columns])
    store = ModelStore(settings)
    tags = attach_compiled_form(store, version, registered_pipeline(store, version), split[2])
    assert tags[Tag.COMPILED_FORMAT] == "onnx"
    assert float(tags[Tag.COMPILED_MAX_ABS_DIFF]) <= float(tags[Tag.COMPILED_TOLERANCE]) <= 1e-6
    assert int(tags[Tag.COMPILED_PARITY_ROWS]) == len(split[2])
    loaded = store.load_version(store.client.get_model_version(settings.model_name, version))
    assert {k: loaded.tags[k] for k in tags} == tags
    _, report = load_compiled_form(store, loaded)
    assert report.passed and report.rows > 0
    assert attach_compiled_form(store, version, pipeline, split[2]) == tags  # idempotent


def test_a_version_that_cannot_be_compiled_says_why_and_loads_without_compiled_form(
    settings: Settings, split: tuple[pd.DataFrame, np.ndarray, pd.DataFrame]
) -> None:
    pipeline = fitted(DummyClassifier(), split)
    version = register(settings, pipeline, split[0][list(pipeline.feature_names_in_)])
    store = ModelStore(settings)
    tags = attach_compiled_form(store, version, pipeline, split[2])
    assert tags[Tag.COMPILED_FORMAT] == "none"
    assert "DummyClassifier" in tags[Tag.COMPILED_REASON]
    loaded = store.load_version(store.client.get_model_version(settings.model_name, version))
    with pytest.raises(CompileError, match="DummyClassifier"):
        load_compiled_form(store, loaded)


def test_a_compiled_form_whose_checksum_differs_is_not_used(
    settings: Settings, split: tuple[pd.DataFrame, np.ndarray, pd.DataFrame]
) -> None:
    pipeline = fitted(DecisionTreeClassifier(random_state=0), split)
    version = register(settings, pipeline, split[0][list(pipeline.feature_names_in_)])
    store = ModelStore(settings)
    attach_compiled_form(store, version, pipeline, split[2])
    store.tag_version(version, {Tag.COMPILED_SHA256: "0" * 64})
    loaded = store.load_version(store.client.get_model_version(settings.model_name, version))
    with pytest.raises(CompileError, match="checksum"):
        load_compiled_form(store, loaded)


def test_a_server_loads_compiled_forms_without_the_converters() -> None:
    """The API installs onnxruntime only: loading and running compiled forms must not import
    skl2onnx, onnx or LightGBM (export and attach do, at training time)."""
    modules = "cncwear.serving.compiled.artifact, cncwear.serving.compiled.runtime"
    code = (
        f"import sys, {modules}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'skl2onnx', 'onnx', 'lightgbm'}))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert found.stdout.strip() == "[]"
