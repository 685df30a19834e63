"""The Open Inference Protocol v2 (REST) bodies, per kserve/open-inference-protocol
``specification/protocol/inference_rest.md``; only JSON tensor data (no binary extension)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from cncwear_api.schemas.predict import EXAMPLE_ROW

Parameters = dict[str, Any]


class V2Error(BaseModel):
    """Every error of the ``/v2`` routes: one descriptive message (the spec's error object). Bad
    cells are named by row and column as ``/predict`` names them."""

    error: str


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    """The versions served: the champion's."""
    platform: str
    """The runtime scoring it: ``onnxruntime`` or ``scikit-learn``."""
    inputs: list[MetadataTensor]
    """One per raw column, in the model's order (the numeric ones are the column order of the
    compact ``numeric`` input)."""
    outputs: list[MetadataTensor]
    parameters: Parameters = Field(
        description="`content_type` (`pd`: one input per column) and the compact input's tensor"
    )


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="A raw column, or `numeric` for the compact [N, K] form")
    shape: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=2)
    datatype: str = Field(description="`FP64` or `FP32` for numbers, `BYTES` for text")
    parameters: Parameters | None = None
    data: list[Any] = Field(description="Row-major values, flat or nested")


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="`probability_worn` or `label`")
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: Parameters | None = Field(
        default=None,
        description=(
            "`content_type`: `pd` (MLServer's pandas codec: one input per column; the default); "
            "`run`: the job these rows belong to (as `/predict`'s `run`)"
        ),
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    """The registry version that answered."""
    id: str
    """The request's ``id``, else the request id of the answer (``x-request-id``)."""
    parameters: Parameters
    outputs: list[ResponseOutput]


REQUEST_EXAMPLES: dict[str, Any] = {
    "columns": {
        "summary": "One input per column (content_type pd)",
        "value": {
            "parameters": {"content_type": "pd"},
            "inputs": [
                {
                    "name": name,
                    "shape": [1],
                    "datatype": "BYTES" if isinstance(value, str) else "FP64",
                    "data": [value],
                }
                for name, value in EXAMPLE_ROW.items()
            ],
        },
    },
    "compact": {
        "summary": "Numeric columns as one [N, K] tensor, plus the machining step",
        "value": {
            "inputs": [
                {
                    "name": "numeric",
                    "shape": [1, len(EXAMPLE_ROW) - 1],
                    "datatype": "FP64",
                    "data": [v for v in EXAMPLE_ROW.values() if not isinstance(v, str)],
                },
                {
                    "name": "Machining_Process",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [EXAMPLE_ROW["Machining_Process"]],
                },
            ],
        },
    },
}
