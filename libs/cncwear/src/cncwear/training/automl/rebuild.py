"""auto-sklearn's configurations rebuilt as plain, modern scikit-learn estimators.

:func:`rebuild` turns the configuration the sidecar found into an equivalent *modern* scikit-learn
estimator: the search space is restricted (:data:`SEARCH_SPACE`) to components whose auto-sklearn
implementation is a thin wrapper around a scikit-learn class, and every hyperparameter is
translated the way the wrapper uses it (``docs/automl.md`` lists them). A configuration with
anything else is refused with :class:`UnsupportedConfigurationError` rather than approximated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.base import ClassifierMixin, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    Normalizer,
    PolynomialFeatures,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier

from cncwear.core.errors import UnsupportedConfigurationError

CLASSIFIERS = (
    "gradient_boosting",
    "random_forest",
    "extra_trees",
    "decision_tree",
    "k_nearest_neighbors",
)
FEATURE_PREPROCESSORS = ("no_preprocessing", "pca", "polynomial")
RESCALERS = (
    "none",
    "minmax",
    "normalize",
    "power_transformer",
    "quantile_transformer",
    "robust_scaler",
    "standardize",
)
SEARCH_SPACE: dict[str, list[str]] = {
    "classifier": list(CLASSIFIERS),
    "feature_preprocessor": list(FEATURE_PREPROCESSORS),
    "data_preprocessor": ["feature_type"],
}
"""auto-sklearn's ``include``: the components :func:`rebuild` reproduces faithfully. The data
preprocessor ``feature_type`` brings imputation and the rescalers above; balancing (none or
weighting) is always part of auto-sklearn's space and rebuilt too."""

_NUMERICAL = "data_preprocessor:feature_type:numerical_transformer:"
_RESCALING = f"{_NUMERICAL}rescaling:"


class _Configuration:
    """Reads an auto-sklearn configuration and remembers which hyperparameters were used, so that
    one nobody reads (a component or option this module does not know) is refused."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = dict(values)
        self.used: set[str] = set()

    def get(self, key: str) -> Any:
        if key not in self.values:
            raise UnsupportedConfigurationError(f"the configuration has no {key!r}")
        self.used.add(key)
        return self.values[key]

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = str(self.get(key))
        if value not in allowed:
            raise UnsupportedConfigurationError(
                f"{key} = {value!r} cannot be rebuilt faithfully; supported: {', '.join(allowed)}"
            )
        return value

    def constant(self, key: str, expected: Any) -> None:
        value = self.get(key)
        if str(value) != str(expected):
            raise UnsupportedConfigurationError(f"{key} = {value!r}, only {expected!r} is rebuilt")

    def integer(self, key: str) -> int:
        return int(self.get(key))

    def number(self, key: str) -> float:
        value = self.get(key)
        if isinstance(value, str):
            raise UnsupportedConfigurationError(f"{key} = {value!r} is not a number")
        return float(value)

    def boolean(self, key: str) -> bool:
        value = str(self.get(key))
        if value not in ("True", "False"):
            raise UnsupportedConfigurationError(f"{key} = {value!r} is not a boolean")
        return value == "True"

    def optional_integer(self, key: str) -> int | None:
        value = self.get(key)
        return None if str(value) == "None" else int(value)

    def check_all_used(self) -> None:
        unused = sorted(set(self.values) - self.used)
        if unused:
            raise UnsupportedConfigurationError(
                f"hyperparameters not rebuilt: {', '.join(unused)} (outside the restricted space)"
            )


def rebuild(
    configuration: Mapping[str, Any], *, classifier_input_width: int, seed: int
) -> ClassifierMixin:
    """An unfitted modern scikit-learn estimator equivalent to auto-sklearn's pipeline for
    ``configuration``: the bare classifier when auto-sklearn's preprocessing leaves the features
    as they are, else a Pipeline ``rescaling -> preprocessor -> classifier``.

    ``classifier_input_width`` is the number of columns auto-sklearn's classifier saw: its forests
    draw ``width ** max_features`` features per split and its tree's depth is a multiple of the
    width. Raises :class:`UnsupportedConfigurationError` for anything outside
    :data:`SEARCH_SPACE`."""
    config = _Configuration(configuration)
    config.choice("data_preprocessor:__choice__", ("feature_type",))
    # Imputation: cncwear's rows are validated finite and its features are differences of them,
    # so there is nothing to impute (the engine refuses non-finite data); auto-sklearn's variance
    # threshold (0.0) follows cncwear's own constant-column step, fitted on the same rows: both are
    # no-ops and left out.
    config.choice(f"{_NUMERICAL}imputation:strategy", ("mean", "median", "most_frequent"))
    steps: list[tuple[str, TransformerMixin]] = []
    rescaler = _rescaler(config, seed)
    if rescaler is not None:
        steps.append(("rescaling", rescaler))
    preprocessor = _feature_preprocessor(config)
    if preprocessor is not None:
        steps.append(("preprocessor", preprocessor))
    balanced = config.choice("balancing:strategy", ("none", "weighting")) == "weighting"
    classifier = _classifier(config, classifier_input_width, seed, balanced=balanced)
    config.check_all_used()
    if not steps:
        return classifier
    return Pipeline([*steps, ("classifier", classifier)])


def _rescaler(config: _Configuration, seed: int) -> TransformerMixin | None:
    choice = config.choice(f"{_RESCALING}__choice__", RESCALERS)
    key = f"{_RESCALING}{choice}:"
    if choice == "quantile_transformer":
        return QuantileTransformer(
            n_quantiles=config.integer(f"{key}n_quantiles"),
            output_distribution=config.choice(f"{key}output_distribution", ("normal", "uniform")),
            subsample=100_000,  # scikit-learn 0.24's default, which auto-sklearn used
            random_state=seed,
        )
    if choice == "robust_scaler":
        # auto-sklearn passes its quantiles (0.001-0.3, 0.7-0.999) where scikit-learn expects
        # percents, so its "robust scaler" scales by a narrow band around the median. Reproduced.
        return RobustScaler(
            quantile_range=(config.number(f"{key}q_min"), config.number(f"{key}q_max"))
        )
    plain: dict[str, type[TransformerMixin] | None] = {
        "none": None,
        "minmax": MinMaxScaler,
        "normalize": Normalizer,
        "power_transformer": PowerTransformer,  # Yeo-Johnson, standardised, as in auto-sklearn
        "standardize": StandardScaler,
    }
    scaler = plain[choice]
    return None if scaler is None else scaler()


def _feature_preprocessor(config: _Configuration) -> TransformerMixin | None:
    choice = config.choice("feature_preprocessor:__choice__", FEATURE_PREPROCESSORS)
    key = f"feature_preprocessor:{choice}:"
    if choice == "pca":
        return PCA(
            n_components=config.number(f"{key}keep_variance"),
            whiten=config.boolean(f"{key}whiten"),
            svd_solver="full",  # what PCA(float) used in scikit-learn 0.24
        )
    if choice == "polynomial":
        return PolynomialFeatures(
            degree=config.integer(f"{key}degree"),
            interaction_only=config.boolean(f"{key}interaction_only"),
            include_bias=config.boolean(f"{key}include_bias"),
        )
    return None


def _classifier(
    config: _Configuration, width: int, seed: int, *, balanced: bool
) -> ClassifierMixin:
    choice = config.choice("classifier:__choice__", CLASSIFIERS)
    key = f"classifier:{choice}:"
    class_weight = "balanced" if balanced else None
    # auto-sklearn's "weighting" gives every row n / (2 * rows of its class): the binary case of
    # scikit-learn's class_weight="balanced" (as sample weights for forests and boosting, as
    # class_weight for the tree). k-nearest neighbours ignore it, in auto-sklearn as here.
    if choice == "gradient_boosting":
        return _gradient_boosting(config, key, seed, class_weight)
    if choice in ("random_forest", "extra_trees"):
        forest = RandomForestClassifier if choice == "random_forest" else ExtraTreesClassifier
        config.constant(f"{key}max_depth", "None")
        config.constant(f"{key}max_leaf_nodes", "None")
        return forest(
            n_estimators=512,  # auto-sklearn grows its forests to get_max_iter() = 512 trees
            criterion=config.choice(f"{key}criterion", ("gini", "entropy")),
            max_features=_forest_max_features(config.number(f"{key}max_features"), width),
            min_samples_split=config.integer(f"{key}min_samples_split"),
            min_samples_leaf=config.integer(f"{key}min_samples_leaf"),
            min_weight_fraction_leaf=config.number(f"{key}min_weight_fraction_leaf"),
            bootstrap=config.boolean(f"{key}bootstrap"),
            min_impurity_decrease=config.number(f"{key}min_impurity_decrease"),
            class_weight=class_weight,
            random_state=seed,
            n_jobs=1,
        )
    if choice == "decision_tree":
        config.constant(f"{key}max_features", 1.0)  # in its space, never passed to scikit-learn
        config.constant(f"{key}max_leaf_nodes", "None")
        factor = config.get(f"{key}max_depth_factor")
        # auto-sklearn truncates the factor to an integer before multiplying (0, 1 or 2 x width).
        depth = None if str(factor) == "None" else max(1, round(int(float(factor)) * width))
        return DecisionTreeClassifier(
            criterion=config.choice(f"{key}criterion", ("gini", "entropy")),
            max_depth=depth,
            min_samples_split=config.integer(f"{key}min_samples_split"),
            min_samples_leaf=config.integer(f"{key}min_samples_leaf"),
            min_weight_fraction_leaf=config.number(f"{key}min_weight_fraction_leaf"),
            min_impurity_decrease=config.number(f"{key}min_impurity_decrease"),
            class_weight=class_weight,
            random_state=seed,
        )
    return KNeighborsClassifier(
        n_neighbors=config.integer(f"{key}n_neighbors"),
        weights=config.choice(f"{key}weights", ("uniform", "distance")),
        p=config.integer(f"{key}p"),
    )


def _gradient_boosting(
    config: _Configuration, key: str, seed: int, class_weight: str | None
) -> HistGradientBoostingClassifier:
    config.constant(f"{key}loss", "auto")  # binary: log loss
    config.constant(f"{key}max_depth", "None")
    config.constant(f"{key}scoring", "loss")
    early_stop = config.choice(f"{key}early_stop", ("off", "train", "valid"))
    patience, fraction = 10, None
    if early_stop != "off":
        patience = config.integer(f"{key}n_iter_no_change")
    if early_stop == "valid":
        fraction = config.number(f"{key}validation_fraction")
    return HistGradientBoostingClassifier(
        loss="log_loss",
        learning_rate=config.number(f"{key}learning_rate"),
        max_iter=512,  # auto-sklearn boosts up to get_max_iter() = 512 iterations
        min_samples_leaf=config.integer(f"{key}min_samples_leaf"),
        max_depth=None,
        max_leaf_nodes=config.optional_integer(f"{key}max_leaf_nodes"),
        max_bins=config.integer(f"{key}max_bins"),
        l2_regularization=config.number(f"{key}l2_regularization"),
        tol=config.number(f"{key}tol"),
        scoring="loss",
        early_stopping=early_stop != "off",
        n_iter_no_change=patience,
        validation_fraction=fraction,
        class_weight=class_weight,
        random_state=seed,
    )


def _forest_max_features(exponent: float, width: int) -> float:
    """auto-sklearn's forests draw ``int(width ** exponent)`` features per split. As a fraction of
    the width, so that the rebuilt forest draws exactly as many on the width auto-sklearn saw and
    proportionally as many if the refit's feature selection keeps a different number."""
    if not 0.0 <= exponent <= 1.0:
        raise UnsupportedConfigurationError(f"max_features exponent {exponent} outside [0, 1]")
    count = max(1, int(width**exponent))
    if count >= width:
        return 1.0
    return (count + 0.5) / width  # scikit-learn takes int(fraction * width) = count
