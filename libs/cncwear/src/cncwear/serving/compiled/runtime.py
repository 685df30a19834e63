"""Running a compiled form (an ONNX graph from raw numeric columns to the wear probability) in
onnxruntime, and checking it against the scikit-learn pipeline it was made from.

This is what a server imports: onnxruntime only, none of the converters (``export``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import pandas as pd
from sklearn.pipeline import Pipeline

from cncwear.core.errors import CompileError
from cncwear.serving.scoring import model_input_columns
from cncwear.serving.trees import PARITY_TOLERANCE

INPUT_NAME = "raw"
OUTPUT_NAME = "probability_worn"
METADATA_COLUMNS_KEY = "cncwear.input_columns"


@dataclass(frozen=True)
class ParityReport:
    rows: int
    max_abs_diff: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


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
    return ParityReport(rows=len(rows), max_abs_diff=difference, tolerance=PARITY_TOLERANCE)
