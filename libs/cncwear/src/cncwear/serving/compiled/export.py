"""The compiled form of a registered model: an ONNX graph run by onnxruntime, made when a version is
registered, checked against scikit-learn on held-out rows and stored with the version.

Why: scikit-learn spends milliseconds of Python overhead on every ``predict_proba`` call; the same
trees in onnxruntime answer in tens of microseconds. Why not skl2onnx's tree converters as they are:
they build float32 trees (a float32 threshold moves rows to the other branch, which moved
probabilities by up to 0.06 on this data) and skl2onnx 1.20 fails on HistGradientBoosting with
onnx 1.23. So tree ensembles are exported here, exactly:

* the graph takes the *raw* numeric columns in double precision and does the pipeline's feature
  arithmetic itself (gathers and command-minus-actual differences), so one ONNX file replaces the
  whole pipeline. The arithmetic is not hard-coded: it is read off the fitted feature steps by
  probing them with unit rows, and accepted only if it reproduces their output bit for bit;
* the trees are one ``ai.onnx.ml`` opset-5 ``TreeEnsemble`` with double thresholds and double leaf
  weights. scikit-learn's own trees compare ``float32(x) <= threshold``, so the graph casts the
  features to float32 and back before them, exactly as scikit-learn does; histogram gradient
  boosting compares doubles and gets no cast;
* forests sum the trees' leaf probabilities then divide by their number, boosting adds the
  baseline and applies the logistic function, in double, as scikit-learn does;
* LightGBM's trees are read from its own model dump (double thresholds, double comparisons, its
  missing-value directions) and summed before its sigmoid, as LightGBM predicts. Besides speed, this
  keeps LightGBM's OpenMP threads out of the server: on a busy machine they made one row take 25 ms.

Other final estimators go through skl2onnx with double inputs. Whatever the converter, the result is
trusted only if its probabilities match scikit-learn's on the given rows within ``TOLERANCE``; the
measured difference is recorded on the version, with a sample of rows so that a server can check
parity again with its own library versions before it uses the compiled form. A model that cannot be
converted, or fails the check, is served by scikit-learn (the fallback), and the version says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from lightgbm import LGBMClassifier
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

from cncwear.core.errors import CncwearError
from cncwear.core.schema import PROCESS_COLUMN, numeric_columns, validate_rows
from cncwear.registry.store import LoadedModel, ModelStore
from cncwear.serving.scoring import model_input_columns

logger = logging.getLogger(__name__)

TOLERANCE = 1e-9
"""Largest absolute difference in wear probability allowed between the compiled form and
scikit-learn. The exact exporter measures about 1e-16; the acceptance bar of the service is 1e-6."""

ARTIFACT_DIR = "compiled"
ONNX_FILE = "model.onnx"
PARITY_FILE = "parity_rows.json"
PARITY_SAMPLE_ROWS = 256
"""Rows stored with the compiled form for the check a server makes when it loads it."""

INPUT_NAME = "raw"
OUTPUT_NAME = "probability_worn"
METADATA_COLUMNS_KEY = "cncwear.input_columns"
OPSET = 21
ML_OPSET = 5
IR_VERSION = 10

_SKLEARN_TREES = (DecisionTreeClassifier, ExtraTreeClassifier)
_SKLEARN_FORESTS = (RandomForestClassifier, ExtraTreesClassifier)


class CompiledTag:
    """Tags on a model version that describe its compiled form."""

    FORMAT = "cncwear.compiled.format"
    """``onnx`` when a checked compiled form exists, ``none`` when the version is served by
    scikit-learn."""
    ARTIFACT = "cncwear.compiled.artifact"
    """Folder of the compiled form among the artifacts of the version's run."""
    SHA256 = "cncwear.compiled.sha256"
    CONVERTER = "cncwear.compiled.converter"
    TOLERANCE = "cncwear.compiled.tolerance"
    MAX_ABS_DIFF = "cncwear.compiled.max_abs_diff"
    PARITY_ROWS = "cncwear.compiled.parity_rows"
    RUNTIME = "cncwear.compiled.runtime"
    REASON = "cncwear.compiled.reason"


class CompileError(CncwearError):
    """A model that cannot be compiled, or whose compiled form does not match scikit-learn."""


@dataclass(frozen=True)
class ParityReport:
    rows: int
    max_abs_diff: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


# -- conversion ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureMap:
    """The pipeline's feature steps as arithmetic on the raw numeric columns:
    ``feature[j] = raw[plus[j]] - (raw[minus[j]] if has_minus[j] else 0)``."""

    raw_columns: list[str]
    plus: np.ndarray
    minus: np.ndarray
    has_minus: np.ndarray

    def apply(self, raw: np.ndarray) -> np.ndarray:
        difference = raw[:, self.plus] - raw[:, self.minus] * self.has_minus
        return np.asarray(difference, dtype=np.float64)


def feature_map(pipeline: Pipeline, rows: pd.DataFrame) -> FeatureMap:
    """Read the feature steps (all steps but the last) off a fitted pipeline by probing them with a
    row of zeros and one unit row per raw numeric column; accept the map only if it reproduces the
    steps' output on ``rows`` (validated raw rows) exactly."""
    columns = model_input_columns(pipeline)
    raw_columns = numeric_columns(columns)
    features = pipeline[:-1]
    probe = pd.DataFrame(
        np.vstack([np.zeros(len(raw_columns)), np.eye(len(raw_columns))]), columns=raw_columns
    )
    probe[PROCESS_COLUMN] = str(rows[PROCESS_COLUMN].iloc[0]) if len(rows) else "Layer 1 Up"
    try:
        probed = np.asarray(features.transform(probe[columns]), dtype=np.float64)
    except Exception as error:
        raise CompileError(f"the feature steps cannot be probed: {error}") from error
    bias, weights = probed[0], probed[1:] - probed[0]
    if np.any(bias != 0) or not np.all(np.isin(weights, (-1.0, 0.0, 1.0))):
        raise CompileError("the feature steps are not column picks and differences")
    plus_count, minus_count = (weights == 1).sum(axis=0), (weights == -1).sum(axis=0)
    if np.any(plus_count != 1) or np.any(minus_count > 1):
        raise CompileError("the feature steps are not column picks and differences")
    plus = np.argmax(weights == 1, axis=0).astype(np.int64)
    has_minus = minus_count == 1
    minus = np.where(has_minus, np.argmax(weights == -1, axis=0), 0).astype(np.int64)
    mapping = FeatureMap(raw_columns, plus, minus, has_minus.astype(np.float64))
    expected = np.asarray(features.transform(rows[columns]), dtype=np.float64)
    if not np.array_equal(mapping.apply(rows[raw_columns].to_numpy(np.float64)), expected):
        raise CompileError("the feature steps do not reduce to column picks and differences")
    return mapping


def to_onnx(pipeline: Pipeline, rows: pd.DataFrame) -> tuple[onnx.ModelProto, str]:
    """Convert a fitted cncwear pipeline to one ONNX graph from raw numeric columns (double) to the
    wear probability (double). ``rows`` are validated raw rows used to check the feature map.
    Returns the model and the converter's name; raises :class:`CompileError`."""
    mapping = feature_map(pipeline, rows)
    estimator = pipeline[-1]
    classes = getattr(estimator, "classes_", None)
    if classes is None or list(classes) != [0, 1]:
        raise CompileError("the model is not a binary classifier of classes 0 (unworn), 1 (worn)")
    features = _feature_nodes(mapping)
    if isinstance(estimator, (*_SKLEARN_TREES, *_SKLEARN_FORESTS)):
        head, converter = _sklearn_trees(estimator), "cncwear-trees"
    elif isinstance(estimator, HistGradientBoostingClassifier):
        head, converter = _hist_gradient_boosting(estimator), "cncwear-trees"
    elif isinstance(estimator, LGBMClassifier):
        head, converter = _lightgbm(estimator), "cncwear-trees"
    else:
        return _with_skl2onnx(estimator, mapping), f"skl2onnx {package_version('skl2onnx')}"
    graph = helper.make_graph(
        [*features, *head.nodes],
        "cncwear",
        [_input(mapping)],
        [_output()],
        initializer=[*_feature_initializers(mapping), *head.initializers],
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="cncwear")
    model.ir_version = IR_VERSION
    _set_columns(model, mapping.raw_columns)
    onnx.checker.check_model(model, full_check=True)
    return model, converter


@dataclass
class _Head:
    nodes: list[onnx.NodeProto]
    initializers: list[onnx.TensorProto]


def _input(mapping: FeatureMap) -> onnx.ValueInfoProto:
    width = len(mapping.raw_columns)
    return helper.make_tensor_value_info(INPUT_NAME, TensorProto.DOUBLE, [None, width])


def _output() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.DOUBLE, [None, 1])


def _feature_nodes(mapping: FeatureMap) -> list[onnx.NodeProto]:
    return [
        helper.make_node("Gather", [INPUT_NAME, "plus_index"], ["plus"], axis=1),
        helper.make_node("Gather", [INPUT_NAME, "minus_index"], ["minus"], axis=1),
        helper.make_node("Mul", ["minus", "minus_mask"], ["minus_masked"]),
        helper.make_node("Sub", ["plus", "minus_masked"], ["features"]),
    ]


def _feature_initializers(mapping: FeatureMap) -> list[onnx.TensorProto]:
    return [
        numpy_helper.from_array(mapping.plus, "plus_index"),
        numpy_helper.from_array(mapping.minus, "minus_index"),
        numpy_helper.from_array(mapping.has_minus, "minus_mask"),
    ]


@dataclass
class _Trees:
    """Trees in the layout of ``ai.onnx.ml.TreeEnsemble``: interior nodes, and leaves apart."""

    roots: list[int]
    feature: list[int]
    split: list[float]
    true_id: list[int]
    true_leaf: list[int]
    false_id: list[int]
    false_leaf: list[int]
    missing_true: list[int]
    leaf_weight: list[float]

    @classmethod
    def empty(cls) -> _Trees:
        return cls([], [], [], [], [], [], [], [], [])

    def add(
        self,
        *,
        left: np.ndarray,
        right: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        is_leaf: np.ndarray,
        leaf_value: np.ndarray,
        missing_left: np.ndarray | None = None,
    ) -> None:
        """Add one tree given as arrays over its nodes (node 0 is the root)."""
        interior = np.flatnonzero(~is_leaf)
        leaves = np.flatnonzero(is_leaf)
        node_at = {int(n): len(self.feature) + i for i, n in enumerate(interior)}
        leaf_at = {int(n): len(self.leaf_weight) + i for i, n in enumerate(leaves)}
        self.leaf_weight += [float(leaf_value[n]) for n in leaves]
        if not interior.size:  # a lone leaf: a split whose both branches reach it
            self.roots.append(len(self.feature))
            self._append(feature=0, split=0.0, true=(leaf_at[0], 1), false=(leaf_at[0], 1))
            return
        self.roots.append(node_at[0])

        def target(child: int) -> tuple[int, int]:
            return (leaf_at[child], 1) if is_leaf[child] else (node_at[child], 0)

        for n in interior:
            self._append(
                feature=int(feature[n]),
                split=float(threshold[n]),
                true=target(int(left[n])),
                false=target(int(right[n])),
                missing_true=0 if missing_left is None else int(missing_left[n]),
            )

    def _append(
        self,
        *,
        feature: int,
        split: float,
        true: tuple[int, int],
        false: tuple[int, int],
        missing_true: int = 0,
    ) -> None:
        self.feature.append(feature)
        self.split.append(split)
        self.true_id.append(true[0])
        self.true_leaf.append(true[1])
        self.false_id.append(false[0])
        self.false_leaf.append(false[1])
        self.missing_true.append(missing_true)

    def node(self, source: str, output: str) -> onnx.NodeProto:
        """One ``TreeEnsemble`` summing the trees' leaf weights (``x <= split`` goes true)."""
        return helper.make_node(
            "TreeEnsemble",
            [source],
            [output],
            domain="ai.onnx.ml",
            aggregate_function=1,  # SUM
            post_transform=0,  # NONE
            n_targets=1,
            tree_roots=self.roots,
            nodes_featureids=self.feature,
            nodes_splits=numpy_helper.from_array(np.asarray(self.split, dtype=np.float64)),
            nodes_modes=numpy_helper.from_array(np.zeros(len(self.feature), dtype=np.uint8)),
            nodes_truenodeids=self.true_id,
            nodes_trueleafs=self.true_leaf,
            nodes_falsenodeids=self.false_id,
            nodes_falseleafs=self.false_leaf,
            nodes_missing_value_tracks_true=self.missing_true,
            leaf_targetids=[0] * len(self.leaf_weight),
            leaf_weights=numpy_helper.from_array(np.asarray(self.leaf_weight, dtype=np.float64)),
        )


def _sklearn_trees(estimator: Any) -> _Head:
    """A decision tree or a forest: scikit-learn compares float32 features to double thresholds,
    averages the trees' leaf fractions of class 1."""
    trees = [estimator] if isinstance(estimator, _SKLEARN_TREES) else list(estimator.estimators_)
    ensemble = _Trees.empty()
    for tree in trees:
        structure = tree.tree_
        if structure.n_outputs != 1 or structure.value.shape[2] != 2:
            raise CompileError("only single-output binary trees can be compiled")
        ensemble.add(
            left=structure.children_left,
            right=structure.children_right,
            feature=structure.feature,
            threshold=structure.threshold,
            is_leaf=structure.children_left == -1,
            leaf_value=structure.value[:, 0, 1],
        )
    nodes = [
        helper.make_node("Cast", ["features"], ["features_float32"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["features_float32"], ["features_sk"], to=TensorProto.DOUBLE),
        ensemble.node("features_sk", "leaf_sum"),
        helper.make_node("Div", ["leaf_sum", "tree_count"], [OUTPUT_NAME]),
    ]
    count = numpy_helper.from_array(np.asarray(float(len(trees))), "tree_count")
    return _Head(nodes, [count])


def _hist_gradient_boosting(estimator: HistGradientBoostingClassifier) -> _Head:
    """Histogram gradient boosting: double comparisons, the baseline plus the trees' leaf values,
    then the logistic function."""
    if estimator.n_trees_per_iteration_ != 1:
        raise CompileError("only binary gradient boosting can be compiled")
    if getattr(estimator, "_preprocessor", None) is not None or (
        estimator.is_categorical_ is not None and np.any(estimator.is_categorical_)
    ):
        raise CompileError("gradient boosting with categorical features cannot be compiled")
    ensemble = _Trees.empty()
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        ensemble.add(
            left=nodes["left"],
            right=nodes["right"],
            feature=nodes["feature_idx"],
            threshold=nodes["num_threshold"],
            is_leaf=nodes["is_leaf"].astype(bool),
            leaf_value=nodes["value"],
            missing_left=nodes["missing_go_to_left"],
        )
    baseline = float(np.asarray(estimator._baseline_prediction).ravel()[0])
    nodes = [
        ensemble.node("features", "leaf_sum"),
        helper.make_node("Add", ["baseline", "leaf_sum"], ["raw_score"]),
        helper.make_node("Sigmoid", ["raw_score"], [OUTPUT_NAME]),
    ]
    return _Head(nodes, [numpy_helper.from_array(np.asarray(baseline), "baseline")])


def _lightgbm(estimator: LGBMClassifier) -> _Head:
    """LightGBM: double comparisons (``<=``), leaf values summed (averaged in its random-forest
    mode), then its sigmoid. Splits on categories or with zero taken as missing are refused."""
    dump = estimator.booster_.dump_model()
    objective = str(dump["objective"]).split()
    if objective[0] != "binary" or dump["num_tree_per_iteration"] != 1:
        raise CompileError(f"only binary LightGBM can be compiled, not {dump['objective']!r}")
    scale = float(dict(part.split(":") for part in objective[1:]).get("sigmoid", 1.0))
    ensemble = _Trees.empty()
    for tree in dump["tree_info"]:
        ensemble.add(**_lightgbm_tree_arrays(tree["tree_structure"]))
    nodes = [ensemble.node("features", "leaf_sum")]
    initializers = [numpy_helper.from_array(np.asarray(scale), "sigmoid_scale")]
    if dump["average_output"]:
        count = numpy_helper.from_array(np.asarray(float(len(dump["tree_info"]))), "tree_count")
        nodes.append(helper.make_node("Div", ["leaf_sum", "tree_count"], ["leaf_mean"]))
        initializers.append(count)
        summed = "leaf_mean"
    else:
        summed = "leaf_sum"
    nodes += [
        helper.make_node("Mul", [summed, "sigmoid_scale"], ["raw_score"]),
        helper.make_node("Sigmoid", ["raw_score"], [OUTPUT_NAME]),
    ]
    return _Head(nodes, initializers)


def _lightgbm_tree_arrays(root: dict[str, Any]) -> dict[str, np.ndarray]:
    """One tree of LightGBM's nested dump as the node arrays :meth:`_Trees.add` takes (the root at
    0, children numbered in depth-first order)."""
    nodes: list[dict[str, Any]] = []
    left: list[int] = []
    right: list[int] = []

    def visit(node: dict[str, Any]) -> int:
        index = len(nodes)
        nodes.append(node)
        left.append(-1)
        right.append(-1)
        if "leaf_value" not in node:
            if node["decision_type"] != "<=" or node["missing_type"] == "Zero":
                raise CompileError(
                    "LightGBM splits on categories or with zero as missing cannot be compiled"
                )
            left[index] = visit(node["left_child"])
            right[index] = visit(node["right_child"])
        return index

    visit(root)
    is_leaf = np.array(["leaf_value" in node for node in nodes])
    return {
        "left": np.asarray(left),
        "right": np.asarray(right),
        "feature": np.array([node.get("split_feature", 0) for node in nodes]),
        "threshold": np.array([float(node.get("threshold", 0.0)) for node in nodes]),
        "is_leaf": is_leaf,
        "leaf_value": np.array([float(node.get("leaf_value", 0.0)) for node in nodes]),
        "missing_left": np.array(
            [node.get("missing_type") == "NaN" and bool(node["default_left"]) for node in nodes]
        ),
    }


def _with_skl2onnx(estimator: Any, mapping: FeatureMap) -> onnx.ModelProto:
    """Any other estimator: skl2onnx with double inputs, behind the same feature arithmetic."""
    try:
        head = convert_sklearn(
            estimator,
            initial_types=[("features", DoubleTensorType([None, len(mapping.plus)]))],
            options={id(estimator): {"zipmap": False}},
            target_opset={"": OPSET, "ai.onnx.ml": 3},
        )
    except Exception as error:
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise CompileError(
            f"skl2onnx cannot convert {type(estimator).__name__}: {first_line}"
        ) from error
    probabilities = [o.name for o in head.graph.output if o.name != head.graph.output[0].name]
    if len(probabilities) != 1:
        raise CompileError(f"unexpected outputs of the converted {type(estimator).__name__}")
    nodes = [
        *_feature_nodes(mapping),
        *head.graph.node,
        helper.make_node("Slice", [probabilities[0], "one", "two", "one"], ["worn_column"]),
        helper.make_node("Cast", ["worn_column"], [OUTPUT_NAME], to=TensorProto.DOUBLE),
    ]
    one = numpy_helper.from_array(np.asarray([1], dtype=np.int64), "one")
    two = numpy_helper.from_array(np.asarray([2], dtype=np.int64), "two")
    graph = helper.make_graph(
        nodes,
        "cncwear",
        [_input(mapping)],
        [_output()],
        initializer=[*_feature_initializers(mapping), *head.graph.initializer, one, two],
    )
    model = helper.make_model(graph, opset_imports=list(head.opset_import), producer_name="cncwear")
    model.ir_version = head.ir_version
    _set_columns(model, mapping.raw_columns)
    onnx.checker.check_model(model)
    return model


def _set_columns(model: onnx.ModelProto, columns: list[str]) -> None:
    helper.set_model_props(model, {METADATA_COLUMNS_KEY: json.dumps(columns)})


# -- running and checking --------------------------------------------------------------------------


class CompiledModel:
    """An ONNX graph from raw numeric columns to the wear probability, in onnxruntime."""

    def __init__(self, model_bytes: bytes) -> None:
        options = ort.SessionOptions()
        # One thread per call: requests are small, parallelism comes from requests and replicas.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        metadata = self.session.get_modelmeta().custom_metadata_map
        if METADATA_COLUMNS_KEY not in metadata:
            raise CompileError("the ONNX graph does not name its input columns")
        self.input_columns: list[str] = json.loads(metadata[METADATA_COLUMNS_KEY])

    def probability_worn(self, raw: np.ndarray) -> np.ndarray:
        """Wear probability of each row of ``raw``: the numeric input columns, in
        :attr:`input_columns` order, validated (finite)."""
        (output,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: raw})
        return np.asarray(output, dtype=np.float64).reshape(-1)


def parity(compiled: CompiledModel, pipeline: Pipeline, rows: pd.DataFrame) -> ParityReport:
    """Compare the compiled form with the pipeline's own ``predict_proba`` on validated rows."""
    expected = np.asarray(pipeline.predict_proba(rows[model_input_columns(pipeline)])[:, 1])
    got = compiled.probability_worn(rows[compiled.input_columns].to_numpy(np.float64))
    difference = float(np.max(np.abs(got - expected))) if len(rows) else float("inf")
    return ParityReport(rows=len(rows), max_abs_diff=difference, tolerance=TOLERANCE)


def compile_and_check(
    pipeline: Pipeline, rows: pd.DataFrame
) -> tuple[bytes, str, ParityReport, pd.DataFrame]:
    """Convert ``pipeline`` and check parity on raw ``rows`` (any columns; the model's are taken and
    validated). Returns the ONNX bytes, the converter, the parity report and the validated rows."""
    typed = validate_rows(rows[model_input_columns(pipeline)], model_input_columns(pipeline))
    model, converter = to_onnx(pipeline, typed)
    data = model.SerializeToString()
    report = parity(CompiledModel(data), pipeline, typed)
    if not report.passed:
        raise CompileError(
            f"{converter} output differs from scikit-learn by {report.max_abs_diff:.3g} "
            f"(tolerance {report.tolerance:g}) on {report.rows} rows"
        )
    return data, converter, report, typed


# -- the store -------------------------------------------------------------------------------------


def attach_compiled_form(
    store: ModelStore, version: str, pipeline: Pipeline, rows: pd.DataFrame
) -> dict[str, str]:
    """Compile a registered version, check parity on ``rows`` (held-out raw rows), store the ONNX
    file and a parity sample among the artifacts of the version's run, and record the outcome as
    version tags. A model that cannot be compiled gets ``cncwear.compiled.format = none`` and the
    reason: it is served by scikit-learn. Idempotent: a version already tagged is left as it is.
    Returns the version's compiled tags."""
    model_version = store.client.get_model_version(store.settings.model_name, version)
    run_id = str(model_version.run_id)
    existing = {k: v for k, v in model_version.tags.items() if k.startswith("cncwear.compiled.")}
    if CompiledTag.FORMAT in existing:
        return existing
    try:
        data, converter, report, typed = compile_and_check(pipeline, rows)
        sample = typed.sample(n=min(PARITY_SAMPLE_ROWS, len(typed)), random_state=0)
        with tempfile.TemporaryDirectory(prefix="cncwear-compiled-") as folder:
            (Path(folder) / ONNX_FILE).write_bytes(data)
            (Path(folder) / PARITY_FILE).write_text(
                json.dumps({"columns": list(sample.columns), "data": sample.to_numpy().tolist()})
            )
            store.client.log_artifacts(run_id, folder, ARTIFACT_DIR)
    except Exception as error:  # a compiled form is an optimisation: never fail a retrain for it
        if not isinstance(error, CompileError):
            logger.exception("compiling version %s failed", version)
        logger.warning("version %s will be served by scikit-learn: %s", version, error)
        tags = {CompiledTag.FORMAT: "none", CompiledTag.REASON: str(error)[:5000]}
        store.tag_version(version, tags)
        return tags
    tags = {
        CompiledTag.FORMAT: "onnx",
        CompiledTag.ARTIFACT: ARTIFACT_DIR,
        CompiledTag.SHA256: hashlib.sha256(data).hexdigest(),
        CompiledTag.CONVERTER: converter,
        CompiledTag.TOLERANCE: f"{report.tolerance:g}",
        CompiledTag.MAX_ABS_DIFF: f"{report.max_abs_diff:.3g}",
        CompiledTag.PARITY_ROWS: str(report.rows),
        CompiledTag.RUNTIME: f"onnxruntime {ort.__version__}",
    }
    store.tag_version(version, tags)
    logger.info(
        "version %s compiled by %s: max |difference| %.3g over %d rows",
        version, converter, report.max_abs_diff, report.rows,
    )  # fmt: skip
    return tags


def registered_pipeline(store: ModelStore, version: str) -> Pipeline:
    """The pipeline of a registered version as the registry gives it back (what servers load)."""
    pipeline = mlflow.sklearn.load_model(f"models:/{store.settings.model_name}/{version}")
    if not isinstance(pipeline, Pipeline):
        raise CompileError(f"version {version} is not a scikit-learn pipeline")
    return pipeline


def load_compiled_form(
    store: ModelStore, loaded: LoadedModel
) -> tuple[CompiledModel, ParityReport]:
    """The checked compiled form of a loaded version, after checking parity again here, with this
    process's onnxruntime and scikit-learn, on the rows stored with it.

    Raises :class:`CompileError` saying why when the version has none or it cannot be trusted; the
    caller then serves the scikit-learn pipeline."""
    tags = loaded.tags
    if tags.get(CompiledTag.FORMAT) != "onnx":
        reason = tags.get(CompiledTag.REASON) or "the version has no compiled form"
        raise CompileError(reason)
    tolerance = float(tags.get(CompiledTag.TOLERANCE, "nan"))
    if not tolerance <= TOLERANCE:
        raise CompileError(f"recorded tolerance {tolerance:g} is looser than {TOLERANCE:g}")
    folder_name = tags.get(CompiledTag.ARTIFACT, ARTIFACT_DIR)
    try:
        with tempfile.TemporaryDirectory(prefix="cncwear-compiled-") as folder:
            local = Path(
                store.client.download_artifacts(loaded.run_id, folder_name, dst_path=folder)
            )
            data = (local / ONNX_FILE).read_bytes()
            sample = json.loads((local / PARITY_FILE).read_text())
    except Exception as error:  # a missing or unreadable artifact: serve scikit-learn
        raise CompileError(f"the compiled form cannot be downloaded: {error}") from error
    if hashlib.sha256(data).hexdigest() != tags.get(CompiledTag.SHA256):
        raise CompileError("the compiled form's checksum does not match the one recorded")
    compiled = CompiledModel(data)
    if compiled.input_columns != numeric_columns(model_input_columns(loaded.pipeline)):
        raise CompileError("the compiled form takes other columns than the pipeline")
    rows = pd.DataFrame(sample["data"], columns=sample["columns"])
    report = parity(compiled, loaded.pipeline, validate_rows(rows, sample["columns"]))
    if not report.passed:
        raise CompileError(
            f"here the compiled form differs from scikit-learn by {report.max_abs_diff:.3g}"
        )
    return compiled, report
