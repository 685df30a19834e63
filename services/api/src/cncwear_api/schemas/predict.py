"""``/predict``: raw sensor rows in, a label and wear probability per row out."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cncwear_api.schemas.common import JsonScalar, Label, ModelRef, RunId

# A real row: experiment 1 (unworn tool), the 201st row of active cutting.
EXAMPLE_ROW: dict[str, Any] = {
    "X1_ActualPosition": 147.0, "X1_ActualVelocity": -5.22, "X1_ActualAcceleration": 37.5,
    "X1_CommandPosition": 147.0, "X1_CommandVelocity": -5.37, "X1_CommandAcceleration": 4.04,
    "X1_CurrentFeedback": -5.82, "X1_DCBusVoltage": 0.105, "X1_OutputCurrent": 326.0,
    "X1_OutputVoltage": 14.2, "X1_OutputPower": 0.00116,
    "Y1_ActualPosition": 103.0, "Y1_ActualVelocity": -2.6, "Y1_ActualAcceleration": -12.5,
    "Y1_CommandPosition": 103.0, "Y1_CommandVelocity": -2.69, "Y1_CommandAcceleration": -8.12,
    "Y1_CurrentFeedback": -7.99, "Y1_DCBusVoltage": 0.136, "Y1_OutputCurrent": 324.0,
    "Y1_OutputVoltage": 11.5, "Y1_OutputPower": 0.000794,
    "Z1_ActualPosition": 29.5, "Z1_ActualVelocity": 0.0, "Z1_ActualAcceleration": 0.0,
    "Z1_CommandPosition": 29.5, "Z1_CommandVelocity": 0.0, "Z1_CommandAcceleration": 0.0,
    "Z1_CurrentFeedback": 0.0, "Z1_DCBusVoltage": 0.0, "Z1_OutputCurrent": 0.0,
    "Z1_OutputVoltage": 0.0,
    "S1_ActualPosition": 702.0, "S1_ActualVelocity": 53.5, "S1_ActualAcceleration": 60.1,
    "S1_CommandPosition": 703.0, "S1_CommandVelocity": 53.3, "S1_CommandAcceleration": 0.0,
    "S1_CurrentFeedback": 17.4, "S1_DCBusVoltage": 0.84, "S1_OutputCurrent": 318.0,
    "S1_OutputVoltage": 119.0, "S1_OutputPower": 0.158, "S1_SystemInertia": 12.0,
    "M1_CURRENT_PROGRAM_NUMBER": 1.0, "M1_sequence_number": 37.0, "M1_CURRENT_FEEDRATE": 6.0,
    "Machining_Process": "Layer 1 Down",
}  # fmt: skip

# A real row: experiment 6 (worn tool), the 201st row of active cutting.
EXAMPLE_WORN_ROW: dict[str, Any] = {
    "X1_ActualPosition": 150.0, "X1_ActualVelocity": -6.0, "X1_ActualAcceleration": 25.0,
    "X1_CommandPosition": 150.0, "X1_CommandVelocity": -6.0, "X1_CommandAcceleration": 0.0,
    "X1_CurrentFeedback": -6.13, "X1_DCBusVoltage": 0.0961, "X1_OutputCurrent": 325.0,
    "X1_OutputVoltage": 13.2, "X1_OutputPower": 0.00119,
    "Y1_ActualPosition": 89.5, "Y1_ActualVelocity": -0.15, "Y1_ActualAcceleration": -75.0,
    "Y1_CommandPosition": 89.5, "Y1_CommandVelocity": 0.0, "Y1_CommandAcceleration": 0.0,
    "Y1_CurrentFeedback": 5.11, "Y1_DCBusVoltage": 0.107, "Y1_OutputCurrent": 324.0,
    "Y1_OutputVoltage": 8.35, "Y1_OutputPower": -3.24e-05,
    "Z1_ActualPosition": 27.7, "Z1_ActualVelocity": -0.025, "Z1_ActualAcceleration": -6.25,
    "Z1_CommandPosition": 27.7, "Z1_CommandVelocity": 0.0, "Z1_CommandAcceleration": 0.0,
    "Z1_CurrentFeedback": 0.0, "Z1_DCBusVoltage": 0.0, "Z1_OutputCurrent": 0.0,
    "Z1_OutputVoltage": 0.0,
    "S1_ActualPosition": -1070.0, "S1_ActualVelocity": 53.4, "S1_ActualAcceleration": 11.6,
    "S1_CommandPosition": -1070.0, "S1_CommandVelocity": 53.3, "S1_CommandAcceleration": 0.0,
    "S1_CurrentFeedback": 19.2, "S1_DCBusVoltage": 0.854, "S1_OutputCurrent": 319.0,
    "S1_OutputVoltage": 119.0, "S1_OutputPower": 0.165, "S1_SystemInertia": 12.0,
    "M1_CURRENT_PROGRAM_NUMBER": 1.0, "M1_sequence_number": 106.0, "M1_CURRENT_FEEDRATE": 6.0,
    "Machining_Process": "Layer 1 Up",
}  # fmt: skip


class RawRowsBody(BaseModel):
    """Raw sensor rows, either as records (``rows``) or as column names and rows of values
    (``columns`` + ``data``, like MLflow's ``dataframe_split``: faster for large batches)."""

    model_config = ConfigDict(extra="forbid")

    rows: list[dict[str, JsonScalar]] | None = None
    columns: list[str] | None = None
    data: list[list[JsonScalar]] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> RawRowsBody:
        columnar = self.columns is not None or self.data is not None
        if (self.rows is None) == (not columnar):
            raise ValueError("give either 'rows', or 'columns' and 'data'")
        if columnar and (self.columns is None or self.data is None):
            raise ValueError("the columnar form needs both 'columns' and 'data'")
        return self

    @property
    def row_count(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.data or [])


class PredictRequest(RawRowsBody):
    """Raw sensor rows of one tool, either as records (``rows``) or as column names and rows of
    values (``columns`` + ``data``, like MLflow's ``dataframe_split``: faster for large batches);
    optionally the run (the job) they belong to."""

    run: RunId | None = Field(
        default=None,
        description=(
            "The job these rows belong to (`mill-3/2026-12-01/job-1842`): they are appended to "
            "that run, with what the champion predicted, before the answer is sent; label it "
            "later with `POST /runs/{run}/label`."
        ),
    )


REQUEST_EXAMPLES: dict[str, Any] = {
    "rows": {
        "summary": "Rows as records",
        "value": {"rows": [EXAMPLE_ROW, EXAMPLE_WORN_ROW]},
    },
    "columns": {
        "summary": "Columns and data (faster for large batches)",
        "value": {
            "columns": list(EXAMPLE_ROW),
            "data": [list(EXAMPLE_ROW.values()), list(EXAMPLE_WORN_ROW.values())],
        },
    },
}


class Prediction(BaseModel):
    label: Label
    probability_worn: float = Field(ge=0.0, le=1.0)


class Verdict(BaseModel):
    """The batch read as readings of one tool: a tool's state does not change within seconds, and
    many rows together are far more reliable than any single one."""

    label: Label
    """``worn`` when the mean wear probability is at least the decision threshold."""
    mean_probability_worn: float = Field(ge=0.0, le=1.0)
    rows: int
    worn_rows: int
    """Rows whose own label is ``worn``."""


class RunAppended(BaseModel):
    """What became of the rows of a request that named a run."""

    id: str
    rows: int = Field(description="Rows of this request kept in the run")
    run_rows: int = Field(description="Rows the run holds now")
    truncated: bool = Field(
        description="Some rows were not kept: the run has reached CNCWEAR_RUN_MAX_ROWS"
    )


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[Prediction]
    verdict: Verdict
    request_id: str
    run: RunAppended | None = Field(default=None, description="Only when the request named a run")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": {"name": "cncwear", "version": "3"},
                    "predictions": [
                        {"label": "unworn", "probability_worn": 0.075},
                        {"label": "worn", "probability_worn": 0.925},
                    ],
                    "verdict": {
                        "label": "unworn",
                        "mean_probability_worn": 0.5,
                        "rows": 2,
                        "worn_rows": 1,
                    },
                    "request_id": "4f1c0d2ab9e84d0c9d0f6f2f7c1e5b3a",
                }
            ]
        }
    )
