"""``incompatibility``: why a pipeline that loads fine cannot serve cncwear's rows, one reason for
each way a version registered by hand can differ, and none for a real cncwear pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from cncwear.core.schema import LABEL_COLUMN, METADATA_COLUMNS, input_columns
from cncwear.data.dataset import Dataset
from cncwear.data.features import build_pipeline
from cncwear.registry.store import incompatibility


@pytest.fixture(scope="module")
def rows(dataset: Dataset) -> pd.DataFrame:
    """Real rows of every experiment, with their labels."""
    return dataset.rows.groupby("experiment").sample(n=10, random_state=0)


def cncwear_pipeline(x: pd.DataFrame, y: np.ndarray) -> Pipeline:
    """A real cncwear pipeline (feature steps, selection, a small tree), fitted on ``x``."""
    classifier = DecisionTreeClassifier(max_depth=3, random_state=0)
    return build_pipeline(classifier, use_identifying_columns=False, seed=0).fit(x, y)


def test_a_real_cncwear_pipeline_is_compatible(rows: pd.DataFrame) -> None:
    x = rows[input_columns(use_identifying_columns=False)]
    assert incompatibility(cncwear_pipeline(x, rows[LABEL_COLUMN].to_numpy())) is None


def test_a_real_cncwear_pipeline_with_the_metadata_columns_is_compatible(
    rows: pd.DataFrame,
) -> None:
    x = rows[input_columns(use_identifying_columns=True)]
    assert incompatibility(cncwear_pipeline(x, rows[LABEL_COLUMN].to_numpy())) is None


def test_a_pipeline_fitted_on_an_array_is_refused(rows: pd.DataFrame) -> None:
    x = rows[input_columns(use_identifying_columns=False)].drop(columns="Machining_Process")
    unnamed = Pipeline([("model", DecisionTreeClassifier(max_depth=2))])
    unnamed.fit(x.to_numpy(), rows[LABEL_COLUMN].to_numpy())
    assert incompatibility(unnamed) == (
        "it does not name its input columns (fitted on an array, not on raw rows)"
    )


def test_a_pipeline_taking_columns_outside_the_schema_is_refused(rows: pd.DataFrame) -> None:
    x = rows[input_columns(use_identifying_columns=False)].assign(Spindle_Temperature=21.5)
    problem = incompatibility(cncwear_pipeline(x, rows[LABEL_COLUMN].to_numpy()))
    assert problem == "it takes columns the raw-row schema does not have: ['Spindle_Temperature']"


def test_a_pipeline_taking_no_sensor_reading_is_refused(rows: pd.DataFrame) -> None:
    settings_only = rows[list(METADATA_COLUMNS)]
    pipeline = Pipeline([("model", DecisionTreeClassifier(max_depth=2))])
    pipeline.fit(settings_only, rows[LABEL_COLUMN].to_numpy())
    assert incompatibility(pipeline) == "it takes none of the sensor readings"


def test_a_pipeline_with_other_classes_is_refused(rows: pd.DataFrame) -> None:
    x = rows[input_columns(use_identifying_columns=False)]
    three = np.arange(len(x)) % 3
    problem = incompatibility(cncwear_pipeline(x, three))
    assert problem == "its classes are [0, 1, 2], not [0, 1] (unworn, worn)"


def test_a_pipeline_with_text_classes_is_refused(rows: pd.DataFrame) -> None:
    x = rows[input_columns(use_identifying_columns=False)]
    named = np.where(rows[LABEL_COLUMN].to_numpy() == 1, "worn", "unworn")
    problem = incompatibility(cncwear_pipeline(x, named))
    assert problem is not None
    assert problem.startswith("its classes are [") and "unworn" in problem
    assert problem.endswith("], not [0, 1] (unworn, worn)")
