"""Drift against the variation between normal runs (``cncwear.data.drift_null``): a normal run that
differs from the others as runs do passes; a gain, a shifted tool path, a frozen sensor and a unit
error do not. Synthetic runs of one program: each follows the same tool path for part of its
length, at its own feed (its own level of current)."""

from __future__ import annotations

import numpy as np
import pytest

from cncwear.data.drift_null import (
    MARGINS,
    NullReference,
    NullReferenceError,
    build_null_reference,
    build_prediction_null,
)

NAMES = ["X1_ActualPosition", "Y1_ActualPosition", "Z1_ActualPosition", "X1_OutputCurrent"]
QUANTILE = 1.0


def run(rng: np.random.Generator, rows: int = 600) -> np.ndarray:
    """One run: a stretch of the tool path (a helix, from the start), noise, and a current whose
    level depends on the run's feed."""
    t = np.linspace(0.0, rng.uniform(0.5, 1.0) * 4 * np.pi, rows)
    feed = rng.uniform(0.8, 1.2)
    return np.column_stack(
        [
            50 * np.cos(t) + rng.normal(0, 0.2, rows),
            50 * np.sin(t) + rng.normal(0, 0.2, rows),
            -t + rng.normal(0, 0.05, rows),
            300 * feed + rng.normal(0, 5, rows),
        ]
    )


@pytest.fixture(scope="module")
def reference() -> NullReference:
    rng = np.random.default_rng(0)
    runs = [run(rng) for _ in range(12)]
    groups = np.repeat(np.arange(12), [len(r) for r in runs])
    return build_null_reference(np.vstack(runs), groups, NAMES, sample_size=2000, seed=0)


@pytest.fixture
def new_run() -> np.ndarray:
    return run(np.random.default_rng(99))


def judge(reference: NullReference, rows: np.ndarray) -> set[tuple[str, str]]:
    margin = reference.choose_margin(QUANTILE)
    verdict = reference.judge(rows, quantile=QUANTILE, margin=margin)
    return {(c.name, c.check) for c in verdict.drifted_checks}


def test_the_null_has_one_value_per_left_out_run_and_check(reference: NullReference) -> None:
    assert reference.runs == 12
    assert reference.null["shape"].shape == (12, len(NAMES))
    assert reference.null["spread"].shape == (12, len(NAMES))
    assert len(reference.toolpath_null) == 12
    assert reference.toolpath_columns == NAMES[:3]


def test_a_new_normal_run_is_within_every_band(
    reference: NullReference, new_run: np.ndarray
) -> None:
    assert judge(reference, new_run) == set()


def test_a_current_gain_is_beyond_the_band_of_its_column(
    reference: NullReference, new_run: np.ndarray
) -> None:
    new_run[:, 3] *= 2.0
    assert ("X1_OutputCurrent", "shape") in judge(reference, new_run)


def test_a_shifted_work_offset_leaves_the_tool_path(
    reference: NullReference, new_run: np.ndarray
) -> None:
    new_run[:, 0] += 5.0
    assert ("toolpath", "toolpath") in judge(reference, new_run)


def test_a_frozen_sensor_is_stuck_where_no_normal_run_was(
    reference: NullReference, new_run: np.ndarray
) -> None:
    new_run[:, 3] = new_run[0, 3]
    assert ("X1_OutputCurrent", "stuck") in judge(reference, new_run)


def test_a_unit_error_widens_its_column_beyond_the_band(
    reference: NullReference, new_run: np.ndarray
) -> None:
    new_run[:, 3] = (new_run[:, 3] - 300) * 10 + 300
    assert ("X1_OutputCurrent", "spread") in judge(reference, new_run)


def test_a_column_constant_in_a_normal_run_is_not_stuck_when_constant_again() -> None:
    rng = np.random.default_rng(1)
    runs = [run(rng) for _ in range(8)]
    runs[3][:, 3] = 310.0  # a normal run whose reading did not move
    groups = np.repeat(np.arange(8), [len(r) for r in runs])
    reference = build_null_reference(np.vstack(runs), groups, NAMES, seed=0)
    frozen = run(rng)
    frozen[:, 3] = 305.0
    assert ("X1_OutputCurrent", "stuck") not in judge(reference, frozen)


def test_the_margin_is_the_smallest_under_which_no_training_run_is_drifted(
    reference: NullReference,
) -> None:
    margin = reference.choose_margin(QUANTILE)
    assert reference.inner_alarms(QUANTILE, margin) == []
    smaller = [m for m in MARGINS if m < margin]
    assert all(reference.inner_alarms(QUANTILE, m) for m in smaller)


def test_with_few_runs_their_halves_are_left_out_too() -> None:
    rng = np.random.default_rng(2)
    runs = [run(rng) for _ in range(3)]
    groups = np.repeat(np.arange(3), [len(r) for r in runs])
    reference = build_null_reference(np.vstack(runs), groups, NAMES, seed=0)
    assert reference.null["shape"].shape[0] == 3 * 3  # each run, and its two halves
    assert sorted(reference.part_runs.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_a_null_needs_two_runs() -> None:
    rows = run(np.random.default_rng(3))
    with pytest.raises(NullReferenceError, match="two runs"):
        build_null_reference(rows, np.zeros(len(rows)), NAMES)


def test_the_reference_survives_the_profile_round_trip(
    reference: NullReference, new_run: np.ndarray
) -> None:
    again = NullReference.from_profile(reference.as_profile())
    margin = reference.choose_margin(QUANTILE)
    assert again.choose_margin(QUANTILE) == margin
    first = reference.judge(new_run, quantile=QUANTILE, margin=margin).checks
    second = again.judge(new_run, quantile=QUANTILE, margin=margin).checks
    assert [(c.name, c.check, c.statistic, c.threshold) for c in first] == [
        (c.name, c.check, c.statistic, c.threshold) for c in second
    ]


def test_prediction_drift_is_judged_against_how_held_out_runs_differ() -> None:
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(4), 300)
    probability = np.clip(rng.normal(0.3, 0.1, 1200) + 0.05 * groups, 0, 1)
    null = build_prediction_null(probability, groups)
    assert len(null.null) == 4 * 3  # few runs: halves too
    normal = np.clip(rng.normal(0.4, 0.1, 300), 0, 1)
    assert not null.judge(normal, quantile=1.0, margin=1.5).drifted
    assert null.judge(np.full(300, 0.95), quantile=1.0, margin=1.5).drifted
