"""The one settings object of cncwear.

Every process (CLI, API, trainer) reads its configuration from environment variables prefixed
``CNCWEAR_``; services extend :class:`Settings` with their own fields so there is a single source of
truth for the shared ones (where data lives, which registry, which model name).
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_DATA_DIR = Path(__file__).parent / "datasets" / "cnc_mill_tool_wear"


class Budget(StrEnum):
    """How much search a retrain may spend: ``fast`` for tests and CI, ``full`` for production."""

    FAST = "fast"
    FULL = "full"


class AutoMLEngineName(StrEnum):
    FLAML = "flaml"
    AUTO_SKLEARN = "auto-sklearn"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CNCWEAR_", extra="ignore")

    home: Path = Path("var")
    """Data directory: the MLflow SQLite store, its artifacts and local state live below it."""

    data_dir: Path = BUNDLED_DATA_DIR
    """Training data in the bundled format: ``train.csv`` plus ``experiment_NN.csv[.xz|.gz]``."""

    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "CNCWEAR_MLFLOW_TRACKING_URI"),
    )
    """Any MLflow tracking URI; unset means a SQLite file under ``home``."""

    mlflow_experiment: str = "cncwear"
    """MLflow experiment that groups the retrain runs."""

    model_name: str = "cncwear"
    """Registered model name in the MLflow registry."""

    champion_alias: str = "champion"

    budget: Budget = Budget.FAST
    """Search budget of a retrain when none is given on the command line."""

    automl_engine: AutoMLEngineName = AutoMLEngineName.FLAML

    seed: int = 42
    """Seeds the holdout split, the searches and the models, so a retrain is repeatable."""

    holdout_fraction: float = Field(default=0.25, gt=0.0, lt=1.0)
    """Share of experiments of each class held out to compare candidates and decide promotion."""

    promotion_metric: str = "accuracy"
    """Holdout metric (row level) on which a challenger must beat the champion."""

    promotion_margin: float = Field(default=0.0, ge=0.0)
    """How much better than the champion a challenger must be to be promoted."""

    use_identifying_columns: bool = False
    """Feed the columns that identify an experiment (feedrate, clamp pressure, program and sequence
    numbers) to the model. Off by default: they let a model recognise experiments instead of wear,
    and grouped accuracy drops when they are used."""

    n_jobs: int = 2
    """Parallel fits during searches (processes); each fit itself uses one core."""

    leak_warning_margin: float = Field(default=0.05, ge=0.0)
    """Warn when the leaky row-split accuracy exceeds the grouped one by more than this."""

    def tracking_uri(self) -> str:
        """The MLflow tracking URI in force: the explicit one, else the embedded SQLite store."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.home.resolve() / 'mlflow.db'}"

    def artifact_location(self) -> str | None:
        """Where new MLflow experiments keep artifacts; ``None`` leaves it to the tracking server."""
        if self.mlflow_tracking_uri:
            return None
        return (self.home.resolve() / "artifacts").as_uri()


@lru_cache
def get_settings() -> Settings:
    return Settings()
