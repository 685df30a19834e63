"""Fixtures shared by every test package: the bundled data and isolated settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cncwear.core.choices import Budget
from cncwear.core.settings import BUNDLED_DATA_DIR, Settings
from cncwear.data.dataset import Dataset, load_dataset
from tests.helpers import emptied_redis

SUITE_AUTOML_ENGINE = "flaml"
"""The suite's retrains (and the CLI and workers they start) use FLAML: in process and in seconds.
tests/cncwear/test_automl.py asks for auto-sklearn where it tests it. Processes the tests start
with an environment of their own must pass it on too."""


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment() -> Iterator[None]:
    """No developer setting (CNCWEAR_*, MLFLOW_TRACKING_URI) leaks into the tests, and the suite's
    own choices hold for the whole session."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("CNCWEAR_") or key == "MLFLOW_TRACKING_URI":
                patch.delenv(key)
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        patch.setenv("CNCWEAR_AUTOML_ENGINE", SUITE_AUTOML_ENGINE)
        yield


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return load_dataset(BUNDLED_DATA_DIR)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a fresh embedded store (SQLite + local artifacts) in a temporary folder."""
    return Settings(home=tmp_path / "home", budget=Budget.FAST, n_jobs=1)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database for the test (``CNCWEAR_TEST_REDIS_URL``), emptied before and after."""
    with emptied_redis() as url:
        yield url
