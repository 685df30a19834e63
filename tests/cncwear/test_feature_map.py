"""The one feature map: read off a fitted pipeline's feature steps, exact on real rows, and what the
drift window monitors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from cncwear.core.schema import input_columns, numeric_columns, validate_rows
from cncwear.data.dataset import Dataset
from cncwear.data.feature_map import FeatureMap, FeatureStepsError
from cncwear.data.features import build_pipeline, selected_features
from cncwear.data.profile import build_profile
from cncwear.monitoring.window import Monitor, Reference, window_feature_map
from tests.helpers import window_config


@pytest.fixture(scope="module")
def rows(dataset: Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every 5th active row of experiments 1-12 to fit on, the others' rows to check on."""
    active = dataset.active().rows
    return active[active["experiment"] <= 12].iloc[::5], active[active["experiment"] > 12]


def fitted(
    rows: tuple[pd.DataFrame, pd.DataFrame],
    *,
    use_identifying_columns: bool,
    scaled: bool = False,
    keep_all: bool = False,
) -> Pipeline:
    train, _ = rows
    pipeline = build_pipeline(
        DecisionTreeClassifier(max_depth=5, random_state=0),
        use_identifying_columns=use_identifying_columns,
        seed=0,
    )
    if keep_all:  # every non-constant feature selected, the differences among them
        pipeline.set_params(select__cumulative=1.0, select__min_importance=0.0)
    if scaled:  # feature steps that are no longer picks and differences
        pipeline.steps.insert(-1, ("scale", StandardScaler().set_output(transform="pandas")))
    columns = input_columns(use_identifying_columns=use_identifying_columns)
    return pipeline.fit(train[columns], train["label"])


@pytest.mark.parametrize(
    ("use_identifying_columns", "keep_all"),
    [(False, False), (False, True), (True, True)],
    ids=["selected", "all_features", "all_features_and_settings"],
)
def test_the_feature_map_computes_the_pipeline_s_selected_features_exactly(
    rows: tuple[pd.DataFrame, pd.DataFrame], use_identifying_columns: bool, keep_all: bool
) -> None:
    pipeline = fitted(rows, use_identifying_columns=use_identifying_columns, keep_all=keep_all)
    columns = input_columns(use_identifying_columns=use_identifying_columns)
    held = validate_rows(rows[1][columns], columns)
    selected = selected_features(pipeline)
    expected = pipeline[:-1].transform(held)[selected].to_numpy()
    raw = held[numeric_columns(columns)].to_numpy(np.float64)
    for mapped in (FeatureMap.probe(pipeline, held), FeatureMap.probe(pipeline)):
        assert mapped.names == selected and mapped.unmapped == []
        assert mapped.raw_columns == numeric_columns(columns)
        if keep_all:
            assert np.any(mapped.has_minus) and not np.all(mapped.has_minus)
        assert np.array_equal(mapped.apply(raw), expected)
        assert np.array_equal(raw @ mapped.matrix, expected)


def test_feature_steps_other_than_picks_and_differences_are_refused(
    rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    pipeline = fitted(rows, use_identifying_columns=False, scaled=True)
    with pytest.raises(FeatureStepsError, match="column picks and differences"):
        FeatureMap.probe(pipeline)
    nothing = window_feature_map(pipeline)
    assert nothing.names == [] and nothing.unmapped == selected_features(pipeline)


def monitor_of(pipeline: Pipeline, rows: tuple[pd.DataFrame, pd.DataFrame]) -> Monitor:
    train, held = rows
    columns = [str(c) for c in pipeline.feature_names_in_]
    profile = build_profile(
        pipeline,
        train[columns],
        train["label"].to_numpy(),
        pipeline.predict_proba(held[columns])[:, 1],
        holdout_x=held[columns],
    )
    reference = Reference.from_profile("1", profile, {})
    return Monitor(
        reference,
        window_feature_map(pipeline),
        window_config(window_rows=500, min_rows=500, feedback_min_rows=200),
    )


def test_the_drift_window_monitors_exactly_the_selected_features(
    rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    pipeline = fitted(rows, use_identifying_columns=False)
    columns = input_columns(use_identifying_columns=False)
    monitor = monitor_of(pipeline, rows)
    served = rows[1].sample(n=500, random_state=0)
    monitor.observe(
        served[numeric_columns(columns)].to_numpy(np.float64),
        pipeline.predict_proba(served[columns])[:, 1],
    )
    report = monitor.report()
    assert report.enough_rows
    assert report.reference["features"] == selected_features(pipeline)
    assert report.reference["unmonitored_features"] == []
    assert [f.name for f in report.features] == selected_features(pipeline)
    window = monitor.window_features()
    engineered = pipeline[:-1].transform(served[columns])
    assert list(window) == selected_features(pipeline)
    for name, values in window.items():
        assert np.array_equal(values, engineered[name].to_numpy()), name


def test_a_window_on_feature_steps_it_cannot_map_monitors_nothing_and_says_so(
    rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    pipeline = fitted(rows, use_identifying_columns=False, scaled=True)
    columns = input_columns(use_identifying_columns=False)
    monitor = monitor_of(pipeline, rows)
    served = rows[1].sample(n=500, random_state=0)
    monitor.observe(
        served[numeric_columns(columns)].to_numpy(np.float64),
        pipeline.predict_proba(served[columns])[:, 1],
    )
    report = monitor.report()
    assert report.reference["features"] == [] and report.features == []
    assert report.reference["unmonitored_features"] == selected_features(pipeline)
    assert not report.drift_detected
