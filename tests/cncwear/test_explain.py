"""Explanations of real models fitted on the bundled data: exact tree SHAP that adds up for every
model family, LIME with its fit (flagged when poor) and repeatable, anchors on the model's own split
thresholds (with their cap, the beam really searched, a decision tree's path as its anchor), global
views, and the explainers of a version loaded back from the registry."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from anchor.anchor_base import AnchorBaseBeam
from lightgbm import LGBMClassifier
from sklearn.base import ClassifierMixin
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from xgboost import XGBClassifier

from cncwear.core.errors import SchemaError
from cncwear.core.schema import CLASS_NAMES, input_columns, validate_rows
from cncwear.core.settings import Settings
from cncwear.data.dataset import Dataset
from cncwear.data.features import build_pipeline
from cncwear.data.profile import build_profile
from cncwear.explain import (
    AnchorExplanation,
    ExplainerCache,
    Explainers,
    ExplainMethod,
    LimeExplanation,
    ShapExplanation,
    UnknownExplainMethodError,
)
from cncwear.explain.conditions import draw_under, holds
from cncwear.explain.splits import model_thresholds, thin
from cncwear.registry.store import ModelStore
from cncwear.training.candidates import thin_rows
from cncwear.training.evaluation import holdout_split

COLUMNS = input_columns(use_identifying_columns=False)


@dataclass(frozen=True)
class Fitted:
    pipeline: Pipeline
    profile: dict[str, Any]
    explainers: Explainers
    rows: pd.DataFrame
    """Validated raw rows of held-out experiments, to explain."""


@pytest.fixture(scope="module")
def split(dataset: Dataset) -> tuple[Dataset, Dataset]:
    active = dataset.active()
    held = holdout_split(active, 0.25, seed=42)
    return thin_rows(active.subset(held.train_experiments), 2), active.subset(
        held.holdout_experiments
    )


@pytest.fixture(scope="module")
def explain_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        home=tmp_path_factory.mktemp("explain") / "home",
        explain_anchor_max_seconds=2.0,
        explain_anchor_max_samples=30_000,
    )


def fit(
    classifier: ClassifierMixin, split: tuple[Dataset, Dataset], settings: Settings, rows: int = 50
) -> Fitted:
    train, held_out = split
    pipeline = build_pipeline(classifier, use_identifying_columns=False, seed=0)
    pipeline.fit(train.rows[COLUMNS], train.labels)
    profile = build_profile(
        pipeline,
        train.rows[COLUMNS],
        train.labels,
        pipeline.predict_proba(held_out.rows[COLUMNS])[:, 1],
    )
    sample = held_out.rows[COLUMNS].sample(rows, random_state=0)
    return Fitted(
        pipeline=pipeline,
        profile=profile,
        explainers=Explainers.build(pipeline, profile, "test", settings),
        rows=validate_rows(sample, COLUMNS),
    )


@pytest.fixture(scope="module")
def forest(split: tuple[Dataset, Dataset], explain_settings: Settings) -> Fitted:
    model = RandomForestClassifier(n_estimators=60, random_state=0, n_jobs=1)
    return fit(model, split, explain_settings)


@pytest.fixture(scope="module")
def boosting(split: tuple[Dataset, Dataset], explain_settings: Settings) -> Fitted:
    return fit(HistGradientBoostingClassifier(max_iter=60, random_state=0), split, explain_settings)


def one(fitted: Fitted, i: int) -> pd.DataFrame:
    return fitted.rows.iloc[[i]]


# -- SHAP -------------------------------------------------------------------------------------


def test_tree_shap_on_a_forest_adds_up_to_the_probability_within_1e_6(forest: Fitted) -> None:
    explainers = forest.explainers
    assert explainers.shap.algorithm == "tree_path_dependent"
    assert explainers.shap.output_space == "probability"
    probabilities = forest.pipeline.predict_proba(forest.rows)[:, 1]
    for i in range(len(forest.rows)):
        answer = explainers.explain(one(forest, i), ExplainMethod.SHAP, validated=True)
        assert isinstance(answer, ShapExplanation)
        total = answer.base_value + sum(c.contribution for c in answer.contributions)
        assert abs(total - probabilities[i]) <= 1e-6
        assert abs(answer.output - probabilities[i]) <= 1e-6
        assert answer.probability_worn == pytest.approx(probabilities[i], abs=1e-12)
    assert answer.model_version == "test" and answer.method is ExplainMethod.SHAP
    assert answer.seconds > 0
    features = [c.feature for c in answer.contributions]
    assert sorted(features) == sorted(explainers.reference.columns)
    magnitudes = [abs(c.contribution) for c in answer.contributions]
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_tree_shap_on_boosting_adds_up_to_the_log_odds_within_1e_6(boosting: Fitted) -> None:
    explainers = boosting.explainers
    assert explainers.shap.algorithm == "tree_path_dependent"
    assert explainers.shap.output_space == "log_odds"
    estimator = boosting.pipeline[-1]
    engineered = boosting.pipeline[:-1].transform(boosting.rows)
    log_odds = estimator.decision_function(engineered)
    probabilities = boosting.pipeline.predict_proba(boosting.rows)[:, 1]
    for i in range(len(boosting.rows)):
        answer = explainers.explain(one(boosting, i), "shap", validated=True)
        assert isinstance(answer, ShapExplanation)
        total = answer.base_value + sum(c.contribution for c in answer.contributions)
        assert abs(total - log_odds[i]) <= 1e-6
        assert 1 / (1 + np.exp(-answer.output)) == pytest.approx(probabilities[i], abs=1e-9)


def test_other_estimators_get_model_agnostic_shap_that_adds_up_and_quantile_anchor_bins(
    split: tuple[Dataset, Dataset], explain_settings: Settings
) -> None:
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    fitted = fit(linear, split, explain_settings, rows=5)
    explainers = fitted.explainers
    assert explainers.shap.algorithm == "permutation"
    assert explainers.model.path == "sklearn"
    assert explainers.anchor.binning == "quantile" and explainers.path_anchor is None
    probabilities = fitted.pipeline.predict_proba(fitted.rows)[:, 1]
    for i in range(len(fitted.rows)):
        answer = explainers.explain(one(fitted, i), "shap", validated=True)
        assert isinstance(answer, ShapExplanation)
        total = answer.base_value + sum(c.contribution for c in answer.contributions)
        assert abs(total - probabilities[i]) <= 1e-6


def test_fast_paths_reproduce_the_pipeline(forest: Fitted, boosting: Fitted) -> None:
    for fitted, path in ((forest, "trees"), (boosting, "boosting")):
        explainers = fitted.explainers
        assert explainers.model.path == path
        engineered = fitted.pipeline[:-1].transform(fitted.rows)
        expected = fitted.pipeline.predict_proba(fitted.rows)
        probabilities = explainers.model.probabilities(engineered.to_numpy())
        assert np.max(np.abs(probabilities - expected)) <= 1e-12
        assert explainers.features is not None  # engineering by column picks and differences
        for i in range(5):
            pd.testing.assert_frame_equal(
                explainers.engineered(one(fitted, i), validated=True),
                engineered.iloc[[i]].reset_index(drop=True),
                check_exact=True,
            )


# -- LIME -------------------------------------------------------------------------------------


def test_lime_explains_the_predicted_label_with_the_rows_bins(forest: Fitted) -> None:
    answer = forest.explainers.explain(one(forest, 0), "lime", validated=True)
    assert isinstance(answer, LimeExplanation)
    probability = forest.pipeline.predict_proba(one(forest, 0))[0, 1]
    assert answer.label == CLASS_NAMES[int(probability >= 0.5)]
    assert len(answer.features) == forest.explainers.settings.explain_lime_features
    weights = [abs(f.weight) for f in answer.features]
    assert weights == sorted(weights, reverse=True)
    for feature in answer.features:
        assert holds(feature.condition, feature.value)
    assert answer.score <= 1.0 and 0.0 <= answer.local_prediction <= 1.5


@pytest.mark.parametrize("model", ["forest", "boosting"])
def test_lime_top_feature_is_among_shaps_top_three_on_most_rows(
    model: str, request: pytest.FixtureRequest
) -> None:
    """Measured on these 30 held-out rows: 29/30 for the forest, 28/30 for boosting (48/50 for
    both on 50 rows). The two methods differ (bins and a local linear fit against path-dependent
    Shapley values), so agreement is expected on most rows, not all."""
    fitted: Fitted = request.getfixturevalue(model)
    agree = 0
    for i in range(30):
        shap_answer = fitted.explainers.explain(one(fitted, i), "shap", validated=True)
        lime_answer = fitted.explainers.explain(one(fitted, i), "lime", validated=True)
        assert isinstance(shap_answer, ShapExplanation)
        assert isinstance(lime_answer, LimeExplanation)
        top_three = {c.feature for c in shap_answer.contributions[:3]}
        agree += lime_answer.features[0].feature in top_three
    assert agree / 30 >= 0.85


# -- anchors ----------------------------------------------------------------------------------


def anchor_precision_by_sampling(
    explainers: Explainers, answer: AnchorExplanation, rows: int = 2000, seed: int = 1
) -> float:
    """The rule's precision measured independently: reference rows with the rule's conditions
    imposed (a value outside a condition replaced by a reference value inside it), labelled by
    the model."""
    reference = explainers.reference
    rng = np.random.default_rng(seed)
    drawn = reference.to_numpy()[rng.integers(0, len(reference), rows)].copy()
    for condition in answer.conditions:
        column = list(reference.columns).index(condition.feature)
        values = reference[condition.feature].to_numpy()
        inside = np.array([holds(condition, v) for v in values])
        outside = ~np.array([holds(condition, v) for v in drawn[:, column]])
        drawn[outside, column] = rng.choice(values[inside], int(outside.sum()))
    labels = explainers.model.labels(drawn)
    return float(np.mean(labels == CLASS_NAMES.index(answer.label)))


def check_anchor(explainers: Explainers, row: pd.DataFrame, answer: AnchorExplanation) -> None:
    engineered = explainers.engineered(row, validated=True).iloc[0]
    for condition in answer.conditions:
        assert holds(condition, float(engineered[condition.feature])), condition.text
    measured = anchor_precision_by_sampling(explainers, answer)
    # both are sample means of the same quantity: 1000 and 2000 rows, so within 4 standard errors
    spread = 4 * np.sqrt(0.25 / answer.precision_samples + 0.25 / 2000)
    assert abs(answer.precision - measured) <= spread, (answer.precision, measured)
    assert 0.0 <= answer.coverage <= 1.0


def test_anchor_rule_holds_for_the_row_and_its_precision_checks_out(forest: Fitted) -> None:
    explainers = forest.explainers
    for i in range(4):
        answer = explainers.explain(one(forest, i), ExplainMethod.ANCHOR, validated=True)
        assert isinstance(answer, AnchorExplanation)
        check_anchor(explainers, one(forest, i), answer)
        assert answer.model_version == "test" and answer.method is ExplainMethod.ANCHOR
        assert answer.partial == (answer.stopped_by is not None)
        assert answer.binning == "model"
        assert {c.feature for c in answer.conditions} <= set(answer.candidates)
        settings = explainers.settings
        most = settings.explain_anchor_wider_features if answer.widened else None
        assert len(answer.candidates) <= (most or settings.explain_anchor_features)


def test_anchor_of_a_shallow_tree_is_its_path_above_the_threshold(
    split: tuple[Dataset, Dataset], explain_settings: Settings
) -> None:
    # A cap far above what the search needs: only the algorithm decides when it stops.
    uncapped = explain_settings.model_copy(update={"explain_anchor_max_seconds": 120.0})
    fitted = fit(DecisionTreeClassifier(max_depth=3, random_state=0), split, uncapped, 3)
    for i in range(3):
        answer = fitted.explainers.explain(one(fitted, i), "anchor", validated=True)
        assert isinstance(answer, AnchorExplanation)
        check_anchor(fitted.explainers, one(fitted, i), answer)
        assert not answer.partial and answer.stopped_by is None
        assert answer.meets_threshold
        assert answer.conditions and answer.rule == " AND ".join(c.text for c in answer.conditions)


def test_anchor_search_stops_at_the_sample_cap_with_the_best_rule_so_far(
    forest: Fitted, explain_settings: Settings
) -> None:
    capped = explain_settings.model_copy(update={"explain_anchor_max_samples": 1000})
    explainers = Explainers.build(forest.pipeline, forest.profile, "capped", capped)
    answer = explainers.explain(one(forest, 0), "anchor", validated=True)
    assert isinstance(answer, AnchorExplanation)
    assert answer.partial and answer.stopped_by == "samples"
    assert answer.samples <= 1000
    check_anchor(explainers, one(forest, 0), answer)


def test_an_anchor_search_that_ends_below_the_threshold_searches_again_on_more_features(
    forest: Fitted, explain_settings: Settings
) -> None:
    """One candidate feature is too few for these rows; the second search, on six, answers
    whenever it finds the better rule. A search that reached the threshold is left alone."""
    once = explain_settings.model_copy(
        update={
            "explain_anchor_features": 1,
            "explain_anchor_wider_features": 0,
            "explain_anchor_max_seconds": 60.0,  # no time cap: only the precision decides
        }
    )
    twice = once.model_copy(update={"explain_anchor_wider_features": 6})
    narrow = Explainers.build(forest.pipeline, forest.profile, "once", once)
    widening = Explainers.build(forest.pipeline, forest.profile, "twice", twice)
    widened = 0
    for i in range(6):
        first = narrow.explain(one(forest, i), "anchor", validated=True)
        answer = widening.explain(one(forest, i), "anchor", validated=True)
        assert isinstance(first, AnchorExplanation) and isinstance(answer, AnchorExplanation)
        assert not first.widened and len(first.candidates) == 1
        if first.meets_threshold:
            assert not answer.widened and answer.samples == first.samples
        else:
            assert answer.samples > first.samples  # a second search ran, within the same caps
        if answer.widened:
            assert (answer.meets_threshold, answer.precision) >= (
                first.meets_threshold,
                first.precision,
            )
            assert 1 < len(answer.candidates) <= 6
            check_anchor(widening, one(forest, i), answer)
            widened += 1
        else:
            assert (answer.rule, answer.precision) == (first.rule, first.precision)
    assert widened


# -- global view ------------------------------------------------------------------------------


def test_global_view_ranks_features_fits_a_faithful_surrogate_and_sweeps_the_top_ones(
    forest: Fitted,
) -> None:
    view = forest.explainers.global_view()
    assert view.model_version == "test" and view.output_space == "probability"
    importances = [f.mean_abs_shap for f in view.importance]
    assert importances == sorted(importances, reverse=True) and importances[0] > 0
    assert {f.feature for f in view.importance} == set(forest.explainers.reference.columns)
    # the 0.2 mm offset of the worn tool, as the README says
    assert view.importance[0].feature == "Z1_ActualPosition"

    surrogate = view.surrogate
    assert surrogate.depth <= forest.explainers.settings.explain_surrogate_depth
    assert 0.6 <= surrogate.fidelity_accuracy <= 1.0
    assert "Z1_ActualPosition" in surrogate.rules and "class: worn" in surrogate.rules

    top = [f.feature for f in view.importance[:3]]
    assert [p.feature for p in view.partial_dependence] == top
    for curve in view.partial_dependence:
        assert curve.grid == sorted(curve.grid) and len(curve.average) == len(curve.grid)
        assert len(curve.ice) == curve.ice_rows == 50
        assert all(len(ice) == len(curve.grid) for ice in curve.ice)
        assert all(0.0 <= p <= 1.0 for p in curve.average)
    assert forest.explainers.global_view() is view  # computed once per version


# -- input and lifecycle ----------------------------------------------------------------------


def test_unknown_method_lists_the_valid_ones(forest: Fitted) -> None:
    with pytest.raises(UnknownExplainMethodError) as raised:
        forest.explainers.explain(one(forest, 0), "magic")
    assert raised.value.valid == ["shap", "lime", "anchor"]
    assert "shap" in str(raised.value)


def test_bad_rows_are_refused_like_predict_refuses_them(forest: Fitted) -> None:
    bad = forest.rows.iloc[[0]].copy()
    bad["X1_ActualPosition"] = np.nan
    with pytest.raises(SchemaError) as raised:
        forest.explainers.explain(bad, "shap")
    assert raised.value.problems[0].column == "X1_ActualPosition"
    with pytest.raises(SchemaError):
        forest.explainers.explain(forest.rows.iloc[:2], "shap")
    with pytest.raises(SchemaError):
        forest.explainers.explain(forest.rows.iloc[[0]].drop(columns=["Z1_ActualPosition"]), "lime")


def test_explainers_of_the_registered_champion_are_cached_per_version(
    forest: Fitted, boosting: Fitted, explain_settings: Settings, tmp_path: Path
) -> None:
    settings = explain_settings.model_copy(update={"home": tmp_path / "home"})
    store = ModelStore(settings)
    example = forest.rows.iloc[:5]
    for fitted in (forest, boosting):
        with store.retrain_run(tags={}), store.candidate_run("explained"):
            uri = store.log_model(fitted.pipeline, input_example=example, profile=fitted.profile)
        store.set_champion(str(store.register(uri, tags={}).version))
        if fitted is forest:
            first = store.load_champion()
    second = store.load_champion()

    cache = ExplainerCache(settings)
    explainers = cache.get(first.pipeline, first.profile, first.version)
    assert cache.get(first.pipeline, first.profile, first.version) is explainers
    raw = forest.rows.iloc[[0]]  # as a client sends it: validated inside
    answer = explainers.explain(raw, "shap")
    assert isinstance(answer, ShapExplanation) and answer.model_version == first.version
    assert answer.output == pytest.approx(first.pipeline.predict_proba(raw)[0, 1], abs=1e-6)

    rebuilt = cache.get(second.pipeline, second.profile, second.version)
    assert rebuilt is not explainers and rebuilt.version == second.version == "2"
    assert rebuilt.shap.output_space == "log_odds"
    assert cache.current is rebuilt


# -- every model family -----------------------------------------------------------------------

FAMILIES: dict[str, Callable[[], ClassifierMixin]] = {
    "decision_tree": lambda: DecisionTreeClassifier(max_depth=8, random_state=0),
    "random_forest": lambda: RandomForestClassifier(n_estimators=30, random_state=0, n_jobs=1),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=40, random_state=0),
    "lightgbm": lambda: LGBMClassifier(n_estimators=40, random_state=0, n_jobs=1, verbose=-1),
    "xgboost": lambda: XGBClassifier(n_estimators=40, random_state=0, n_jobs=1),
}
TREE_FAMILIES = list(FAMILIES)
SHAP_SPACES = {
    "decision_tree": "probability",
    "random_forest": "probability",
    "hist_gradient_boosting": "log_odds",
    "lightgbm": "log_odds",
    "xgboost": "log_odds",
}


@pytest.fixture(scope="module")
def families(split: tuple[Dataset, Dataset], explain_settings: Settings) -> dict[str, Fitted]:
    return {name: fit(make(), split, explain_settings, rows=10) for name, make in FAMILIES.items()}


@pytest.mark.parametrize("family", TREE_FAMILIES)
def test_thresholds_read_off_each_tree_family_are_where_its_output_can_change(
    family: str, families: dict[str, Fitted]
) -> None:
    """Sweep each feature of a reference row over the reference's values: between two neighbouring
    values with no threshold read between them, the model's output does not move."""
    explainers = families[family].explainers
    reference = explainers.reference.to_numpy()
    splits = model_thresholds(explainers.model.estimator, reference.shape[1])
    assert splits is not None
    changes = 0
    for feature, counts in enumerate(splits):
        grid = np.unique(reference[:, feature])
        rows = np.repeat(reference[:1], len(grid), axis=0)
        rows[:, feature] = grid
        output = explainers.model.probability_worn(rows)
        thresholds = np.array(sorted(counts))
        for i in range(len(grid) - 1):
            between = np.any((thresholds >= grid[i]) & (thresholds < grid[i + 1]))
            if not between:
                assert output[i] == output[i + 1], (family, feature, grid[i], grid[i + 1])
            changes += output[i] != output[i + 1]
    assert changes > 0  # the sweep does reach the model's splits
    anchor = explainers.anchor
    assert anchor.binning == "model"
    keep = explainers.settings.explain_anchor_thresholds
    for feature in anchor.candidates:
        edges = anchor._explainer.disc.maxs[feature][:-1]  # the bins the search draws on
        assert 0 < len(edges) <= keep and set(edges) <= set(splits[feature])


def test_thinning_keeps_the_most_used_cuts_one_per_gap_between_reference_values() -> None:
    reference = np.array([0.0, 1.0, 2.0, 3.0])
    # 0.5 and 0.6 cut the reference alike (5 splits together); 3.5 cuts nothing off
    counts = Counter({0.5: 3, 0.6: 2, 1.5: 1, 2.5: 4, 3.5: 9})
    assert thin(counts, reference, keep=2).tolist() == [0.5, 2.5]
    assert thin(counts, reference, keep=5).tolist() == [0.5, 1.5, 2.5]
    assert thin(Counter(), reference, keep=5).tolist() == []


@pytest.mark.parametrize("family", [*TREE_FAMILIES, "ensemble"])
def test_shap_adds_up_to_the_models_output_for_every_family(
    family: str,
    families: dict[str, Fitted],
    split: tuple[Dataset, Dataset],
    explain_settings: Settings,
) -> None:
    """Base value plus contributions equals the model's own output in the stated space: the
    probability, or the log-odds as the model computes it (``decision_function``, LightGBM's raw
    score, XGBoost's margin). An ensemble of unlike models (as auto-sklearn builds) has no tree
    SHAP and goes through the model-agnostic path."""
    if family == "ensemble":
        ensemble = VotingClassifier(
            [
                ("tree", DecisionTreeClassifier(max_depth=5, random_state=0)),
                ("linear", make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))),
            ],
            voting="soft",
        )
        fitted = fit(ensemble, split, explain_settings, rows=4)
        assert fitted.explainers.shap.algorithm == "permutation"
        space = "probability"
    else:
        fitted = families[family]
        assert fitted.explainers.shap.algorithm == "tree_path_dependent"
        space = SHAP_SPACES[family]
    assert fitted.explainers.shap.output_space == space
    estimator = fitted.pipeline[-1]
    engineered = fitted.pipeline[:-1].transform(fitted.rows)
    if space == "probability":
        expected = fitted.pipeline.predict_proba(fitted.rows)[:, 1]
    elif family == "lightgbm":
        expected = estimator.predict(engineered, raw_score=True)
    elif family == "xgboost":
        expected = estimator.predict(engineered, output_margin=True)
    else:
        expected = estimator.decision_function(engineered)
    for i in range(len(fitted.rows)):
        answer = fitted.explainers.explain(one(fitted, i), "shap", validated=True)
        assert isinstance(answer, ShapExplanation)
        total = answer.base_value + sum(c.contribution for c in answer.contributions)
        assert abs(total - float(expected[i])) <= 1e-6, (family, i)
        assert answer.additivity_error <= 1e-6


def test_shap_contributions_break_derived_features_down_into_raw_columns(forest: Fitted) -> None:
    answer = forest.explainers.explain(one(forest, 0), "shap", validated=True)
    assert isinstance(answer, ShapExplanation)
    raw = one(forest, 0).iloc[0]
    differences = 0
    for contribution in answer.contributions:
        assert contribution.terms, contribution.feature
        assert contribution.value == pytest.approx(
            sum(t.sign * t.value for t in contribution.terms), abs=1e-9
        )
        for term in contribution.terms:
            assert term.value == pytest.approx(float(raw[term.column]))
        differences += len(contribution.terms) == 2
    engineered = set(forest.explainers.reference.columns)
    assert differences == len(engineered - set(COLUMNS))  # a feature not a raw column: derived


# -- anchors: the search as asked, and a decision tree's path --------------------------------


def test_the_anchor_search_runs_with_the_beam_and_batch_sizes_asked_for(
    boosting: Fitted, explain_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """anchor-exp's ``explain_instance`` takes ``beam_size`` and never passes it on: its search
    then keeps one rule per length. The spy sees what the search itself receives."""
    original = AnchorBaseBeam.anchor_beam
    received: list[dict[str, Any]] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        bound = inspect.signature(original).bind(*args, **kwargs)
        bound.apply_defaults()
        received.append(dict(bound.arguments))
        return original(*args, **kwargs)

    monkeypatch.setattr(AnchorBaseBeam, "anchor_beam", staticmethod(spy))
    asked = explain_settings.model_copy(
        update={"explain_anchor_beam_size": 3, "explain_anchor_batch_size": 50}
    )
    explainers = Explainers.build(boosting.pipeline, boosting.profile, "beam", asked)
    answer = explainers.explain(one(boosting, 0), "anchor", validated=True)
    assert isinstance(answer, AnchorExplanation)
    assert received and received[-1]["beam_size"] == 3 and received[-1]["batch_size"] == 50

    # the library's own call, for contrast: the beam size asked for never reaches the search
    x = explainers.engineered(one(boosting, 0), validated=True).to_numpy()[0]
    explainers.anchor._explainer.explain_instance(
        x, explainers.model.labels, beam_size=3, max_anchor_size=1
    )
    assert received[-1]["beam_size"] == 1


@pytest.fixture(scope="module")
def tree(families: dict[str, Fitted]) -> Fitted:
    return families["decision_tree"]


def test_a_decision_trees_anchor_is_its_path_with_precision_1_on_resampled_rows(
    tree: Fitted,
) -> None:
    explainers = tree.explainers
    estimator = tree.pipeline[-1]
    reference = explainers.reference
    for i in range(len(tree.rows)):
        answer = explainers.explain(one(tree, i), "anchor", validated=True)
        assert isinstance(answer, AnchorExplanation)
        assert answer.binning == "decision_path" and answer.samples == 0
        assert not answer.partial and answer.precision == 1.0
        # resampled independently: every row drawn under the path gets the row's label
        drawn = draw_under(
            reference.to_numpy(),
            list(reference.columns),
            answer.conditions,
            2000,
            np.random.default_rng(i + 7),
        )
        labels = explainers.model.labels(drawn)
        assert np.all(labels == CLASS_NAMES.index(answer.label))
        # coverage: the share of reference rows that reach the row's leaf
        engineered = explainers.engineered(one(tree, i), validated=True)
        leaf = estimator.apply(engineered)[0]
        assert answer.coverage == pytest.approx(float(np.mean(estimator.apply(reference) == leaf)))
        for condition in answer.conditions:
            assert holds(condition, float(engineered[condition.feature].iloc[0]))
            assert condition.formula


# -- LIME: repeatable, its fit reported and flagged -------------------------------------------


def test_lime_gives_the_same_answer_for_the_same_row_and_model_version(
    boosting: Fitted, explain_settings: Settings
) -> None:
    def stable(answer: Any) -> dict[str, Any]:
        fields = answer.as_dict()
        fields.pop("seconds")
        return fields

    first = boosting.explainers.explain(one(boosting, 3), "lime", validated=True)
    boosting.explainers.explain(one(boosting, 4), "lime", validated=True)  # another row between
    again = boosting.explainers.explain(one(boosting, 3), "lime", validated=True)
    rebuilt = Explainers.build(boosting.pipeline, boosting.profile, "test", explain_settings)
    elsewhere = rebuilt.explain(one(boosting, 3), "lime", validated=True)
    assert stable(first) == stable(again) == stable(elsewhere)


def test_lime_answers_whose_local_fit_is_below_the_setting_are_flagged_low_fidelity(
    forest: Fitted, explain_settings: Settings
) -> None:
    answer = forest.explainers.explain(one(forest, 1), "lime", validated=True)
    assert isinstance(answer, LimeExplanation)
    assert 0.0 < answer.score < 1.0
    for min_score, flagged in ((answer.score + 0.01, True), (answer.score - 0.01, False)):
        asked = explain_settings.model_copy(update={"explain_lime_min_score": min_score})
        explainers = Explainers.build(forest.pipeline, forest.profile, "test", asked)
        flagged_answer = explainers.explain(one(forest, 1), "lime", validated=True)
        assert isinstance(flagged_answer, LimeExplanation)
        assert flagged_answer.score == answer.score
        assert flagged_answer.min_score == min_score and flagged_answer.low_fidelity is flagged
