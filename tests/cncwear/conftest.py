"""A champion trained once by the real CLI, shared by the tests that only read the registry; and the
trained registry of tests/api (trained once per session, whichever package asks first), for tests
that move aliases on copies of its versions."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cncwear.core.choices import Budget
from cncwear.core.settings import Settings
from tests.api.conftest import registry  # noqa: F401  (fixture shared with tests/api)

CLI = Path(sys.executable).parent / "cncwear"


@dataclass(frozen=True)
class TrainedHome:
    settings: Settings
    output: str


def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CNCWEAR_HOME": str(home), "CNCWEAR_N_JOBS": "1", "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=900, check=False
    )


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> TrainedHome:
    """``cncwear train --budget fast`` on an empty store, as a new user would run it."""
    home = tmp_path_factory.mktemp("trained") / "home"
    result = run_cli(home, "train", "--budget", "fast")
    assert result.returncode == 0, result.stderr
    return TrainedHome(
        settings=Settings(home=home, budget=Budget.FAST, n_jobs=1), output=result.stderr
    )
