"""``/runs``: labelled runs (the rows of one job on a mill, then the tool's state once inspected),
as the API takes and shows them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cncwear.data.runs.ids import MAX_MATERIAL_LENGTH
from cncwear.data.runs.records import LivePerformance, RunPage, RunRecord
from cncwear_api.schemas.common import Label, RunId
from cncwear_api.schemas.predict import EXAMPLE_ROW, EXAMPLE_WORN_ROW, RawRowsBody

RunStateName = Literal["collecting", "accepted", "rejected", "withdrawn"]


class RunLabelCreate(BaseModel):
    """The tool's state after the job, and the job's settings, as ``train.csv`` records them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"tool_condition": "worn", "feedrate": 6, "clamp_pressure": 4.0, "material": "wax"}
            ]
        },
    )

    tool_condition: Label
    feedrate: float = Field(gt=0, description="Feed rate of the job (as in train.csv)")
    clamp_pressure: float = Field(gt=0, description="Clamp pressure in bar (as in train.csv)")
    material: str = Field(
        min_length=1, max_length=MAX_MATERIAL_LENGTH, description="Workpiece material: wax"
    )

    def label_fields(self) -> dict[str, Any]:
        """The label and settings alone, for ``RunLabel.parse``."""
        return {name: getattr(self, name) for name in RunLabelCreate.model_fields}


class RunUpload(RunLabelCreate, RawRowsBody):
    """A whole labelled run at once, for data recorded elsewhere: its id, its label and settings,
    and its raw rows (``rows``, or ``columns`` + ``data``) in the order they were recorded."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=None)

    run: RunId


UPLOAD_EXAMPLES: dict[str, Any] = {
    "rows": {
        "summary": "A run as records (a real one has hundreds of rows)",
        "value": {
            "run": "mill-3/2026-12-01/job-1842",
            "tool_condition": "unworn",
            "feedrate": 6,
            "clamp_pressure": 4.0,
            "material": "wax",
            "rows": [EXAMPLE_ROW, EXAMPLE_WORN_ROW],
        },
    },
    "columns": {
        "summary": "A run as columns and data",
        "value": {
            "run": "mill-3/2026-12-01/job-1843",
            "tool_condition": "unworn",
            "feedrate": 6,
            "clamp_pressure": 4.0,
            "material": "wax",
            "columns": list(EXAMPLE_ROW),
            "data": [list(EXAMPLE_ROW.values())],
        },
    },
}


class RunLabelPublic(BaseModel):
    tool_condition: Label
    feedrate: float | None
    clamp_pressure: float | None
    material: str | None


class RunPerformancePublic(BaseModel):
    """The predictions served for labelled runs against their labels (from the shared store:
    every replica and restart agrees)."""

    runs: int
    rows: int = Field(description="Rows served with a prediction")
    accuracy: float | None
    precision: float | None = Field(description="None when no row was predicted worn")
    recall: float | None = Field(description="None when no row was worn")

    @classmethod
    def of(cls, performance: LivePerformance) -> RunPerformancePublic:
        return cls.model_validate(performance.as_dict())


class RunDriftSummary(BaseModel):
    run: str
    model_version: str = Field(description="The version whose normal band judged the run")
    judged_at: float
    rows: int = Field(description="Active-cutting rows judged")
    drifted: bool
    drifted_features: list[str] = Field(description="The checks beyond their band")


class RunPublic(BaseModel):
    run: str
    state: RunStateName
    source: Literal["predict", "upload"] = Field(
        description="Streamed through /predict, or uploaded whole"
    )
    label: RunLabelPublic | None
    rows: int
    active_rows: int = Field(description="Rows of active cutting (Layer N Up/Down)")
    truncated: bool = Field(description="The run reached CNCWEAR_RUN_MAX_ROWS")
    first_seen: float
    last_seen: float
    labelled_at: float | None
    withdrawn_at: float | None
    content_hash: str | None
    reasons: list[str] = Field(description="Why the run was rejected; empty otherwise")
    model_versions: list[str] = Field(description="Model versions that served its rows")
    live: RunPerformancePublic | None = Field(
        description="Those predictions against the label, once labelled"
    )
    dataset_versions: list[str] = Field(description="Dataset versions that include the run")
    drift: RunDriftSummary | None = Field(
        default=None,
        description="Its latest drift verdict (`GET /drift?run=`, and when labelled or uploaded)",
    )

    @classmethod
    def of(cls, record: RunRecord) -> RunPublic:
        return cls.model_validate(record.as_dict())


class RunsPage(BaseModel):
    runs: list[RunPublic] = Field(description="Newest first (by the last row received)")
    total: int = Field(description="Runs matching the filter, all pages")
    limit: int
    offset: int

    @classmethod
    def of(cls, page: RunPage, limit: int, offset: int) -> RunsPage:
        return cls(
            runs=[RunPublic.of(r) for r in page.runs], total=page.total, limit=limit, offset=offset
        )
