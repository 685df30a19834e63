"""The one function from validated raw rows to wear probabilities, behind every way in
(``/predict``, ``/explain``, ``cncwear predict``): a registered version's pipeline, scored through
its compiled form when the version has one this process can trust.

:func:`load_scoring_model` decides which, once per version: the compiled form is trusted only after
its parity with the pipeline is checked again here (this process's onnxruntime and scikit-learn, on
the rows stored with it); otherwise the pipeline scores and the reason is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from mlflow.entities.model_registry import ModelVersion
from sklearn.pipeline import Pipeline

from cncwear.core.errors import CompileError
from cncwear.core.schema import numeric_columns
from cncwear.registry.store import LoadedModel, ModelStore
from cncwear.serving.batch import Batch
from cncwear.serving.compiled.artifact import load_compiled_form
from cncwear.serving.compiled.runtime import CompiledModel
from cncwear.serving.scoring import model_input_columns

Runtime = Literal["onnxruntime", "scikit-learn"]
ONNX: Runtime = "onnxruntime"
SKLEARN: Runtime = "scikit-learn"


@dataclass(frozen=True)
class ScoringModel:
    loaded: LoadedModel
    """The registered version: its pipeline and what was logged with it."""
    compiled: CompiledModel | None
    """The compiled form, when trusted; else None and the pipeline scores."""
    load_check: float | None
    """The largest difference from the pipeline the compiled form showed at load."""
    fallback: str | None
    """Why the pipeline scores rather than a compiled form."""
    input_columns: list[str] = field(init=False)
    numeric_columns: list[str] = field(init=False)

    def __post_init__(self) -> None:
        columns = model_input_columns(self.loaded.pipeline)
        object.__setattr__(self, "input_columns", columns)
        object.__setattr__(self, "numeric_columns", numeric_columns(columns))

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def version(self) -> str:
        return self.loaded.version

    @property
    def pipeline(self) -> Pipeline:
        return self.loaded.pipeline

    @property
    def runtime(self) -> Runtime:
        return ONNX if self.compiled is not None else SKLEARN

    def probability_worn(self, batch: Batch) -> np.ndarray:
        """Wear probability of each row of a validated batch."""
        if self.compiled is not None:
            return self.compiled.probability_worn(batch.numeric)
        return pipeline_probability(self.pipeline, batch)

    def class_probabilities(self, batch: Batch) -> np.ndarray:
        """The probability of each class (one column per class, unworn first) through the
        pipeline, whatever the runtime: what the version's MLflow pyfunc answers
        (``predict_proba``), to the last bit, for clients of MLflow's scoring protocol."""
        frame = batch.frame(self.input_columns)
        return np.asarray(self.pipeline.predict_proba(frame), dtype=np.float64)


def pipeline_probability(pipeline: Pipeline, batch: Batch) -> np.ndarray:
    """Wear probability of each row of a validated batch through the scikit-learn pipeline."""
    probability = pipeline.predict_proba(batch.frame(model_input_columns(pipeline)))[:, 1]
    return np.asarray(probability, dtype=np.float64)


def load_scoring_model(
    store: ModelStore, model_version: ModelVersion | None = None
) -> ScoringModel:
    """Load a registered version (by default the champion) to score with: through its compiled
    form when it has a trusted one, else through scikit-learn. Raises ``ModelLoadError`` when the
    version cannot be loaded, ``NoChampionError`` when there is no champion to load."""
    loaded = store.load_champion() if model_version is None else store.load_version(model_version)
    try:
        compiled, report = load_compiled_form(store, loaded)
    except CompileError as error:
        return ScoringModel(loaded, compiled=None, load_check=None, fallback=str(error))
    return ScoringModel(loaded, compiled=compiled, load_check=report.max_abs_diff, fallback=None)
