"""Drift statistics and the streaming monitor, on the real data where it matters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from cncwear.core.schema import input_columns, numeric_columns
from cncwear.data.dataset import Dataset
from cncwear.data.features import build_pipeline
from cncwear.data.profile import build_profile
from cncwear.monitoring.drift import DriftTest, choose_test, compare, psi
from cncwear.monitoring.window import (
    Monitor,
    RecentPredictions,
    Reference,
    RingBuffer,
    SustainedCondition,
    classification_metrics,
    window_feature_map,
)
from tests.helpers import window_config


def test_the_test_is_chosen_by_reference_size_as_evidently_does() -> None:
    assert choose_test(1000) is DriftTest.KS
    assert choose_test(1001) is DriftTest.WASSERSTEIN


def test_psi_is_near_zero_for_one_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=5000)
    assert psi(reference, rng.normal(size=2000)) < 0.02
    assert psi(reference, rng.normal(loc=1.0, size=2000)) > 0.25


@pytest.mark.parametrize("reference_size", [800, 3000])
def test_compare_flags_a_shift_and_not_a_fresh_sample(reference_size: int) -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=reference_size)
    same = compare("x", reference, rng.normal(size=1000))
    moved = compare("x", reference, rng.normal(loc=0.5, size=1000))
    assert same.test is choose_test(reference_size) and moved.test is same.test
    assert not same.drifted and moved.drifted
    assert moved.current_mean == pytest.approx(0.5, abs=0.1)


def test_a_ring_buffer_keeps_the_last_rows_in_fixed_memory() -> None:
    ring = RingBuffer(5, 2, 1)
    for value in range(7):
        ring.extend(np.array([[value, -value]], dtype=float), np.array([value * 10.0]))
    pairs, tens = ring.values()
    assert sorted(pairs[:, 0]) == [2, 3, 4, 5, 6] and sorted(tens[:, 0]) == [20, 30, 40, 50, 60]
    assert np.array_equal(pairs[:, 1], -pairs[:, 0]) and np.array_equal(
        tens[:, 0], pairs[:, 0] * 10
    )
    ring.extend(np.arange(10, 13, dtype=float)[:, None].repeat(2, axis=1), np.arange(3.0))
    assert sorted(ring.values()[0][:, 0]) == [5, 6, 10, 11, 12]
    ring.extend(np.arange(100, 120, dtype=float)[:, None].repeat(2, axis=1), np.zeros(20))
    assert sorted(ring.values()[0][:, 0]) == [115, 116, 117, 118, 119]
    assert ring.size == 5 and ring.total == 30


def test_recent_predictions_are_bounded_by_rows_and_taken_once() -> None:
    recent = RecentPredictions(max_rows=10)
    recent.remember("a", "1", np.ones(6, dtype=bool))
    recent.remember("b", "1", np.zeros(4, dtype=bool))
    recent.remember("c", "1", np.zeros(3, dtype=bool))  # 13 rows: "a" goes
    assert recent.peek("a") is None
    found = recent.take("b")
    assert found is not None and found[0] == "1" and len(found[1]) == 4
    assert recent.take("b") is None


def test_a_condition_fires_only_after_holding_for_its_period() -> None:
    condition = SustainedCondition(seconds=10)
    assert not condition.update(True, now=0)
    assert not condition.update(True, now=9)
    assert condition.update(True, now=10)
    condition.restart(now=10)
    assert not condition.update(True, now=15)
    assert not condition.update(False, now=30)
    assert not condition.update(True, now=31)


def test_classification_metrics_of_the_worn_class() -> None:
    predicted = np.array([1, 1, 0, 0], dtype=bool)
    actual = np.array([1, 0, 1, 0], dtype=bool)
    assert classification_metrics(predicted, actual) == {
        "accuracy": 0.5,
        "precision": 0.5,
        "recall": 0.5,
    }


@pytest.fixture(scope="module")
def fitted(dataset: Dataset) -> tuple[object, pd.DataFrame, pd.DataFrame]:
    rows = dataset.active().rows
    train = rows[rows["experiment"] <= 12]
    held = rows[rows["experiment"] > 12]
    pipeline = build_pipeline(
        DecisionTreeClassifier(max_depth=5, random_state=0), use_identifying_columns=False, seed=0
    )
    columns = input_columns(use_identifying_columns=False)
    pipeline.fit(train[columns], train["label"])
    return pipeline, train, held


def test_the_monitor_compares_traffic_with_the_held_out_rows_of_the_profile(
    fitted: tuple[object, pd.DataFrame, pd.DataFrame],
) -> None:
    pipeline, train, held = fitted
    columns = input_columns(use_identifying_columns=False)
    probability = pipeline.predict_proba(held[columns])[:, 1]  # type: ignore[attr-defined]
    profile = build_profile(
        pipeline,  # type: ignore[arg-type]
        train[columns],
        train["label"].to_numpy(),
        probability,
        holdout_x=held[columns],
    )
    reference = Reference.from_profile("7", profile, {"accuracy": 0.9, "f1": 0.8})
    assert reference.source == "holdout_sample" and reference.holdout == {"accuracy": 0.9}
    selected = list(profile["holdout_sample"])
    monitor = Monitor(
        reference,
        window_feature_map(pipeline),  # type: ignore[arg-type]
        window_config(window_rows=1000, min_rows=500, feedback_min_rows=10),
    )
    assert not monitor.report().enough_rows
    shuffled = held.sample(n=1000, random_state=3)
    numeric = shuffled[numeric_columns(columns)].to_numpy(np.float64)
    served = pipeline.predict_proba(shuffled[columns])[:, 1]  # type: ignore[attr-defined]
    monitor.observe(numeric[:400], served[:400])
    assert not monitor.report().enough_rows
    monitor.observe(numeric[400:], served[400:])
    report = monitor.report()
    assert report.enough_rows and report.window_rows == 1000
    assert report.reference["features"] == selected
    assert not report.drift_detected, [f.as_dict() for f in report.features]
    assert report.prediction is not None and not report.prediction.drifted

    monitor.add_feedback(np.ones(20, dtype=bool), np.arange(20) < 15)
    performance = monitor.report().performance
    assert performance.metrics["accuracy"] == 0.75
    assert performance.difference["accuracy"] == pytest.approx(0.75 - 0.9)
