"""The AutoML candidate's engines.

An engine searches model configurations on the engineered features of the training experiments,
within a time budget, with grouped cross-validation, and returns an *unfitted* scikit-learn
estimator with the configuration it found. The candidate then refits that estimator inside the one
feature pipeline, so whatever engine searched, the promoted model is a plain scikit-learn pipeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Protocol

import numpy as np
import pandas as pd
from flaml.automl import AutoML
from sklearn.base import ClassifierMixin, clone

from cncwear.errors import TrainingError
from cncwear.settings import AutoMLEngineName

logger = logging.getLogger(__name__)


@dataclass
class AutoMLResult:
    estimator: ClassifierMixin
    """Unfitted estimator carrying the best configuration found."""
    engine: str
    engine_version: str
    configuration: dict[str, Any]
    validation_accuracy: float | None
    """The engine's own grouped validation score of its best configuration."""
    details: dict[str, Any] = field(default_factory=dict)


class AutoMLEngine(Protocol):
    name: str

    def search(
        self,
        x: pd.DataFrame,
        y: np.ndarray,
        groups: np.ndarray,
        *,
        seconds: float,
        seed: int,
        cv_folds: int,
    ) -> AutoMLResult: ...


class FlamlEngine:
    """FLAML's AutoML in process, limited to estimators with the scikit-learn interface that skops
    serialises and tree SHAP explains: scikit-learn's forests and histogram gradient boosting, and
    LightGBM, which measured best on held-out experiments here (nested leave-one-experiment-out
    row accuracy 0.88 and 18 of 18 experiments with 20 s per fold)."""

    name = AutoMLEngineName.FLAML.value

    def __init__(
        self, estimators: tuple[str, ...] = ("lgbm", "rf", "extra_tree", "histgb")
    ) -> None:
        self.estimators = estimators

    def search(
        self,
        x: pd.DataFrame,
        y: np.ndarray,
        groups: np.ndarray,
        *,
        seconds: float,
        seed: int,
        cv_folds: int,
    ) -> AutoMLResult:
        automl = AutoML()  # type: ignore[no-untyped-call]
        automl.fit(
            X_train=x,
            y_train=y,
            task="classification",
            metric="accuracy",
            time_budget=seconds,
            eval_method="cv",
            split_type="group",
            groups=groups,
            n_splits=cv_folds,
            estimator_list=list(self.estimators),
            seed=seed,
            n_jobs=1,
            retrain_full=False,
            verbose=0,
            mlflow_logging=False,  # runs are logged by cncwear, once per candidate
        )
        if automl.model is None:
            raise TrainingError(f"FLAML found no model within {seconds:.0f} s")
        fitted = automl.model.estimator
        return AutoMLResult(
            estimator=clone(fitted),
            engine=self.name,
            engine_version=version("flaml"),
            configuration={"estimator": automl.best_estimator, **_plain(automl.best_config)},
            validation_accuracy=1.0 - float(automl.best_loss),
            details={"trials": len(automl.config_history)},
        )


def get_engine(name: AutoMLEngineName) -> AutoMLEngine:
    if name is AutoMLEngineName.FLAML:
        return FlamlEngine()
    raise TrainingError(f"AutoML engine {name.value!r} is not available in this installation")


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in config.items()}
