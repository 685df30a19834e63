"""The compiled form stored with a registry version: the ONNX file and a parity sample among the
artifacts of the version's run, the outcome in version tags, and loading it back only once its
checksum and its parity with scikit-learn have been checked again in the loading process.

Servers import this module; making the compiled form (``export``) and attaching it at training
time (``attach``) live apart, so that loading never imports the converters."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import onnxruntime as ort
import pandas as pd
from sklearn.pipeline import Pipeline

from cncwear.core.errors import CompileError
from cncwear.core.schema import numeric_columns, validate_rows
from cncwear.registry.store import LoadedModel, ModelStore
from cncwear.registry.tags import Tag
from cncwear.serving.compiled.runtime import CompiledModel, ParityReport, parity
from cncwear.serving.scoring import model_input_columns
from cncwear.serving.trees import PARITY_TOLERANCE

ARTIFACT_DIR = "compiled"
ONNX_FILE = "model.onnx"
PARITY_FILE = "parity_rows.json"
PARITY_SAMPLE_ROWS = 256
"""Rows stored with the compiled form for the check a server makes when it loads it."""


def compiled_tags(store: ModelStore, version: str) -> dict[str, str]:
    """The compiled-form tags a version carries (none before it was attached)."""
    tags = store.version_tags(version)
    return {k: v for k, v in tags.items() if k.startswith(Tag.COMPILED_PREFIX)}


def upload_compiled_form(store: ModelStore, run_id: str, data: bytes, rows: pd.DataFrame) -> None:
    """Store ONNX bytes among the artifacts of a version's run, with a sample of the validated
    ``rows`` they were checked on."""
    sample = rows.sample(n=min(PARITY_SAMPLE_ROWS, len(rows)), random_state=0)
    with tempfile.TemporaryDirectory(prefix="cncwear-compiled-") as folder:
        (Path(folder) / ONNX_FILE).write_bytes(data)
        (Path(folder) / PARITY_FILE).write_text(
            json.dumps({"columns": list(sample.columns), "data": sample.to_numpy().tolist()})
        )
        store.log_artifacts(run_id, Path(folder), ARTIFACT_DIR)


def compiled_form_tags(data: bytes, converter: str, report: ParityReport) -> dict[str, str]:
    """The tags of a version whose compiled form was uploaded."""
    return {
        Tag.COMPILED_FORMAT: "onnx",
        Tag.COMPILED_ARTIFACT: ARTIFACT_DIR,
        Tag.COMPILED_SHA256: hashlib.sha256(data).hexdigest(),
        Tag.COMPILED_CONVERTER: converter,
        Tag.COMPILED_TOLERANCE: f"{report.tolerance:g}",
        Tag.COMPILED_MAX_ABS_DIFF: f"{report.max_abs_diff:.3g}",
        Tag.COMPILED_PARITY_ROWS: str(report.rows),
        Tag.COMPILED_RUNTIME: f"onnxruntime {ort.__version__}",
    }


def no_compiled_form_tags(reason: str) -> dict[str, str]:
    """The tags of a version served by scikit-learn, and why."""
    return {Tag.COMPILED_FORMAT: "none", Tag.COMPILED_REASON: reason[:5000]}


def registered_pipeline(store: ModelStore, version: str) -> Pipeline:
    """The pipeline of a registered version as the registry gives it back (what servers load)."""
    pipeline = store.load_pipeline(version)
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
    if tags.get(Tag.COMPILED_FORMAT) != "onnx":
        reason = tags.get(Tag.COMPILED_REASON) or "the version has no compiled form"
        raise CompileError(reason)
    tolerance = float(tags.get(Tag.COMPILED_TOLERANCE, "nan"))
    if not tolerance <= PARITY_TOLERANCE:
        raise CompileError(f"recorded tolerance {tolerance:g} is looser than {PARITY_TOLERANCE:g}")
    folder_name = tags.get(Tag.COMPILED_ARTIFACT, ARTIFACT_DIR)
    try:
        with tempfile.TemporaryDirectory(prefix="cncwear-compiled-") as folder:
            local = store.download_artifacts(loaded.run_id, folder_name, Path(folder))
            data = (local / ONNX_FILE).read_bytes()
            sample = json.loads((local / PARITY_FILE).read_text())
    except Exception as error:  # a missing or unreadable artifact: serve scikit-learn
        raise CompileError(f"the compiled form cannot be downloaded: {error}") from error
    if hashlib.sha256(data).hexdigest() != tags.get(Tag.COMPILED_SHA256):
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
