"""Fixtures shared by every test package: the bundled data and isolated settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from cncwear.dataset import Dataset, load_dataset
from cncwear.settings import BUNDLED_DATA_DIR, Budget, Settings


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return load_dataset(BUNDLED_DATA_DIR)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a fresh embedded store (SQLite + local artifacts) in a temporary folder."""
    return Settings(home=tmp_path / "home", budget=Budget.FAST, n_jobs=1)
