"""The Open Inference Protocol v2 codec: an inference request's tensors decoded into the raw rows
``/predict`` takes (then validated and scored the same way), and the wear of each row as output
tensors.

Two request forms. One input per raw column, each of shape ``[N]`` (MLServer's pandas codec,
``content_type: pd``): ``FP64``/``FP32`` for numbers, ``BYTES`` for the machining step. Or, for
numeric-heavy clients, the numeric columns as one ``[N, K]`` tensor named ``numeric``, in the order
the model metadata lists them, plus ``Machining_Process`` as ``BYTES [N]``. Only JSON tensor data:
the binary extension is refused (tritonclient: ``binary_data=False``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import ValidationError

from cncwear.core.schema import CLASS_NAMES, MAX_PROBLEMS_LISTED, PROCESS_COLUMN
from cncwear.serving.batch import Rows
from cncwear_api.api.errors import (
    InvalidRequestError,
    PayloadTooLargeError,
    problems_from_validation,
)
from cncwear_api.api.json_body import parse_json
from cncwear_api.schemas.errors import Problem
from cncwear_api.schemas.oip import InferenceRequest, RequestInput
from cncwear_api.serving.holder import ServedModel

COMPACT_INPUT = "numeric"
"""The name of the compact form's ``[N, K]`` tensor of the numeric columns."""
CONTENT_TYPE = "pd"
NUMBER_TYPES = frozenset({"FP64", "FP32"})
TEXT_TYPE = "BYTES"
PROBABILITY_OUTPUT = "probability_worn"
LABEL_OUTPUT = "label"
OUTPUTS = (PROBABILITY_OUTPUT, LABEL_OUTPUT)
BINARY_HEADER = "inference-header-content-length"
"""Set by clients sending tensors in the binary extension, which this server does not speak."""

UNWORN, WORN = CLASS_NAMES


def metadata_inputs(served: ServedModel) -> list[dict[str, Any]]:
    """One tensor per raw column, in the model's order."""
    return [
        {"name": c, "datatype": TEXT_TYPE if c == PROCESS_COLUMN else "FP64", "shape": [-1]}
        for c in served.input_columns
    ]


def model_metadata(served: ServedModel) -> dict[str, Any]:
    numeric = served.numeric_columns
    return {
        "name": served.name,
        "versions": [served.version],
        "platform": served.runtime,
        "inputs": metadata_inputs(served),
        "outputs": [
            {"name": PROBABILITY_OUTPUT, "datatype": "FP64", "shape": [-1]},
            {"name": LABEL_OUTPUT, "datatype": TEXT_TYPE, "shape": [-1]},
        ],
        "parameters": {
            "content_type": CONTENT_TYPE,
            "compact_input": {
                "name": COMPACT_INPUT,
                "datatype": "FP64",
                "shape": [-1, len(numeric)],
            },
        },
    }


def decode(body: bytes, served: ServedModel, max_rows: int) -> tuple[InferenceRequest, Rows]:
    """The request and its rows (columnar), or 4xx naming the input and what is wrong with it."""
    parsed = parse_json(body)
    if isinstance(parsed, dict):
        _check_sizes(parsed, served, max_rows)
    try:
        request = InferenceRequest.model_validate(parsed)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False, include_context=False)
        problems = problems_from_validation(errors)
        raise InvalidRequestError(problems[:MAX_PROBLEMS_LISTED], total=len(problems)) from None
    parameters = request.parameters or {}
    content_type = parameters.get("content_type", CONTENT_TYPE)
    if content_type != CONTENT_TYPE:
        _refuse("parameters.content_type", f"must be {CONTENT_TYPE!r} (one input per column)")
    run = parameters.get("run")
    if run is not None and not isinstance(run, str):
        _refuse("parameters.run", "must be a run id (text)")
    for i, output in enumerate(request.outputs or []):
        if output.name not in OUTPUTS:
            _refuse(f"outputs[{i}].name", f"unknown output; the outputs are {', '.join(OUTPUTS)}")
    if any(t.name == COMPACT_INPUT for t in request.inputs):
        return request, _compact(request.inputs, served)
    values = [_values(i, tensor) for i, tensor in enumerate(request.inputs)]
    return request, _per_column(request.inputs, values, served)


def _refuse(field: str, problem: str) -> None:
    raise InvalidRequestError([Problem(column=field, problem=problem)])


def _check_sizes(parsed: dict[str, Any], served: ServedModel, max_rows: int) -> None:
    """Bounds on the work a body causes, before it is validated: the inputs, and the rows."""
    inputs = parsed.get("inputs")
    if not isinstance(inputs, list):
        return
    if len(inputs) > 2 * len(served.input_columns):
        _refuse("inputs", f"more than {2 * len(served.input_columns)} inputs")
    for tensor in inputs:
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if isinstance(shape, list) and shape and isinstance(shape[0], int) and shape[0] > max_rows:
            raise PayloadTooLargeError(
                f"the batch has {shape[0]} rows, more than the limit of {max_rows}: split it"
            )


def _values(index: int, tensor: RequestInput) -> list[Any]:
    """The tensor's values, flat, checked against its shape."""
    data = tensor.data
    if any(isinstance(v, list) for v in data):
        data = _flatten(data)
    expected = math.prod(tensor.shape)
    if len(data) != expected:
        _refuse(
            f"inputs[{index}] ({tensor.name})",
            f"shape {tensor.shape} holds {expected} values, but data has {len(data)}",
        )
    return data


def _matrix_rows(index: int, tensor: RequestInput) -> list[list[Any]]:
    """The rows of an ``[N, K]`` tensor, each a new list: taken as they are when the data is
    nested by row (as clients send a matrix; no flattening and slicing again), else cut from the
    flat values."""
    rows, width = tensor.shape
    data = tensor.data
    if len(data) == rows and all(type(row) is list and len(row) == width for row in data):
        return [list(row) for row in data]
    flat = _values(index, tensor)
    return [flat[r * width : (r + 1) * width] for r in range(rows)]


def _flatten(data: Sequence[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            flat.append(value)
        else:
            stack.pop()
    return flat


def _check_datatype(index: int, tensor: RequestInput) -> None:
    text = tensor.name == PROCESS_COLUMN
    if (tensor.datatype == TEXT_TYPE) != text or (not text and tensor.datatype not in NUMBER_TYPES):
        wanted = TEXT_TYPE if text else " or ".join(sorted(NUMBER_TYPES))
        _refuse(f"inputs[{index}] ({tensor.name})", f"datatype must be {wanted}")


def _per_column(
    inputs: Sequence[RequestInput], values: list[list[Any]], served: ServedModel
) -> Rows:
    """One input per column: the rows as columns and data (unknown, missing or repeated columns
    are named by the same validation as ``/predict``'s)."""
    rows = None
    for i, tensor in enumerate(inputs):
        if len(tensor.shape) != 1:
            _refuse(f"inputs[{i}] ({tensor.name})", "must have shape [N] (one value a row)")
        if tensor.name in served.input_columns:
            _check_datatype(i, tensor)
        if rows is None:
            rows = tensor.shape[0]
        elif tensor.shape[0] != rows:
            _refuse(
                f"inputs[{i}] ({tensor.name})",
                f"has {tensor.shape[0]} rows, but inputs[0] has {rows}",
            )
    columns = [tensor.name for tensor in inputs]
    return Rows(columns=columns, data=[list(row) for row in zip(*values, strict=True)])


def _compact(inputs: Sequence[RequestInput], served: ServedModel) -> Rows:
    """The numeric columns as one ``[N, K]`` tensor, plus the machining step."""
    numeric_columns = served.numeric_columns
    by_name = {t.name: (i, t) for i, t in enumerate(inputs)}
    for i, tensor in enumerate(inputs):
        if tensor.name not in {COMPACT_INPUT, PROCESS_COLUMN}:
            _refuse(
                f"inputs[{i}] ({tensor.name})",
                f"unknown input: with {COMPACT_INPUT!r}, the only other input is "
                f"{PROCESS_COLUMN!r}",
            )
    if len(by_name) != len(inputs):
        _refuse("inputs", "an input is given twice")
    index, numeric = by_name[COMPACT_INPUT]
    field = f"inputs[{index}] ({COMPACT_INPUT})"
    if len(numeric.shape) != 2 or numeric.shape[1] != len(numeric_columns):
        _refuse(field, f"must have shape [N, {len(numeric_columns)}] (the numeric columns)")
    if numeric.datatype not in NUMBER_TYPES:
        _refuse(field, f"datatype must be {' or '.join(sorted(NUMBER_TYPES))}")
    rows = numeric.shape[0]
    data = _matrix_rows(index, numeric)
    columns = list(numeric_columns)
    if PROCESS_COLUMN in served.input_columns:
        if PROCESS_COLUMN not in by_name:
            _refuse("inputs", f"{PROCESS_COLUMN!r} is missing")
        index, process = by_name[PROCESS_COLUMN]
        _check_datatype(index, process)
        if process.shape != [rows]:
            _refuse(f"inputs[{index}] ({PROCESS_COLUMN})", f"must have shape [{rows}]")
        columns.append(PROCESS_COLUMN)
        for row, step in zip(data, _values(index, process), strict=True):
            row.append(step)
    return Rows(columns=columns, data=data)


def outputs(
    request: InferenceRequest, probability: np.ndarray, worn: np.ndarray
) -> list[dict[str, Any]]:
    """The outputs asked for (all when none are named), in the order asked."""
    names = [o.name for o in request.outputs] if request.outputs else list(OUTPUTS)
    rows = [len(probability)]
    tensors = []
    for name in names:
        if name == PROBABILITY_OUTPUT:
            data = probability.tolist()
            tensors.append({"name": name, "datatype": "FP64", "shape": rows, "data": data})
        else:
            labels = np.where(worn, WORN, UNWORN).tolist()
            tensors.append({"name": name, "datatype": TEXT_TYPE, "shape": rows, "data": labels})
    return tensors
