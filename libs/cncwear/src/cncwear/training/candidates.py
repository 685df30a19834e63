"""The candidate models a retrain compares: a decision tree and a random forest tuned by randomized
search over the thesis grids, an AutoML candidate, and a baseline that knows only the class balance.

Every search uses grouped cross-validation inside the training experiments; held-out experiments are
never seen here (the caller passes only training rows).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from scipy.stats import randint
from sklearn.base import ClassifierMixin, clone
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import RandomizedSearchCV, StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from cncwear.core.choices import CandidateName
from cncwear.core.schema import EXPERIMENT_COLUMN
from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset
from cncwear.data.features import build_pipeline
from cncwear.training.automl.engines import AutoMLEngine
from cncwear.training.budget import SearchBudget


@dataclass(frozen=True)
class FitContext:
    budget: SearchBudget
    seed: int
    use_identifying_columns: bool
    n_jobs: int = 1

    @classmethod
    def from_settings(cls, settings: Settings, budget: SearchBudget) -> FitContext:
        return cls(
            budget=budget,
            seed=settings.seed,
            use_identifying_columns=settings.use_identifying_columns,
            n_jobs=settings.n_jobs,
        )


@dataclass
class FittedCandidate:
    name: str
    pipeline: Pipeline
    params: dict[str, Any]
    cv_accuracy: float | None
    """Mean grouped cross-validation accuracy of the chosen configuration (inside training)."""
    fit_seconds: float
    details: dict[str, Any] = field(default_factory=dict)


class Candidate(Protocol):
    name: str

    def fit(self, train: Dataset, context: FitContext) -> FittedCandidate: ...


DECISION_TREE_GRID: dict[str, Any] = {
    "max_depth": [*range(10, 111, 10), None],
    "max_features": ["sqrt", "log2", None],
    "min_samples_split": randint(2, 11),
    "min_samples_leaf": randint(1, 13),
    "criterion": ["gini", "entropy"],
}

RANDOM_FOREST_GRID: dict[str, Any] = {
    "n_estimators": [int(n) for n in np.linspace(200, 2000, 10)],
    "max_depth": [*range(10, 101, 10), None],
    "max_features": ["sqrt", None],
    "min_samples_split": randint(2, 9),
    "min_samples_leaf": randint(1, 9),
    "criterion": ["gini", "entropy"],
    "bootstrap": [True, False],
}


@dataclass
class SearchCandidate:
    """A scikit-learn estimator tuned by randomized search with grouped cross-validation."""

    name: str
    make_estimator: Callable[[int], ClassifierMixin]
    grid: dict[str, Any]
    iterations: Callable[[SearchBudget], int]
    adapt_grid: Callable[[dict[str, Any], SearchBudget], dict[str, Any]] = lambda g, _: g

    def fit(self, train: Dataset, context: FitContext) -> FittedCandidate:
        started = time.perf_counter()
        pipeline = build_pipeline(
            self.make_estimator(context.seed),
            use_identifying_columns=context.use_identifying_columns,
            seed=context.seed,
        )
        sample = thin_rows(train, context.budget.search_row_stride)
        grid = {f"model__{k}": v for k, v in self.adapt_grid(self.grid, context.budget).items()}
        with tempfile.TemporaryDirectory(prefix="cncwear-search-") as cache:
            # Feature steps do not depend on the model's hyperparameters: fit them once per fold.
            pipeline.set_params(memory=cache)
            search = RandomizedSearchCV(
                pipeline,
                grid,
                n_iter=self.iterations(context.budget),
                cv=grouped_folds(context.budget.cv_folds, context.seed),
                scoring="accuracy",
                refit=False,
                random_state=context.seed,
                n_jobs=context.n_jobs,
                error_score="raise",
            )
            search.fit(
                sample.features(use_identifying_columns=context.use_identifying_columns),
                sample.labels,
                groups=sample.groups,
            )
        best = search.best_params_
        final = clone(pipeline).set_params(memory=None, **best)
        fit_with_cores(
            final,
            train.features(use_identifying_columns=context.use_identifying_columns),
            train.labels,
            context.n_jobs,
        )
        return FittedCandidate(
            name=self.name,
            pipeline=final,
            params={k.removeprefix("model__"): v for k, v in best.items()},
            cv_accuracy=float(search.best_score_),
            fit_seconds=time.perf_counter() - started,
            details={"search_iterations": len(search.cv_results_["params"])},
        )


@dataclass
class AutoMLCandidate:
    """Lets an AutoML engine pick the estimator and its configuration on the engineered features,
    then refits that configuration inside the feature pipeline."""

    engine: AutoMLEngine
    name: str = CandidateName.AUTOML.value

    def fit(self, train: Dataset, context: FitContext) -> FittedCandidate:
        started = time.perf_counter()
        use_ids = context.use_identifying_columns
        features = build_pipeline(
            DummyClassifier(), use_identifying_columns=use_ids, seed=context.seed
        )[:-1]
        sample = thin_rows(train, context.budget.search_row_stride)
        engineered = features.fit_transform(
            sample.features(use_identifying_columns=use_ids), sample.labels
        )
        result = self.engine.search(
            engineered,
            sample.labels,
            sample.groups,
            budget=context.budget,
            seed=context.seed,
        )
        final = build_pipeline(result.estimator, use_identifying_columns=use_ids, seed=context.seed)
        fit_with_cores(
            final, train.features(use_identifying_columns=use_ids), train.labels, context.n_jobs
        )
        return FittedCandidate(
            name=self.name,
            pipeline=final,
            params={"engine": result.engine, **result.configuration},
            cv_accuracy=result.validation_accuracy,
            fit_seconds=time.perf_counter() - started,
            details={
                "engine": result.engine,
                "engine_version": result.engine_version,
                "configuration": result.configuration,
                "engine_validation_accuracy": result.validation_accuracy,
                **result.details,
            },
        )


@dataclass
class BaselineCandidate:
    """Predicts the training class balance for every row: the floor any real model must clear."""

    name: str = CandidateName.BASELINE.value

    def fit(self, train: Dataset, context: FitContext) -> FittedCandidate:
        started = time.perf_counter()
        pipeline = build_pipeline(
            DummyClassifier(strategy="prior"),
            use_identifying_columns=context.use_identifying_columns,
            seed=context.seed,
        )
        pipeline.fit(
            train.features(use_identifying_columns=context.use_identifying_columns), train.labels
        )
        return FittedCandidate(
            name=self.name,
            pipeline=pipeline,
            params={"strategy": "prior"},
            cv_accuracy=None,
            fit_seconds=time.perf_counter() - started,
        )


def decision_tree() -> SearchCandidate:
    return SearchCandidate(
        name=CandidateName.DECISION_TREE.value,
        make_estimator=lambda seed: DecisionTreeClassifier(random_state=seed),
        grid=DECISION_TREE_GRID,
        iterations=lambda budget: budget.tree_iterations,
    )


def random_forest() -> SearchCandidate:
    return SearchCandidate(
        name=CandidateName.RANDOM_FOREST.value,
        make_estimator=lambda seed: RandomForestClassifier(random_state=seed, n_jobs=1),
        grid=RANDOM_FOREST_GRID,
        iterations=lambda budget: budget.forest_iterations,
        adapt_grid=_cap_trees,
    )


def _cap_trees(grid: dict[str, Any], budget: SearchBudget) -> dict[str, Any]:
    if budget.max_trees is None:
        return grid
    capped = sorted({min(n, budget.max_trees) for n in grid["n_estimators"]})
    return {**grid, "n_estimators": capped}


def fit_with_cores(pipeline: Pipeline, x: pd.DataFrame, y: np.ndarray, n_jobs: int) -> Pipeline:
    """Fit with the estimator using ``n_jobs`` cores when it can, then set it back to one: a forest
    that predicts single rows with several workers pays their overhead on every request."""
    model = pipeline.named_steps["model"]
    if "n_jobs" not in model.get_params():
        return pipeline.fit(x, y)
    model.set_params(n_jobs=n_jobs)
    try:
        return pipeline.fit(x, y)
    finally:
        model.set_params(n_jobs=1)


def grouped_folds(folds: int, seed: int) -> StratifiedGroupKFold:
    """Folds of whole experiments with both classes in each, where the data allows."""
    return StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)


def thin_rows(dataset: Dataset, stride: int) -> Dataset:
    """Every ``stride``-th row of each experiment, for searches (see ``SearchBudget``)."""
    if stride <= 1:
        return dataset
    position = dataset.rows.groupby(EXPERIMENT_COLUMN).cumcount()
    return Dataset(rows=dataset.rows[position % stride == 0], content_hash=dataset.content_hash)
