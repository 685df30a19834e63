"""AutoML engines: FLAML in process, auto-sklearn 0.15.0 in its Python 3.9 sidecar, chosen by a
setting; what auto-sklearn finds is rebuilt as a modern scikit-learn estimator.

The sidecar is real (CI builds it with scripts/setup-autosklearn.sh): searches, fits and crashes run
in real subprocesses. Outside CI, a machine without it skips the tests that need it, saying so.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.base import is_classifier
from sklearn.decomposition import PCA
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import PolynomialFeatures, QuantileTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier

import cncwear.training.budget
from cncwear.core.choices import AutoMLEngineName, Budget
from cncwear.core.errors import (
    AutoSklearnError,
    SidecarUnavailableError,
    UnsupportedConfigurationError,
)
from cncwear.core.settings import Settings, get_settings
from cncwear.data.dataset import Dataset
from cncwear.data.features import build_pipeline
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import Tag
from cncwear.training.automl.engines import (
    AutoSklearnEngine,
    FlamlEngine,
    get_engine,
    grouped_test_folds,
)
from cncwear.training.automl.rebuild import CLASSIFIERS, SEARCH_SPACE, rebuild
from cncwear.training.automl.sidecar_process import (
    Sidecar,
    find_sidecar,
    run_sidecar,
    session_processes,
)
from cncwear.training.candidates import grouped_folds, thin_rows
from cncwear.training.evaluation import holdout_split
from cncwear.training.retrain import retrain

REPO = Path(__file__).resolve().parents[2]

C = "classifier:__choice__"
P = "feature_preprocessor:__choice__"
R = "data_preprocessor:feature_type:numerical_transformer:rescaling:__choice__"
B = "balancing:strategy"
IMPUTATION = "data_preprocessor:feature_type:numerical_transformer:imputation:strategy"


@pytest.fixture(scope="session")
def sidecar() -> Sidecar:
    """The auto-sklearn sidecar of this checkout. CI builds it, so there a missing one fails."""
    try:
        return find_sidecar(None)
    except SidecarUnavailableError as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI builds the auto-sklearn sidecar, yet: {error}")
        pytest.skip(f"no auto-sklearn sidecar: {error}")


@dataclass(frozen=True)
class Engineered:
    """Engineered features of the training experiments (thinned as for a search), and of the
    held-out experiments."""

    x: pd.DataFrame
    y: np.ndarray
    groups: np.ndarray
    x_holdout: pd.DataFrame


@pytest.fixture(scope="session")
def engineered(dataset: Dataset) -> Engineered:
    active = dataset.active()
    split = holdout_split(active, 0.25, 42)
    train = thin_rows(active.subset(split.train_experiments), 16)
    holdout = thin_rows(active.subset(split.holdout_experiments), 8)
    features = build_pipeline(DummyClassifier(), use_identifying_columns=False, seed=42)[:-1]
    x = features.fit_transform(train.features(use_identifying_columns=False), train.labels)
    return Engineered(
        x=x,
        y=np.asarray(train.labels),
        groups=np.asarray(train.groups),
        x_holdout=features.transform(holdout.features(use_identifying_columns=False)),
    )


Configure = Callable[..., Settings]


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Configure]:
    """Settings from the environment, as a process of cncwear reads them: ``configure(
    automl_engine="auto-sklearn", autosklearn_python=...)`` sets ``CNCWEAR_*`` variables and
    returns the settings of a fresh store."""

    def apply(**variables: Any) -> Settings:
        monkeypatch.setenv("CNCWEAR_N_JOBS", "1")
        for name, value in variables.items():
            monkeypatch.setenv(f"CNCWEAR_{name.upper()}", str(value))
        get_settings.cache_clear()
        return Settings(home=tmp_path / "home", budget=Budget.FAST, n_jobs=1)

    yield apply
    get_settings.cache_clear()


def fake_sidecar(folder: Path, sidecar: Sidecar, job: str) -> Path:
    """A sidecar Python that answers cncwear's probe with the real interpreter, then does ``job``
    (shell) instead of the run: ``$3`` is the response file."""
    script = folder / "python"
    script.write_text(
        f'#!/bin/sh\nif [ "$1" = "-c" ]; then exec "{sidecar.python}" "$@"; fi\n{job}\n'
    )
    script.chmod(0o755)
    return script


def base_configuration(*parts: dict[str, Any]) -> dict[str, Any]:
    """An auto-sklearn configuration: no rescaling or preprocessing unless ``parts`` (merged in
    order) say otherwise."""
    configuration = {
        "data_preprocessor:__choice__": "feature_type",
        IMPUTATION: "mean",
        R: "none",
        P: "no_preprocessing",
        B: "none",
    }
    for part in parts:
        configuration.update(part)
    return configuration


RANDOM_FOREST = {
    C: "random_forest",
    "classifier:random_forest:bootstrap": "True",
    "classifier:random_forest:criterion": "gini",
    "classifier:random_forest:max_depth": "None",
    "classifier:random_forest:max_features": 0.5,
    "classifier:random_forest:max_leaf_nodes": "None",
    "classifier:random_forest:min_impurity_decrease": 0.0,
    "classifier:random_forest:min_samples_leaf": 3,
    "classifier:random_forest:min_samples_split": 4,
    "classifier:random_forest:min_weight_fraction_leaf": 0.0,
}


# -- the rebuild -----------------------------------------------------------------------------------


def test_gradient_boosting_becomes_hist_gradient_boosting_with_auto_sklearns_settings() -> None:
    model = rebuild(
        base_configuration(
            {
                C: "gradient_boosting",
                B: "weighting",
                "classifier:gradient_boosting:early_stop": "valid",
                "classifier:gradient_boosting:l2_regularization": 0.003,
                "classifier:gradient_boosting:learning_rate": 0.2,
                "classifier:gradient_boosting:loss": "auto",
                "classifier:gradient_boosting:max_bins": 255,
                "classifier:gradient_boosting:max_depth": "None",
                "classifier:gradient_boosting:max_leaf_nodes": 40,
                "classifier:gradient_boosting:min_samples_leaf": 7,
                "classifier:gradient_boosting:n_iter_no_change": 5,
                "classifier:gradient_boosting:scoring": "loss",
                "classifier:gradient_boosting:tol": 1e-07,
                "classifier:gradient_boosting:validation_fraction": 0.2,
            }
        ),
        classifier_input_width=16,
        seed=7,
    )
    assert isinstance(model, HistGradientBoostingClassifier)
    expected = {
        "loss": "log_loss",
        "max_iter": 512,
        "learning_rate": 0.2,
        "max_leaf_nodes": 40,
        "min_samples_leaf": 7,
        "l2_regularization": 0.003,
        "early_stopping": True,
        "n_iter_no_change": 5,
        "validation_fraction": 0.2,
        "class_weight": "balanced",
        "random_state": 7,
    }
    params = model.get_params()
    assert {name: params[name] for name in expected} == expected


def test_forests_draw_as_many_features_as_auto_sklearn_and_keep_its_preprocessing() -> None:
    # auto-sklearn's forests draw int(width ** max_features) features: 16 ** 0.5 = 4 of 16.
    forest = rebuild(base_configuration(RANDOM_FOREST), classifier_input_width=16, seed=1)
    assert isinstance(forest, RandomForestClassifier)
    assert forest.n_estimators == 512 and int(forest.max_features * 16) == 4
    assert forest.min_samples_leaf == 3 and forest.bootstrap is True

    extra = {k.replace("random_forest", "extra_trees"): v for k, v in RANDOM_FOREST.items()}
    extra[C] = "extra_trees"
    model = rebuild(
        base_configuration(
            extra,
            {
                R: "standardize",
                P: "pca",
                "feature_preprocessor:pca:keep_variance": 0.9,
                "feature_preprocessor:pca:whiten": "True",
            },
        ),
        classifier_input_width=5,
        seed=1,
    )
    assert isinstance(model, Pipeline)
    assert [name for name, _ in model.steps] == ["rescaling", "preprocessor", "classifier"]
    rescaling, pca, trees = (step for _, step in model.steps)
    assert isinstance(rescaling, StandardScaler) and isinstance(trees, ExtraTreesClassifier)
    assert isinstance(pca, PCA) and pca.n_components == 0.9 and pca.whiten is True
    assert int(trees.max_features * 5) == int(5**0.5)


def test_the_tree_and_neighbours_keep_auto_sklearns_quirks() -> None:
    tree = rebuild(
        base_configuration(
            {
                C: "decision_tree",
                P: "polynomial",
                "feature_preprocessor:polynomial:degree": 2,
                "feature_preprocessor:polynomial:interaction_only": "True",
                "feature_preprocessor:polynomial:include_bias": "False",
                "classifier:decision_tree:criterion": "entropy",
                "classifier:decision_tree:max_depth_factor": 1.7,
                "classifier:decision_tree:max_features": 1.0,
                "classifier:decision_tree:max_leaf_nodes": "None",
                "classifier:decision_tree:min_impurity_decrease": 0.0,
                "classifier:decision_tree:min_samples_leaf": 2,
                "classifier:decision_tree:min_samples_split": 5,
                "classifier:decision_tree:min_weight_fraction_leaf": 0.0,
            }
        ),
        classifier_input_width=120,
        seed=3,
    )
    assert isinstance(tree, Pipeline)
    polynomial, classifier = tree.named_steps["preprocessor"], tree.named_steps["classifier"]
    assert isinstance(polynomial, PolynomialFeatures) and polynomial.interaction_only is True
    # auto-sklearn truncates the depth factor to an integer: 1.7 -> 1 x 120 columns.
    assert isinstance(classifier, DecisionTreeClassifier) and classifier.max_depth == 120

    neighbours = rebuild(
        base_configuration(
            {
                C: "k_nearest_neighbors",
                B: "weighting",  # ignored by auto-sklearn's neighbours, and here
                R: "quantile_transformer",
                f"{R[:-10]}quantile_transformer:n_quantiles": 300,
                f"{R[:-10]}quantile_transformer:output_distribution": "normal",
                "classifier:k_nearest_neighbors:n_neighbors": 9,
                "classifier:k_nearest_neighbors:p": 1,
                "classifier:k_nearest_neighbors:weights": "distance",
            }
        ),
        classifier_input_width=16,
        seed=3,
    )
    assert isinstance(neighbours, Pipeline)
    scaler, knn = neighbours.named_steps["rescaling"], neighbours.named_steps["classifier"]
    assert isinstance(scaler, QuantileTransformer) and scaler.n_quantiles == 300
    assert isinstance(knn, KNeighborsClassifier) and (knn.n_neighbors, knn.p) == (9, 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({C: "libsvm_svc"}, "classifier:__choice__ = 'libsvm_svc' cannot be rebuilt"),
        ({P: "select_percentile_classification"}, "select_percentile_classification"),
        ({R: "some_future_scaler"}, "some_future_scaler"),
        ({"classifier:random_forest:max_features": "sqrt"}, "is not a number"),
        ({"classifier:random_forest:max_depth": 12}, "only 'None' is rebuilt"),
        ({"classifier:random_forest:warm_start": "True"}, "not rebuilt: classifier:random_fo"),
        ({"data_preprocessor:__choice__": "NoPreprocessing"}, "NoPreprocessing"),
    ],
)
def test_a_configuration_outside_the_restricted_space_is_refused(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(UnsupportedConfigurationError, match=message):
        rebuild(base_configuration(RANDOM_FOREST, change), classifier_input_width=16, seed=0)


@pytest.mark.timeout(600)
def test_rebuilt_estimators_predict_like_auto_sklearns_own_pipelines(
    sidecar: Sidecar, engineered: Engineered
) -> None:
    """auto-sklearn fits each configuration itself (in the sidecar) and scores held-out rows; the
    rebuilt estimator, fitted on the same rows, must agree. Forests and trees are the same code in
    scikit-learn 0.24 and today; histogram gradient boosting and the Yeo-Johnson optimiser changed
    a little, so those agree on nearly every row rather than to the bit."""
    polynomial = {
        "feature_preprocessor:polynomial:degree": 2,
        "feature_preprocessor:polynomial:interaction_only": "True",
    }
    gradient_boosting = {  # moderate settings, so the test stays quick
        C: "gradient_boosting",
        P: "no_preprocessing",
        "classifier:gradient_boosting:learning_rate": 0.2,
        "classifier:gradient_boosting:max_leaf_nodes": 15,
        "classifier:gradient_boosting:min_samples_leaf": 20,
    }
    configurations: list[dict[str, Any]] = [
        {
            **gradient_boosting,
            R: "none",
            B: "none",
            "classifier:gradient_boosting:early_stop": "off",
        },
        {
            **gradient_boosting,
            R: "quantile_transformer",
            B: "weighting",
            "classifier:gradient_boosting:early_stop": "valid",
        },
        {
            **gradient_boosting,
            R: "robust_scaler",
            B: "none",
            "classifier:gradient_boosting:early_stop": "train",
        },
        {C: "random_forest", P: "no_preprocessing", R: "minmax", B: "weighting"},
        {C: "random_forest", P: "polynomial", R: "standardize", B: "none", **polynomial},
        {C: "extra_trees", P: "pca", R: "standardize", B: "none"},
        {C: "extra_trees", P: "no_preprocessing", R: "none", B: "weighting"},
        {C: "decision_tree", P: "polynomial", R: "normalize", B: "none", **polynomial},
        {C: "k_nearest_neighbors", P: "no_preprocessing", R: "power_transformer", B: "none"},
    ]
    response = run_sidecar(
        sidecar.python,
        {"mode": "fit", "seed": 42, "include": SEARCH_SPACE, "configurations": configurations},
        {
            "x": engineered.x.to_numpy(np.float64),
            "y": engineered.y,
            "x_test": engineered.x_holdout.to_numpy(np.float64),
        },
        timeout=540,
    )
    assert response["autosklearn"] == "0.15.0" and response["sklearn"] == "0.24.2"
    covered = set()
    for fitted in response["fitted"]:
        configuration = fitted["configuration"]
        covered |= {configuration[C], configuration[P], configuration[R], configuration[B]}
        model = rebuild(
            configuration, classifier_input_width=fitted["classifier_input_width"], seed=42
        )
        model.fit(engineered.x, engineered.y)
        ours = model.predict_proba(engineered.x_holdout)[:, 1]
        theirs = np.asarray(fitted["probabilities"])[:, 1]
        label = f"{configuration[C]} / {configuration[P]} / {configuration[R]} / {configuration[B]}"
        assert np.mean((ours > 0.5) == (theirs > 0.5)) >= 0.9, label
        assert np.mean(np.abs(ours - theirs)) <= 0.06, label
        if configuration[C] in ("decision_tree", "random_forest", "extra_trees") and (
            configuration[B] == "none" and configuration[P] != "pca"
        ):
            np.testing.assert_allclose(ours, theirs, atol=1e-12, err_msg=label)
    assert covered >= {*CLASSIFIERS, "pca", "polynomial", "weighting", "none"}
    assert covered >= {"minmax", "normalize", "power_transformer", "quantile_transformer"}
    assert covered >= {"robust_scaler", "standardize"}


# -- the engines -----------------------------------------------------------------------------------


def test_flaml_searches_on_grouped_folds_and_returns_an_unfitted_estimator(
    engineered: Engineered,
) -> None:
    budget = replace(cncwear.training.budget.BUDGETS[Budget.FAST], cv_folds=3, flaml_iterations=30)
    result = FlamlEngine(n_jobs=2).search(
        engineered.x, engineered.y, engineered.groups, budget=budget, seed=42
    )
    assert result.engine == "flaml" and result.engine_version
    assert is_classifier(result.estimator)
    assert not hasattr(result.estimator, "classes_")  # unfitted: the candidate refits it
    assert result.validation_accuracy is not None and 0.5 < result.validation_accuracy <= 1.0
    assert result.configuration["estimator"] in FlamlEngine().estimators
    assert result.details["trials"] == 30
    assert result.details["improvements"][-1] < 30  # the trial that found the best


def test_flaml_finds_the_same_model_twice_from_the_same_data_and_seed(
    engineered: Engineered,
) -> None:
    """Counted trials, not seconds: a busy machine gets through fewer trials per second, and must
    still find what a quiet one finds."""
    budget = replace(cncwear.training.budget.BUDGETS[Budget.FAST], cv_folds=3, flaml_iterations=40)
    engine = FlamlEngine(estimators=("lgbm", "histgb"), n_jobs=2)
    first, second = (
        engine.search(engineered.x, engineered.y, engineered.groups, budget=budget, seed=7)
        for _ in range(2)
    )
    assert first.configuration == second.configuration
    assert first.validation_accuracy == second.validation_accuracy
    assert first.details["improvements"] == second.details["improvements"]


def test_auto_sklearn_searches_on_the_folds_of_the_other_candidates(
    engineered: Engineered,
) -> None:
    folds = grouped_test_folds(engineered.y, engineered.groups, 3, 42)
    assert set(folds.tolist()) == {0, 1, 2}
    for experiment in np.unique(engineered.groups):
        assert len(set(folds[engineered.groups == experiment].tolist())) == 1  # whole experiments
    splits = grouped_folds(3, 42).split(engineered.x, engineered.y, engineered.groups)
    for fold, (_, test) in enumerate(splits):
        np.testing.assert_array_equal(np.flatnonzero(folds == fold), test)


def test_auto_is_auto_sklearn_when_its_sidecar_is_there(
    sidecar: Sidecar, configure: Configure
) -> None:
    settings = configure(autosklearn_python=sidecar.python, autosklearn_metalearning="false")
    engine = get_engine(AutoMLEngineName.AUTO, settings)
    assert isinstance(engine, AutoSklearnEngine)
    assert engine.python == sidecar.python and engine.metalearning is False
    assert isinstance(get_engine(AutoMLEngineName.FLAML, settings), FlamlEngine)


def test_the_default_engine_is_flaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CNCWEAR_AUTOML_ENGINE")  # the suite's own choice (tests/conftest.py)
    assert Settings(home=tmp_path).automl_engine is AutoMLEngineName.FLAML


def test_auto_without_a_sidecar_is_flaml_after_one_clear_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNCWEAR_AUTOML_ENGINE", "auto")
    settings = Settings(home=tmp_path, autosklearn_python=tmp_path / "nowhere" / "python")
    assert settings.automl_engine is AutoMLEngineName.AUTO
    with caplog.at_level(logging.WARNING, logger="cncwear.training.automl.engines"):
        engines = [get_engine(settings.automl_engine, settings) for _ in range(3)]
    assert all(isinstance(engine, FlamlEngine) for engine in engines)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "flaml, not auto-sklearn" in warnings[0] and "setup-autosklearn.sh" in warnings[0]


def test_an_explicit_auto_sklearn_without_sidecar_fails_saying_how_to_install_it(
    configure: Configure, tmp_path: Path
) -> None:
    settings = configure(
        automl_engine="auto-sklearn", autosklearn_python=tmp_path / "nowhere" / "python"
    )
    with pytest.raises(SidecarUnavailableError, match=r"scripts/setup-autosklearn\.sh"):
        get_engine(AutoMLEngineName.AUTO_SKLEARN, settings)
    with pytest.raises(SidecarUnavailableError, match=r"Python 3\.9"):
        retrain(settings)
    assert not (settings.home / "mlflow.db").exists()  # refused before any work


@pytest.mark.timeout(600)
def test_a_retrain_with_auto_sklearn_promotes_a_plain_pipeline_and_records_the_search(
    sidecar: Sidecar, configure: Configure, monkeypatch: pytest.MonkeyPatch, dataset: Dataset
) -> None:
    settings = configure(automl_engine="auto-sklearn", autosklearn_python=sidecar.python)
    fast = cncwear.training.budget.BUDGETS[Budget.FAST]
    monkeypatch.setitem(
        cncwear.training.budget.BUDGETS, Budget.FAST, replace(fast, autosklearn_seconds=40)
    )
    report = retrain(settings, candidates=["automl", "baseline"])
    automl = report.candidates[0]
    assert automl.error is None, automl.error
    details = automl.details
    assert details["engine"] == "auto-sklearn" and details["engine_version"] == "0.15.0"
    assert details["configuration"][C] in CLASSIFIERS
    assert details["successful_trials"] >= 1 and details["budget_seconds"] == 40
    own, rebuilt = details["engine_validation_accuracy"], details["rebuilt_cv_accuracy"]
    assert 0.5 < own <= 1.0 and abs(rebuilt - own) <= 0.1  # the same folds, the rebuilt model

    assert automl.pipeline is not None
    estimator = automl.pipeline[-1]
    parts = estimator.steps if isinstance(estimator, Pipeline) else [("classifier", estimator)]
    assert all(type(part).__module__.startswith("sklearn.") for _, part in parts)
    assert report.winner == "automl" and report.decision.promoted

    client = MlflowClient(
        tracking_uri=settings.tracking_uri(), registry_uri=settings.tracking_uri()
    )
    run = client.get_run(automl.run_id or "")
    assert run.data.params["engine"] == "auto-sklearn"
    assert run.data.params[C] == details["configuration"][C]
    assert run.data.metrics["cv_grouped_accuracy"] == pytest.approx(own)
    assert "holdout_accuracy" in run.data.metrics
    logged = json.loads(
        Path(client.download_artifacts(run.info.run_id, "evaluation.json")).read_text()
    )
    assert logged["details"]["engine_version"] == "0.15.0"
    assert logged["details"]["rebuilt_cv_accuracy"] == pytest.approx(rebuilt)

    champion = ModelStore(settings).load_champion()  # from the registry, as the API loads it
    assert champion.tags[Tag.CANDIDATE] == "automl"
    columns = list(automl.pipeline.feature_names_in_)
    rows = dataset.active().rows.sample(300, random_state=0)[columns]
    np.testing.assert_array_equal(
        champion.pipeline.predict_proba(rows), automl.pipeline.predict_proba(rows)
    )


CRASH = 'echo "Fatal Python error: Segmentation fault" >&2\nkill -SEGV $$'
UNREBUILDABLE = """cat > "$3" <<'JSON'
{"protocol": 1, "status": "ok", "autosklearn": "0.15.0", "validation_accuracy": 0.9,
 "classifier_input_width": 16,
 "configuration": {"classifier:__choice__": "libsvm_svc", "classifier:libsvm_svc:C": 1.0,
   "balancing:strategy": "none", "feature_preprocessor:__choice__": "no_preprocessing",
   "data_preprocessor:__choice__": "feature_type",
   "data_preprocessor:feature_type:numerical_transformer:imputation:strategy": "mean",
   "data_preprocessor:feature_type:numerical_transformer:rescaling:__choice__": "none"}}
JSON"""


@pytest.mark.parametrize(
    ("job", "error"),
    [
        (CRASH, r"\(killed by SIGSEGV\): .*Segmentation fault"),
        (UNREBUILDABLE, "best configuration cannot be rebuilt: .*'libsvm_svc'"),
    ],
    ids=["crash", "unrebuildable"],
)
def test_a_failing_sidecar_fails_the_automl_candidate_and_the_others_still_decide(
    sidecar: Sidecar, configure: Configure, tmp_path: Path, job: str, error: str
) -> None:
    python = fake_sidecar(tmp_path, sidecar, job)
    settings = configure(automl_engine="auto-sklearn", autosklearn_python=python)
    report = retrain(settings, candidates=["automl", "decision_tree"])
    automl, tree = report.candidates
    assert automl.error is not None and automl.pipeline is None
    assert automl.error.startswith(("AutoSklearnError", "UnsupportedConfigurationError"))
    assert re.search(error, automl.error), automl.error
    assert tree.error is None and report.winner == "decision_tree"
    assert report.decision.promoted


@pytest.mark.timeout(300)
def test_a_sidecar_over_its_time_limit_is_stopped_with_its_workers(
    sidecar: Sidecar, engineered: Engineered, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    python = fake_sidecar(
        tmp_path, sidecar, f'echo $$ > "{pid_file}"\nexec "{sidecar.python}" "$@"'
    )
    request = {
        "mode": "search",
        "seconds": 60,
        "per_run_seconds": 30,
        "seed": 0,
        "metalearning": False,
        "memory_limit_mb": 3072,
        "include": SEARCH_SPACE,
    }
    arrays = {
        "x": engineered.x.to_numpy(np.float64),
        "y": engineered.y,
        "test_fold": grouped_test_folds(engineered.y, engineered.groups, 3, 0),
    }
    started = time.monotonic()
    with pytest.raises(AutoSklearnError, match="did not finish within 20 s and was stopped"):
        run_sidecar(python, request, arrays, timeout=20)
    assert time.monotonic() - started < 60
    session = int(pid_file.read_text())
    assert session_processes(session) == []  # the sidecar and whatever it started are gone


def test_the_default_sidecar_is_the_projects_whatever_the_working_directory(
    tmp_path: Path,
) -> None:
    """``cncwear train`` run from another folder finds the sidecar built in the project that holds
    cncwear, not one in (or missing from) the folder it was started in."""
    built = REPO / ".venv-autosklearn" / "bin" / "python"
    if not built.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI builds the auto-sklearn sidecar, yet there is none at {built}")
        pytest.skip(f"no auto-sklearn sidecar at {built} (scripts/setup-autosklearn.sh builds it)")
    script = (
        "from cncwear.training.automl.sidecar_process import (\n"
        "    SidecarUnavailableError, default_python, find_sidecar,\n"
        ")\n"
        "print(default_python())\n"
        "try:\n"
        "    print(find_sidecar(None).python)\n"
        "except SidecarUnavailableError as error:\n"
        "    print(error)\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "CNCWEAR_AUTOSKLEARN_PYTHON"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    default, found = result.stdout.splitlines()
    assert default == str(built)
    assert found == str(built)


def test_the_setup_script_returns_at_once_when_the_sidecar_is_built(sidecar: Sidecar) -> None:
    if sidecar.python.parent.parent != REPO / ".venv-autosklearn":
        pytest.skip("the sidecar in use was not built by this checkout's script")
    started = time.monotonic()
    result = subprocess.run(
        [str(REPO / "scripts" / "setup-autosklearn.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "CNCWEAR_AUTOSKLEARN_PYTHON"},
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 5 and "building" not in result.stderr
