"""The AutoML candidate's engines.

An engine searches model configurations on the engineered features of the training experiments,
within its share of the search budget (FLAML a number of trials, auto-sklearn a time), with
grouped cross-validation, and returns an *unfitted* scikit-learn estimator with the configuration
it found. The candidate then refits that estimator inside the one feature pipeline, so whatever
engine searched, the promoted model is a plain scikit-learn pipeline.

Two engines: FLAML in process, and auto-sklearn 0.15.0 in its Python 3.9 sidecar, whose best
configuration is rebuilt as a modern scikit-learn estimator
(:mod:`cncwear.training.automl.rebuild`). The setting ``CNCWEAR_AUTOML_ENGINE`` chooses (FLAML by
default); ``auto`` takes auto-sklearn when the sidecar is installed and falls back to FLAML with one
warning when it is not.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from flaml.automl import AutoML
from sklearn.base import ClassifierMixin, clone
from sklearn.model_selection import StratifiedGroupKFold

from cncwear.core.choices import AutoMLEngineName
from cncwear.core.errors import (
    AutoSklearnError,
    SidecarUnavailableError,
    TrainingError,
    UnsupportedConfigurationError,
)
from cncwear.core.settings import Settings, get_settings
from cncwear.training.automl.rebuild import SEARCH_SPACE, rebuild
from cncwear.training.automl.sidecar_process import (
    AUTOSKLEARN_VERSION,
    find_sidecar,
    run_sidecar,
)
from cncwear.training.budget import SearchBudget

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
        budget: SearchBudget,
        seed: int,
    ) -> AutoMLResult: ...


class FlamlEngine:
    """FLAML's AutoML in process, bounded by a number of trials so that the same data and seed
    give the same model on any machine.

    Repeatable needs two things of FLAML: no time budget (it steers its search by the time left)
    and learners taken in turn (its default chooses the next learner by measured training times).
    Taken in turn, every learner gets an equal share of the trials, so the default list holds only
    LightGBM, which alone did better than sharing its trials with forests (``docs/automl.md``,
    "FLAML: a number of trials"); the random forest is a candidate of its own. Any learners with
    the scikit-learn interface that skops serialises and tree SHAP explains may be listed instead.
    """

    name = AutoMLEngineName.FLAML.value

    def __init__(self, estimators: tuple[str, ...] = ("lgbm",), n_jobs: int = 1) -> None:
        self.estimators = estimators
        self.n_jobs = n_jobs
        """Threads each trial trains with."""

    def search(
        self,
        x: pd.DataFrame,
        y: np.ndarray,
        groups: np.ndarray,
        *,
        budget: SearchBudget,
        seed: int,
    ) -> AutoMLResult:
        automl = AutoML()  # type: ignore[no-untyped-call]
        automl.fit(
            X_train=x,
            y_train=y,
            task="classification",
            metric="accuracy",
            time_budget=-1,
            max_iter=budget.flaml_iterations,
            learner_selector="roundrobin",
            eval_method="cv",
            split_type="group",
            groups=groups,
            n_splits=budget.cv_folds,
            estimator_list=list(self.estimators),
            seed=seed,
            n_jobs=self.n_jobs,
            retrain_full=False,
            verbose=0,
            mlflow_logging=False,  # runs are logged by cncwear, once per candidate
        )
        if automl.model is None:
            raise TrainingError(f"FLAML found no model in {budget.flaml_iterations} trials")
        fitted = automl.model.estimator
        return AutoMLResult(
            estimator=clone(fitted),
            engine=self.name,
            engine_version=version("flaml"),
            configuration={"estimator": automl.best_estimator, **_plain(automl.best_config)},
            validation_accuracy=1.0 - float(automl.best_loss),
            details={
                "trials": int(automl.modelcount),
                # Trials that improved on the best so far; the last of them near the budget says a
                # longer search might have found better.
                "improvements": sorted(int(trial) for trial in automl.config_history),
                "seconds_to_best": float(automl.time_to_find_best_model),
            },
        )


MIN_SECONDS = 30.0
"""auto-sklearn's smallest useful budget: below it, start-up leaves SMAC no time to evaluate."""
MIN_RUN_SECONDS = 15.0
"""Smallest time limit of one evaluation (one configuration on all folds; half the budget above
it). auto-sklearn's forests and boosting grow to 512 trees or iterations, slow on a busy machine."""

REBUILD_WARNING_MARGIN = 0.05
"""Warn when the rebuilt estimator's accuracy on auto-sklearn's folds differs from auto-sklearn's
own by more than this."""


class AutoSklearnEngine:
    """auto-sklearn 0.15.0 in its Python 3.9 sidecar (a subprocess): SMAC search on the same
    grouped folds as the other candidates, within the budget, over the components that
    :func:`~cncwear.training.automl.rebuild.rebuild` reproduces; its best single configuration
    comes back as JSON and is rebuilt as a modern scikit-learn estimator.

    Besides auto-sklearn's own validation score, the result carries the rebuilt estimator's
    accuracy on the same folds (``rebuilt_cv_accuracy``): the check that the rebuild is faithful.
    """

    name = AutoMLEngineName.AUTO_SKLEARN.value

    def __init__(
        self,
        python: Path,
        *,
        metalearning: bool,
        memory_limit_mb: int,
        n_jobs: int,
        timeout_grace_seconds: float,
        version: str = AUTOSKLEARN_VERSION,
        include: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.python = python
        self.version = version
        self.metalearning = metalearning
        self.memory_limit_mb = memory_limit_mb
        self.n_jobs = n_jobs
        self.timeout_grace_seconds = timeout_grace_seconds
        self.include = dict(include or SEARCH_SPACE)

    @classmethod
    def from_settings(cls, settings: Settings) -> AutoSklearnEngine:
        """The engine on the configured sidecar, with the settings' figures (their defaults live
        there); raises :class:`~cncwear.training.automl.sidecar_process.SidecarUnavailableError`
        when there is none."""
        sidecar = find_sidecar(settings.autosklearn_python)
        return cls(
            sidecar.python,
            version=sidecar.autosklearn_version,
            metalearning=settings.autosklearn_metalearning,
            memory_limit_mb=settings.autosklearn_memory_limit_mb,
            n_jobs=settings.n_jobs,
            timeout_grace_seconds=settings.autosklearn_timeout_grace_seconds,
        )

    def search(
        self,
        x: pd.DataFrame,
        y: np.ndarray,
        groups: np.ndarray,
        *,
        budget: SearchBudget,
        seed: int,
    ) -> AutoMLResult:
        values = np.asarray(x, dtype=np.float64)
        if not np.isfinite(values).all():
            raise AutoSklearnError("the engineered features hold NaN or infinite values")
        labels = np.asarray(y).astype(np.int64)
        test_fold = grouped_test_folds(labels, np.asarray(groups), budget.cv_folds, seed)
        seconds = max(float(budget.autosklearn_seconds), MIN_SECONDS)
        if seconds > budget.autosklearn_seconds:
            logger.info("auto-sklearn gets %.0f s, its smallest useful budget", seconds)
        response = run_sidecar(
            self.python,
            {
                "mode": "search",
                "seconds": int(seconds),
                "per_run_seconds": int(max(MIN_RUN_SECONDS, seconds / 2)),
                "seed": seed,
                "metalearning": self.metalearning,
                "memory_limit_mb": self.memory_limit_mb,
                "n_jobs": self.n_jobs,
                "include": self.include,
            },
            {"x": values, "y": labels, "test_fold": test_fold},
            timeout=seconds + self.timeout_grace_seconds,
        )
        try:
            configuration = dict(response["configuration"])
            width = int(response["classifier_input_width"])
            validation_accuracy = float(response["validation_accuracy"])
        except (KeyError, TypeError, ValueError) as error:
            raise AutoSklearnError(f"the sidecar's answer lacks {error}") from error
        try:
            estimator = rebuild(configuration, classifier_input_width=width, seed=seed)
        except UnsupportedConfigurationError as error:
            raise UnsupportedConfigurationError(
                f"auto-sklearn's best configuration cannot be rebuilt: {error}"
            ) from error
        rebuilt_accuracy = pooled_cv_accuracy(estimator, x, labels, test_fold)
        if abs(rebuilt_accuracy - validation_accuracy) > REBUILD_WARNING_MARGIN:
            logger.warning(
                "the rebuilt %s scores %.3f on auto-sklearn's folds where auto-sklearn measured "
                "%.3f: scikit-learn changed since 0.24 for this configuration",
                type(estimator).__name__,
                rebuilt_accuracy,
                validation_accuracy,
            )
        return AutoMLResult(
            estimator=estimator,
            engine=self.name,
            engine_version=str(response.get("autosklearn", self.version)),
            configuration=configuration,
            validation_accuracy=validation_accuracy,
            details={
                "rebuilt_estimator": str(estimator),
                "rebuilt_cv_accuracy": rebuilt_accuracy,
                "budget_seconds": seconds,
                "metalearning": self.metalearning,
                "trials": response.get("trials"),
                "successful_trials": response.get("successful_trials"),
                "statuses": response.get("statuses"),
                "leaderboard": response.get("leaderboard"),
                "sidecar_python": response.get("python"),
                "sidecar_sklearn": response.get("sklearn"),
                "sidecar_seconds": response.get("wall_seconds"),
            },
        )


def grouped_test_folds(y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number of each row: whole experiments per fold, both classes in each where the data
    allows (the folds of ``cncwear.training.candidates.grouped_folds``), as a ``PredefinedSplit``
    takes them, which the sidecar's scikit-learn 0.24 has (it lacks StratifiedGroupKFold)."""
    test_fold = np.full(len(y), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
        test_fold[test] = fold
    return test_fold


def pooled_cv_accuracy(
    estimator: ClassifierMixin, x: pd.DataFrame, y: np.ndarray, test_fold: np.ndarray
) -> float:
    """Accuracy over all rows of the folds' predictions, as auto-sklearn weighs its folds."""
    right = 0
    for fold in np.unique(test_fold[test_fold >= 0]):
        test = test_fold == fold
        model = clone(estimator).fit(x[~test], y[~test])
        right += int((np.asarray(model.predict(x[test])) == y[test]).sum())
    return right / int((test_fold >= 0).sum())


_fallback_warned: set[str] = set()


def get_engine(name: AutoMLEngineName, settings: Settings | None = None) -> AutoMLEngine:
    """The engine called ``name``. ``auto`` is auto-sklearn when its sidecar is available, else
    FLAML after one warning per process; an explicit ``auto-sklearn`` without a sidecar raises
    :class:`~cncwear.training.automl.sidecar_process.SidecarUnavailableError`, which says how to
    install it."""
    settings = settings or get_settings()
    if name is AutoMLEngineName.FLAML:
        return FlamlEngine(n_jobs=settings.n_jobs)
    if name is AutoMLEngineName.AUTO_SKLEARN:
        return AutoSklearnEngine.from_settings(settings)
    try:
        return AutoSklearnEngine.from_settings(settings)
    except SidecarUnavailableError as error:
        if str(error) not in _fallback_warned:
            _fallback_warned.add(str(error))
            logger.warning("AutoML engine: flaml, not auto-sklearn: %s", error)
        return FlamlEngine(n_jobs=settings.n_jobs)


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in config.items()}
