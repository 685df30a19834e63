"""Global views of a model over its training reference: SHAP feature importance, a surrogate
decision tree with its fidelity, and partial dependence with ICE curves, as numbers to plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier, export_text

from cncwear.core.schema import CLASS_NAMES
from cncwear.explain.model import ModelFunction
from cncwear.explain.results import FeatureImportance, PartialDependence, Surrogate
from cncwear.explain.shap_explainer import ShapExplainer

SURROGATE_CHECK_SHARE = 0.3
PARTIAL_DEPENDENCE_FEATURES = 3
PARTIAL_DEPENDENCE_ROWS = 500
GRID_POINTS = 20
GRID_PERCENTILES = (5.0, 95.0)
ICE_ROWS = 50


def importance(
    explainer: ShapExplainer, reference: pd.DataFrame, *, rows: int, seed: int
) -> tuple[list[FeatureImportance], int]:
    """Mean absolute SHAP value of each feature over a random subset of the reference."""
    subset = reference.sample(min(rows, len(reference)), random_state=seed)
    values = explainer.values(subset).values
    mean_abs = np.mean(np.abs(values), axis=0)
    ranked = sorted(zip(reference.columns, mean_abs, strict=True), key=lambda p: -p[1])
    return [FeatureImportance(str(f), float(v)) for f, v in ranked], len(subset)


def surrogate(model: ModelFunction, reference: pd.DataFrame, *, depth: int, seed: int) -> Surrogate:
    """A decision tree of ``depth`` fitted to the model's labels on part of the reference; its
    fidelity is its agreement with the model on the rest."""
    labels = model.labels(reference.to_numpy(dtype=float))
    order = np.random.default_rng(seed).permutation(len(reference))
    check_count = max(1, round(len(reference) * SURROGATE_CHECK_SHARE))
    check, fit = order[:check_count], order[check_count:]
    tree = DecisionTreeClassifier(max_depth=depth, random_state=seed)
    tree.fit(reference.iloc[fit], labels[fit])
    agreement = tree.predict(reference.iloc[check]) == labels[check]
    rules = export_text(
        tree,
        feature_names=[str(c) for c in reference.columns],
        class_names=[CLASS_NAMES[int(c)] for c in tree.classes_],
        decimals=6,
        show_weights=False,
    )
    return Surrogate(
        depth=int(tree.get_depth()),
        leaves=int(tree.get_n_leaves()),
        fidelity_accuracy=float(np.mean(agreement)),
        fit_rows=len(fit),
        check_rows=len(check),
        rules=rules,
    )


def partial_dependence(
    model: ModelFunction, reference: pd.DataFrame, features: list[str], *, seed: int
) -> list[PartialDependence]:
    """Probability of wear as each feature sweeps a grid between its 5th and 95th percentiles,
    every other feature held at each row's own value: one ICE curve per row, their mean is the
    partial dependence."""
    rows = reference.sample(min(PARTIAL_DEPENDENCE_ROWS, len(reference)), random_state=seed)
    base = rows.to_numpy(dtype=float)
    curves = []
    for feature in features:
        column = list(reference.columns).index(feature)
        grid = np.unique(
            np.percentile(
                reference[feature].to_numpy(dtype=float),
                np.linspace(*GRID_PERCENTILES, GRID_POINTS),
            )
        )
        swept = np.repeat(base[np.newaxis], len(grid), axis=0)  # grid x rows x features
        swept[:, :, column] = grid[:, np.newaxis]
        ice = model.probability_worn(swept.reshape(-1, base.shape[1])).reshape(len(grid), -1).T
        curves.append(
            PartialDependence(
                feature=feature,
                grid=grid.tolist(),
                average=ice.mean(axis=0).tolist(),
                ice=ice[:ICE_ROWS].tolist(),
                ice_rows=min(ICE_ROWS, len(ice)),
            )
        )
    return curves
