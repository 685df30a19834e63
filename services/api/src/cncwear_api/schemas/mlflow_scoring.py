"""MLflow's scoring protocol bodies (``mlflow models serve``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from cncwear_api.schemas.predict import EXAMPLE_ROW, EXAMPLE_WORN_ROW


class MlflowError(BaseModel):
    """An MLflow error: its code (``BAD_REQUEST`` for bad input) and a message naming the
    problem (bad cells by row and column, as ``/predict`` names them)."""

    error_code: str
    message: str


class Predictions(BaseModel):
    predictions: list[list[float]] = Field(
        description="Per row, the probability of each class: [unworn, worn] (`predict_proba`)"
    )


INVOCATIONS_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "Exactly one of `dataframe_split`, `dataframe_records`, "
                "`instances`, `inputs`; `params` accepted (the model takes none)",
                "properties": {
                    "dataframe_split": {
                        "type": "object",
                        "properties": {
                            "columns": {"type": "array", "items": {"type": "string"}},
                            "data": {"type": "array", "items": {"type": "array"}},
                        },
                        "required": ["columns", "data"],
                    },
                    "dataframe_records": {"type": "array", "items": {"type": "object"}},
                    "instances": {"type": ["array", "object"]},
                    "inputs": {"type": ["array", "object"]},
                    "params": {"type": "object"},
                },
            },
            "examples": {
                "dataframe_split": {
                    "summary": "Columns and data",
                    "value": {
                        "dataframe_split": {
                            "columns": list(EXAMPLE_ROW),
                            "data": [list(EXAMPLE_ROW.values()), list(EXAMPLE_WORN_ROW.values())],
                        }
                    },
                },
                "dataframe_records": {
                    "summary": "Records",
                    "value": {"dataframe_records": [EXAMPLE_ROW, EXAMPLE_WORN_ROW]},
                },
            },
        },
        "text/csv": {
            "schema": {"type": "string", "description": "A table with a header row"},
        },
    },
}
