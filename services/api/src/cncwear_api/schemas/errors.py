"""The one shape of every error answer: a detail, and problems by field, row and column."""

from __future__ import annotations

from pydantic import BaseModel


class Problem(BaseModel):
    """One thing wrong with the request; the offending value is never echoed back."""

    row: int | None = None
    """0-based position of the row in the batch; null for a column or the whole body."""
    column: str
    problem: str


class ProblemsResponse(BaseModel):
    detail: str
    problems: list[Problem]
    total: int
    """Problems found; only the first ones are listed."""
    request_id: str | None = None


class ErrorResponse(BaseModel):
    detail: str
    request_id: str | None = None
