"""A fitted cncwear pipeline as one ONNX graph, from the raw numeric columns (double) to the wear
probability (double), checked against scikit-learn before it is accepted.

Tree ensembles are written here, exactly (double thresholds and leaf values, the float32 cast where
scikit-learn's trees make it, the feature arithmetic in the graph), because skl2onnx's tree
converters are not exact; other estimators go through skl2onnx. Why and how: ``docs/serving.md``.
Training time only: this module imports skl2onnx and onnx, which servers do not install.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any

import numpy as np
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType
from sklearn.pipeline import Pipeline

from cncwear.core.errors import CompileError
from cncwear.core.schema import validate_rows
from cncwear.data.feature_map import FeatureMap, FeatureStepsError
from cncwear.serving.compiled.runtime import (
    INPUT_NAME,
    METADATA_COLUMNS_KEY,
    OUTPUT_NAME,
    CompiledModel,
    ParityReport,
    parity,
)
from cncwear.serving.scoring import model_input_columns
from cncwear.serving.trees import FlatTrees, flatten

OPSET = 21
ML_OPSET = 5
IR_VERSION = 10
TREES_CONVERTER = "cncwear-trees"


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


def to_onnx(pipeline: Pipeline, rows: pd.DataFrame) -> tuple[onnx.ModelProto, str]:
    """Convert a fitted cncwear pipeline to one ONNX graph from raw numeric columns (double) to the
    wear probability (double). ``rows`` are validated raw rows used to check the feature map.
    Returns the model and the converter's name; raises :class:`CompileError`."""
    try:
        mapping = FeatureMap.probe(pipeline, rows)
    except FeatureStepsError as error:
        raise CompileError(str(error)) from error
    estimator = pipeline[-1]
    classes = getattr(estimator, "classes_", None)
    if classes is None or list(classes) != [0, 1]:
        raise CompileError("the model is not a binary classifier of classes 0 (unworn), 1 (worn)")
    trees = flatten(estimator)
    if trees is None:
        return _with_skl2onnx(estimator, mapping), f"skl2onnx {package_version('skl2onnx')}"
    head = _tree_head(trees)
    graph = helper.make_graph(
        [*_feature_nodes(), *head.nodes],
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
    return model, TREES_CONVERTER


@dataclass
class _Head:
    nodes: list[onnx.NodeProto]
    initializers: list[onnx.TensorProto]


def _input(mapping: FeatureMap) -> onnx.ValueInfoProto:
    width = len(mapping.raw_columns)
    return helper.make_tensor_value_info(INPUT_NAME, TensorProto.DOUBLE, [None, width])


def _output() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.DOUBLE, [None, 1])


def _feature_nodes() -> list[onnx.NodeProto]:
    """The feature map in the graph: ``features = raw[plus] - raw[minus] * minus_mask``."""
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


def _tree_head(trees: FlatTrees) -> _Head:
    """From ``features`` to the probability: the trees' leaf values summed by one TreeEnsemble,
    then combined as the estimator combines them (:class:`~cncwear.serving.trees.Combination`)."""
    combination = trees.combination
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    source = "features"
    if combination.float32_features:  # as scikit-learn's trees see them
        nodes.append(helper.make_node("Cast", [source], ["features_float32"], to=TensorProto.FLOAT))
        nodes.append(
            helper.make_node("Cast", ["features_float32"], ["features_sk"], to=TensorProto.DOUBLE)
        )
        source = "features_sk"
    steps: list[tuple[str, str, float]] = []
    if combination.average:
        steps.append(("Div", "tree_count", float(trees.tree_count)))
    if combination.baseline != 0.0:
        steps.append(("Add", "baseline", combination.baseline))
    if combination.logistic_scale is not None and combination.logistic_scale != 1.0:
        steps.append(("Mul", "sigmoid_scale", combination.logistic_scale))
    last = "leaf_sum"
    nodes.append(_tree_ensemble(trees, source, last))
    for op, constant, value in steps:
        nodes.append(helper.make_node(op, [last, constant], [f"{last}_{op.lower()}"]))
        initializers.append(numpy_helper.from_array(np.asarray(value), constant))
        last = f"{last}_{op.lower()}"
    if combination.logistic_scale is not None:
        nodes.append(helper.make_node("Sigmoid", [last], [OUTPUT_NAME]))
    else:
        nodes[-1].output[0] = OUTPUT_NAME
    return _Head(nodes, initializers)


def _tree_ensemble(trees: FlatTrees, source: str, output: str) -> onnx.NodeProto:
    """One ``ai.onnx.ml`` opset-5 ``TreeEnsemble`` summing the worn value of the leaves reached
    (``x <= split`` goes true). Interior nodes and leaves are numbered apart; a tree that is a lone
    leaf gets a split whose both branches reach it."""
    is_leaf = trees.is_leaf
    interior, leaves = np.flatnonzero(~is_leaf), np.flatnonzero(is_leaf)
    position = np.zeros(len(is_leaf), dtype=np.int64)
    position[interior] = np.arange(len(interior))
    position[leaves] = np.arange(len(leaves))
    left, right = trees.left[interior], trees.right[interior]
    feature = trees.feature[interior].tolist()
    split = trees.threshold[interior].tolist()
    true_id, true_leaf = position[left].tolist(), is_leaf[left].astype(np.int64).tolist()
    false_id, false_leaf = position[right].tolist(), is_leaf[right].astype(np.int64).tolist()
    missing_true = trees.missing_left[interior].astype(np.int64).tolist()
    roots = []
    for root in trees.roots:
        if not is_leaf[root]:
            roots.append(int(position[root]))
            continue
        roots.append(len(feature))
        feature.append(0)
        split.append(0.0)
        true_id.append(int(position[root]))
        false_id.append(int(position[root]))
        true_leaf.append(1)
        false_leaf.append(1)
        missing_true.append(0)
    return helper.make_node(
        "TreeEnsemble",
        [source],
        [output],
        domain="ai.onnx.ml",
        aggregate_function=1,  # SUM
        post_transform=0,  # NONE
        n_targets=1,
        tree_roots=roots,
        nodes_featureids=feature,
        nodes_splits=numpy_helper.from_array(np.asarray(split, dtype=np.float64)),
        nodes_modes=numpy_helper.from_array(np.zeros(len(feature), dtype=np.uint8)),
        nodes_truenodeids=true_id,
        nodes_trueleafs=true_leaf,
        nodes_falsenodeids=false_id,
        nodes_falseleafs=false_leaf,
        nodes_missing_value_tracks_true=missing_true,
        leaf_targetids=[0] * len(leaves),
        leaf_weights=numpy_helper.from_array(trees.worn_value[leaves]),
    )


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
        *_feature_nodes(),
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
