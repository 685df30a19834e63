"""The auto-sklearn sidecar: runs auto-sklearn 0.15.0 in its own Python 3.9 environment.

auto-sklearn pins scikit-learn 0.24 and Python <= 3.9, so it cannot live in cncwear's runtime. The
main runtime (``cncwear.training.automl.sidecar_process``) starts this script with the sidecar's
interpreter:

    python autosklearn_sidecar.py REQUEST.json RESPONSE.json

It reads the request (JSON) and the training data it names (an ``.npz`` of plain arrays: ``x``,
``y``, ``test_fold``, optionally ``x_test``), does what the request's ``mode`` says and writes the
response (JSON). Nothing of the main runtime is unpickled here and nothing pickled goes back: the
result of a search is the configuration of the best pipeline, which the main runtime rebuilds as a
modern scikit-learn pipeline.

Modes:

* ``search``: auto-sklearn's SMAC search within the time budget, on the given grouped folds
  (``test_fold``, a ``PredefinedSplit``), restricted to the components in ``include``, meta-learning
  on or off; returns the best single configuration, its cross-validated accuracy (auto-sklearn's own
  validation score) and a short leaderboard. No ensemble is built: one pipeline is rebuilt.
* ``fit``: fits given (possibly partial) configurations on ``x``/``y`` exactly as auto-sklearn does
  and returns their class probabilities on ``x_test``; a partial configuration is completed by
  seeded sampling from the restricted space. The main runtime's tests use it to check that a
  rebuilt pipeline behaves like auto-sklearn's own.
* ``version``: the versions of Python, auto-sklearn and scikit-learn.

This file must run on Python 3.9 with auto-sklearn's dependencies only: it never imports cncwear.
Exit code 0 with ``"status": "ok"``; 1 with ``"status": "error"`` and the traceback.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import autosklearn
import numpy as np
import sklearn
from autosklearn.classification import AutoSklearnClassifier
from autosklearn.metrics import accuracy
from autosklearn.pipeline.classification import SimpleClassificationPipeline
from ConfigSpace.configuration_space import Configuration
from ConfigSpace.hyperparameters import CategoricalHyperparameter
from sklearn.model_selection import PredefinedSplit

PROTOCOL = 1
SUCCESS = "SUCCESS"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: autosklearn_sidecar.py REQUEST.json RESPONSE.json\n")
        return 2
    request_path, response_path = Path(argv[1]), Path(argv[2])
    started = time.monotonic()
    try:
        request = json.loads(request_path.read_text())
        if request.get("protocol") != PROTOCOL:
            raise ValueError(f"protocol {request.get('protocol')!r} != {PROTOCOL}")
        mode = request["mode"]
        if mode == "search":
            response = search(request)
        elif mode == "fit":
            response = fit_configurations(request)
        elif mode == "version":
            response = versions()
        else:
            raise ValueError(f"unknown mode {mode!r}")
        response["status"] = "ok"
        code = 0
    except Exception as error:
        response = {
            "status": "error",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc(),
        }
        code = 1
    response["protocol"] = PROTOCOL
    response["wall_seconds"] = time.monotonic() - started
    temporary = response_path.with_suffix(".partial")
    temporary.write_text(json.dumps(response, default=_plain))
    temporary.replace(response_path)
    return code


def versions() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "autosklearn": autosklearn.__version__,
        "sklearn": sklearn.__version__,
    }


def search(request: dict[str, Any]) -> dict[str, Any]:
    data = np.load(request["data"])
    x, y, test_fold = data["x"], data["y"], data["test_fold"]
    seed = int(request["seed"])
    with tempfile.TemporaryDirectory(prefix="cncwear-autosklearn-") as scratch:
        automl = AutoSklearnClassifier(
            time_left_for_this_task=int(request["seconds"]),
            per_run_time_limit=int(request["per_run_seconds"]),
            initial_configurations_via_metalearning=(25 if request["metalearning"] else 0),
            ensemble_class=None,
            seed=seed,
            memory_limit=request.get("memory_limit_mb"),
            include=request["include"],
            resampling_strategy=PredefinedSplit(test_fold),
            tmp_folder=str(Path(scratch) / "run"),
            delete_tmp_folder_after_terminate=True,
            n_jobs=int(request.get("n_jobs", 1)),
            metric=accuracy,
            dataset_compression=False,
            load_models=False,
        )
        automl.fit(x, y, dataset_name="cncwear")  # numpy input: every column numerical
        runs = _runs(automl)
        successful = [r for r in runs if r["status"] == SUCCESS]
        if not successful:
            statuses = sorted({r["status"] for r in runs})
            raise RuntimeError(
                f"auto-sklearn evaluated {len(runs)} configuration(s) within "
                f"{request['seconds']} s and none succeeded (statuses: {statuses}); "
                "give it a larger budget"
            )
        best = min(successful, key=lambda r: (r["cost"], r["config_id"]))
        width = _classifier_input_width(best["configuration"], x, y, request["include"], seed)
        leaderboard = sorted(successful, key=lambda r: (r["cost"], r["config_id"]))[:5]
    return {
        **versions(),
        "configuration": best["configuration"],
        "validation_accuracy": 1.0 - best["cost"],
        "classifier_input_width": width,
        "trials": len(runs),
        "successful_trials": len(successful),
        "statuses": _count(r["status"] for r in runs),
        "leaderboard": [
            {
                "config_id": r["config_id"],
                "validation_accuracy": 1.0 - r["cost"],
                "classifier": r["configuration"].get("classifier:__choice__"),
                "feature_preprocessor": r["configuration"].get("feature_preprocessor:__choice__"),
                "rescaling": r["configuration"].get(
                    "data_preprocessor:feature_type:numerical_transformer:rescaling:__choice__"
                ),
            }
            for r in leaderboard
        ],
    }


def _runs(automl: Any) -> list[dict[str, Any]]:
    history = automl.automl_.runhistory_
    runs = []
    for key, value in history.data.items():
        configuration = history.ids_config.get(key.config_id)
        if configuration is None:
            continue
        cost = value.cost if not isinstance(value.cost, (list, tuple)) else value.cost[0]
        runs.append(
            {
                "config_id": int(key.config_id),
                "cost": float(cost),
                "status": str(value.status.name),
                "seconds": float(value.time),
                "configuration": dict(configuration.get_dictionary()),
            }
        )
    return runs


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def _pipeline(
    configuration: dict[str, Any], include: dict[str, list[str]], n_features: int, seed: int
) -> Any:
    space = _space(include, n_features, seed)
    return SimpleClassificationPipeline(
        config=Configuration(space, values=configuration),
        feat_type=_feat_type(n_features),
        dataset_properties=_dataset_properties(),
        include=include,
        random_state=seed,
    )


def _classifier_input_width(
    configuration: dict[str, Any], x: Any, y: Any, include: dict[str, list[str]], seed: int
) -> int:
    """Number of columns the classifier of ``configuration`` sees on ``x`` after auto-sklearn's
    preprocessing: RandomForest and ExtraTrees draw ``width ** max_features`` features, the decision
    tree's depth is a multiple of it."""
    pipeline = _pipeline(configuration, include, x.shape[1], seed)
    transformed, _ = pipeline.fit_transformer(x.copy(), y)
    return int(transformed.shape[1])


def fit_configurations(request: dict[str, Any]) -> dict[str, Any]:
    data = np.load(request["data"])
    x, y, x_test = data["x"], data["y"], data["x_test"]
    seed = int(request["seed"])
    include = request["include"]
    fitted = []
    for index, partial in enumerate(request["configurations"]):
        started = time.monotonic()
        configuration = _complete(partial, include, x.shape[1], seed + index)
        pipeline = _pipeline(configuration, include, x.shape[1], seed)
        pipeline.fit(x.copy(), y)
        fitted.append(
            {
                "configuration": configuration,
                "classifier_input_width": _classifier_input_width(
                    configuration, x, y, include, seed
                ),
                "probabilities": pipeline.predict_proba(x_test.copy()).tolist(),
                "seconds": time.monotonic() - started,
            }
        )
    return {**versions(), "fitted": fitted}


def _complete(
    partial: dict[str, Any], include: dict[str, list[str]], n_features: int, seed: int
) -> dict[str, Any]:
    """A full configuration of the restricted space agreeing with ``partial``: seeded samples until
    one has its categorical values (component choices and the like), then its numbers set."""
    narrowed = dict(include)
    for step, key in (
        ("classifier", "classifier:__choice__"),
        ("feature_preprocessor", "feature_preprocessor:__choice__"),
    ):
        if key in partial:
            narrowed[step] = [partial[key]]
    space = _space(narrowed, n_features, seed)
    categorical = {
        k: v
        for k, v in partial.items()
        if isinstance(space.get_hyperparameter(k), CategoricalHyperparameter)
    }
    for candidate in space.sample_configuration(5000):
        values = dict(candidate.get_dictionary())
        if all(values.get(k) == v for k, v in categorical.items()):
            values.update(partial)
            Configuration(_space(include, n_features, seed), values=values)  # valid in the space
            return values
    raise ValueError(f"no configuration of the space matches {partial}")


def _space(include: dict[str, list[str]], n_features: int, seed: int) -> Any:
    space = SimpleClassificationPipeline(
        feat_type=_feat_type(n_features),
        dataset_properties=_dataset_properties(),
        include=include,
        random_state=seed,
    ).get_hyperparameter_search_space(feat_type=_feat_type(n_features))
    space.seed(seed)
    return space


def _feat_type(n_features: int) -> dict[int, str]:
    return {i: "numerical" for i in range(n_features)}


def _dataset_properties() -> dict[str, Any]:
    return {
        "multilabel": False,
        "multiclass": False,
        "sparse": False,
        "target_type": "classification",
    }


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
