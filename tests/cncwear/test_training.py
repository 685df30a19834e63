"""A retrain: three candidates, grouped evaluation, MLflow runs, registry and promotion."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flaml.automl import AutoML
from mlflow.tracking import MlflowClient
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.feature_selection import VarianceThreshold
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

import cncwear.training.retrain
from cncwear.core.errors import TrainingError
from cncwear.core.schema import EXPERIMENT_COLUMN
from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset, load_dataset
from cncwear.data.features import CumulativeImportanceSelector, build_pipeline
from cncwear.registry.store import ModelStore
from cncwear.registry.tags import PromotionOutcome, Tag
from cncwear.training.automl.engines import FlamlEngine
from cncwear.training.evaluation import evaluate, holdout_split
from cncwear.training.promotion import decide_promotion
from cncwear.training.retrain import retrain

from .conftest import TrainedHome


def client_for(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri(), registry_uri=settings.tracking_uri())


def test_cli_train_logs_three_candidates_and_promotes_a_champion(trained_home: TrainedHome) -> None:
    settings = trained_home.settings
    client = client_for(settings)
    runs = client.search_runs([ModelStore(settings).experiment_id()])
    candidates = {
        r.data.tags.get(Tag.CANDIDATE) for r in runs if r.data.tags[Tag.RUN_KIND] == "candidate"
    }
    assert candidates == {"decision_tree", "random_forest", "automl"}
    for run in runs:
        if run.data.tags[Tag.RUN_KIND] == "candidate":
            assert {
                "holdout_accuracy",
                "holdout_mcc",
                "holdout_roc_auc",
                "leaky_row_split_accuracy",
            } <= set(run.data.metrics)
    champion = ModelStore(settings).champion_version()
    assert champion is not None and str(champion.version) == "1"
    assert champion.tags[Tag.DECISION] == "promoted"
    assert "leaky" in trained_home.output and "promoted" in trained_home.output


def test_champion_carries_its_reference_profile_and_data_hash(
    trained_home: TrainedHome, dataset: Dataset
) -> None:
    champion = ModelStore(trained_home.settings).load_champion()
    assert champion.tags[Tag.DATA_HASH] == dataset.content_hash
    features = champion.profile["features"]
    assert set(features) == set(champion.pipeline[:-1].get_feature_names_out())
    assert 0 < champion.profile["class_balance"]["worn"] < 1
    assert sum(champion.profile["holdout_probability_worn"]["counts"]) > 0


def test_a_weaker_candidate_set_does_not_move_the_champion(trained_home: TrainedHome) -> None:
    settings = trained_home.settings
    before = ModelStore(settings).champion_version()
    report = retrain(settings, candidates=["baseline"], reason="deliberately weak")
    after = ModelStore(settings).champion_version()
    assert before is not None and after is not None
    assert report.decision.promoted is False
    assert str(after.version) == str(before.version)
    assert "does not beat" in report.decision.reason
    weak = client_for(settings).get_model_version(settings.model_name, report.version)
    assert weak.tags[Tag.DECISION] == "not promoted"


def test_a_retrain_that_keeps_the_champion_says_not_promoted_on_its_run_as_on_its_version(
    trained_home: TrainedHome,
) -> None:
    settings = trained_home.settings
    report = retrain(settings, candidates=["baseline"], reason="kept on purpose")
    summary = ModelStore(settings).recent_retrains(limit=1)[0]
    version = client_for(settings).get_model_version(settings.model_name, report.version)
    assert (summary.run_id, summary.reason, summary.winner) == (
        report.run_id,
        "kept on purpose",
        "baseline",
    )
    assert summary.registered_version == report.version
    assert summary.decision == version.tags[Tag.DECISION] == PromotionOutcome.NOT_PROMOTED


def test_champion_from_the_registry_scores_exactly_like_the_fitted_pipeline(
    settings: Settings, dataset: Dataset
) -> None:
    report = retrain(settings, candidates=["decision_tree"])
    fitted = report.candidates[0].pipeline
    assert fitted is not None
    loaded = ModelStore(settings).load_champion()
    rows = dataset.rows[list(fitted.feature_names_in_)].sample(500, random_state=1)
    np.testing.assert_array_equal(loaded.pipeline.predict_proba(rows), fitted.predict_proba(rows))


class FitSpy:
    """Records which experiments' rows reach any ``fit`` during a retrain."""

    def __init__(self, dataset: Dataset) -> None:
        self.experiment_of = dataset.rows[EXPERIMENT_COLUMN]
        self.seen: set[int] = set()
        self.calls = 0
        self.paused = False

    def record(self, x: Any) -> None:
        if self.paused or not isinstance(x, pd.DataFrame):
            return
        self.calls += 1
        self.seen |= set(self.experiment_of.loc[x.index].unique().tolist())


@pytest.fixture
def fit_spy(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[FitSpy]:
    spy = FitSpy(load_dataset(settings.data_dir).active())
    for cls in (
        Pipeline,
        VarianceThreshold,
        CumulativeImportanceSelector,
        DecisionTreeClassifier,
        RandomForestClassifier,
        ExtraTreesClassifier,
        HistGradientBoostingClassifier,
    ):
        original = cls.fit

        def spying_fit(
            self: Any, x: Any, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Any:
            spy.record(x)
            return _original(self, x, *args, **kwargs)

        monkeypatch.setattr(cls, "fit", spying_fit)
    original_automl = AutoML.fit

    def spying_automl_fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        spy.record(kwargs.get("X_train"))
        return original_automl(self, *args, **kwargs)

    monkeypatch.setattr(AutoML, "fit", spying_automl_fit)
    leaky = cncwear.training.retrain.leaky_row_split_accuracy

    def paused_leaky(*args: Any, **kwargs: Any) -> float:
        # The leaky figure is fitted on a random row split by design: it is displayed, never used.
        spy.paused = True
        try:
            return leaky(*args, **kwargs)
        finally:
            spy.paused = False

    monkeypatch.setattr(cncwear.training.retrain, "leaky_row_split_accuracy", paused_leaky)
    yield spy


def test_no_held_out_experiment_reaches_fitting_selection_or_search(
    settings: Settings, fit_spy: FitSpy
) -> None:
    report = retrain(settings)  # n_jobs=1: every fit runs in this process, under the spy
    held_out = set(report.split.holdout_experiments)
    assert fit_spy.calls > 20
    assert fit_spy.seen == set(report.split.train_experiments)
    assert not fit_spy.seen & held_out
    assert all(c.error is None for c in report.candidates)


def test_a_failing_candidate_is_reported_and_the_others_still_decide(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("engine crashed")

    monkeypatch.setattr(FlamlEngine, "search", crash)
    report = retrain(settings, candidates=["automl", "decision_tree"])
    automl, tree = report.candidates
    assert automl.error == "RuntimeError: engine crashed"
    assert tree.error is None and report.winner == "decision_tree"
    assert report.decision.promoted


def test_a_retrain_where_every_candidate_fails_raises_and_promotes_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FlamlEngine, "search", lambda *a, **k: 1 / 0)
    with pytest.raises(TrainingError, match="no candidate could be trained"):
        retrain(settings, candidates=["automl"])
    assert ModelStore(settings).champion_version() is None


def test_an_unknown_candidate_is_refused_before_any_work(settings: Settings) -> None:
    with pytest.raises(TrainingError, match="unknown candidate 'svm'"):
        retrain(settings, candidates=["svm"])
    assert not settings.home.exists() or not (settings.home / "mlflow.db").exists()


def register_fitted(store: ModelStore, pipeline: Pipeline, example: pd.DataFrame) -> str:
    with store.retrain_run(tags={}), store.candidate_run("handmade"):
        uri = store.log_model(pipeline, input_example=example, profile={})
    return str(store.register(uri, tags={}).version)


def _promote(home: str, version: str, score: float, barrier: Any) -> None:
    settings = Settings(home=Path(home))
    store = ModelStore(settings)
    dataset = load_dataset(settings.data_dir).active()
    holdout = dataset.subset(
        holdout_split(dataset, settings.holdout_fraction, settings.seed).holdout_experiments
    )
    barrier.wait()
    decide_promotion(store, settings, version, score, holdout)


@pytest.mark.parametrize("order", ["better first", "worse first"])
def test_concurrent_promotions_end_with_the_better_model(
    settings: Settings, dataset: Dataset, order: str
) -> None:
    active = dataset.active()
    split = holdout_split(active, settings.holdout_fraction, settings.seed)
    train, holdout = (
        active.subset(split.train_experiments),
        active.subset(split.holdout_experiments),
    )
    store = ModelStore(settings)
    versions = {}
    for depth in (1, 8):
        pipeline = build_pipeline(
            DecisionTreeClassifier(max_depth=depth, random_state=0),
            use_identifying_columns=False,
            seed=0,
        )
        pipeline.fit(train.features(use_identifying_columns=False), train.labels)
        score = evaluate(pipeline, holdout).accuracy
        versions[
            register_fitted(store, pipeline, train.features(use_identifying_columns=False).head(3))
        ] = score
    ranked = sorted(versions, key=versions.__getitem__, reverse=order == "better first")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [
        context.Process(target=_promote, args=(str(settings.home), v, versions[v], barrier))
        for v in ranked
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode == 0
    champion = store.champion_version()
    assert champion is not None
    assert str(champion.version) == max(versions, key=versions.__getitem__)
